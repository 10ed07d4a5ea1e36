#!/usr/bin/env bash
# gen-k8s-module.sh VERSION: points hack/k8s/go.mod at k8s.io/kubernetes
# VERSION (e.g. v1.37.2). k8s.io/kubernetes replaces its staging modules
# (k8s.io/api and the rest) with directories its module zip lacks; this
# replaces each with the published v0.<minor>.<patch>, pins etcd to the
# version that Kubernetes itself requires, and tidies the module. The next
# build-k8s.sh run builds the new version into its own cache directory.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version="${1:-}"
[[ "${version}" =~ ^v1\.[0-9]+\.[0-9]+$ ]] || die "usage: $0 v1.MINOR.PATCH"
require_go
staging="v0.${version#v1.}"
gomod="$(go mod download -json "k8s.io/kubernetes@${version}" | awk -F'"' '$2 == "GoMod" {print $4}')"
[[ -f "${gomod}" ]] || die "the module proxy did not give k8s.io/kubernetes@${version}; pick a version it serves"
etcd="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "${gomod}")"
[[ -n "${etcd}" ]] || die "k8s.io/kubernetes@${version} does not require go.etcd.io/etcd/server/v3"

cd "${KZERO_TOOLS_DIR}"
go mod edit -require="k8s.io/kubernetes@${version}" -require="go.etcd.io/etcd/server/v3@${etcd}"
# Drop the old replace block, then append one with a line per staging module.
awk '/^replace \($/ {skip = 1; next} skip && /^\)$/ {skip = 0; next} !skip && !/^replace / {print}' go.mod >go.mod.new
{
	echo "replace ("
	awk -v v="${staging}" '/=> \.\/staging/ {printf "\t%s => %s %s\n", $1, $1, v}' "${gomod}"
	echo ")"
} >>go.mod.new
mv go.mod.new go.mod
go mod tidy
log "hack/k8s now builds Kubernetes ${version} (staging modules ${staging}) and etcd ${etcd}"
