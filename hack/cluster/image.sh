#!/usr/bin/env bash
# image.sh: builds a container image from one static Go binary, with no Docker
# engine, and imports it into the containerd of every node of the cluster.
#
#   image.sh [--no-import] [--path /in/image] [--also PACKAGE2]... PACKAGE REF
#       builds the Go package PACKAGE (a path in this repository, e.g.
#       ./test/e2e/testserver) with CGO_ENABLED=0, then as below; each
#       PACKAGE2 is built too and put beside it, at /<its directory's name>
#   image.sh [--no-import] [--path /in/image] --binary FILE REF
#       uses the static binary FILE
#
# The tarball is written to ${KZERO_IMAGE_DIR}/<name>_<tag>.tar. Pods use the
# image by REF with imagePullPolicy IfNotPresent or Never.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

import=1 binary="" pkg="" path_in="" also=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	--no-import) import=0; shift ;;
	--binary) binary="$2"; shift 2 ;;
	--path) path_in="$2"; shift 2 ;;
	--also) also+=("$2"); shift 2 ;;
	-*) die "unknown flag $1 (see the top of $0)" ;;
	*) break ;;
	esac
done
if [[ -z "${binary}" ]]; then
	[[ $# == 2 ]] || die "usage: $0 [--no-import] [--path /in/image] PACKAGE REF | --binary FILE REF"
	pkg="$1"
	shift
fi
[[ $# == 1 ]] || die "usage: $0 [--no-import] [--path /in/image] PACKAGE REF | --binary FILE REF"
ref="$1"

[[ -x "${KZERO_TOOLS_BIN}/mkimage" ]] || bash "$(dirname "${BASH_SOURCE[0]}")/build-tools.sh"
base="${ref##*/}"
# grpcnotrace: gRPC without golang.org/x/net/trace (kzero never turns gRPC
# tracing on). Its debug pages run html/template, and a binary that can run
# a template keeps every exported method of every type: 4.6 MB of
# kzero-agent's 23 (docs/agent.md, Memory).
gobuild=(env CGO_ENABLED=0 go build -trimpath -buildvcs=false -tags grpcnotrace -ldflags "-s -w")
mkdir -p "${KZERO_IMAGE_DIR}/bin"
if [[ -n "${pkg}" ]]; then
	binary="${KZERO_IMAGE_DIR}/bin/${base%%:*}"
	(cd "${KZERO_REPO_ROOT}" && "${gobuild[@]}" -o "${binary}" "${pkg}") ||
		die "building ${pkg} failed; see the Go error above"
fi
[[ -x "${binary}" ]] || die "${binary} is not an executable file"
extra=()
for p in "${also[@]}"; do
	out="${KZERO_IMAGE_DIR}/bin/$(basename "${p}")"
	(cd "${KZERO_REPO_ROOT}" && "${gobuild[@]}" -o "${out}" "${p}") ||
		die "building ${p} failed; see the Go error above"
	extra+=(-also "${out}")
done
tarball="${KZERO_IMAGE_DIR}/${base//:/_}.tar"
args=(-binary "${binary}" "${extra[@]}" -tag "${ref}" -o "${tarball}")
[[ -n "${path_in}" ]] && args+=(-path "${path_in}")
"${KZERO_TOOLS_BIN}/mkimage" "${args[@]}"

if [[ "${import}" == 1 ]]; then
	names="$(nodes)"
	[[ -n "${names}" ]] || die "no node is running in ${KZERO_RUN_DIR}; start a cluster with nodes with 'make cluster-up'"
	for n in ${names}; do
		sock="$(node_sock "${n}")"
		[[ -S "${sock}" ]] || die "${n}'s containerd is not running (no ${sock}); restart the cluster with 'make cluster-down cluster-up'"
		ctr --address "${sock}" -n "${KZERO_CONTAINERD_NS}" images import "${tarball}" >/dev/null ||
			die "importing ${tarball} into ${n}'s containerd failed"
	done
fi
echo "${tarball}"
