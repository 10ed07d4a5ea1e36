#!/usr/bin/env bash
# build-k8s.sh: builds kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kube-proxy, kubectl and etcd from the Go modules pinned in
# hack/k8s/go.mod into ${KZERO_BIN_DIR} (.cache/k8s/<version>/bin by default).
# A binary that is already there is not rebuilt; pass --force to rebuild all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

force=0
[[ "${1:-}" == "--force" ]] && force=1

require_go
[[ -n "${K8S_VERSION}" && -n "${ETCD_VERSION}" ]] ||
	die "cannot read the Kubernetes and etcd versions from ${KZERO_TOOLS_DIR}/go.mod"

# name=package, in build order: kube-apiserver first compiles most of what the
# others share, so their builds are quick after it.
binaries=(
	"kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver"
	"kubelet=k8s.io/kubernetes/cmd/kubelet"
	"kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager"
	"kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler"
	"kube-proxy=k8s.io/kubernetes/cmd/kube-proxy"
	"kubectl=k8s.io/kubernetes/cmd/kubectl"
	"etcd=kzero.dev/kzero/hack/k8s/etcd"
)

minor="${K8S_VERSION#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"
done

missing=()
for entry in "${binaries[@]}"; do
	name="${entry%%=*}"
	if [[ "${force}" == 1 || ! -x "${KZERO_BIN_DIR}/${name}" ]]; then
		missing+=("${entry}")
	fi
done
if [[ "${#missing[@]}" == 0 ]]; then
	log "Kubernetes ${K8S_VERSION} and etcd ${ETCD_VERSION} binaries are cached in ${KZERO_BIN_DIR}"
	exit 0
fi

log "building ${#missing[@]} binaries (Kubernetes ${K8S_VERSION}, etcd ${ETCD_VERSION}) into ${KZERO_BIN_DIR}"
log "a cold build takes about 10 minutes on 2 cores (kube-apiserver alone 6-8); the Go build cache makes later builds quick"
mkdir -p "${KZERO_BIN_DIR}"
tmp="$(mktemp -d "${KZERO_BIN_DIR}/.build.XXXXXX")"
trap 'rm -rf "${tmp}"' EXIT

build_one() {
	local name="$1" pkg="$2" pid start="${SECONDS}" rc=0 i
	(cd "${KZERO_TOOLS_DIR}" &&
		exec env CGO_ENABLED=0 go build -trimpath -buildvcs=false \
			-ldflags "${ldflags}" -o "${tmp}/${name}" "${pkg}") &
	pid=$!
	# A heartbeat, so that a person watching a cold build knows it moves.
	while kill -0 "${pid}" 2>/dev/null; do
		for ((i = 0; i < 60; i++)); do
			sleep 1
			kill -0 "${pid}" 2>/dev/null || break
		done
		kill -0 "${pid}" 2>/dev/null && log "  still building ${name} ($((SECONDS - start))s)"
	done
	wait "${pid}" || rc=$?
	[[ "${rc}" == 0 ]] ||
		die "building ${name} failed; see the Go error above (the module proxy must serve ${pkg%%/cmd/*}@${K8S_VERSION})"
	mv -f "${tmp}/${name}" "${KZERO_BIN_DIR}/${name}"
}

total="${SECONDS}"
step "downloading modules" bash -c "cd '${KZERO_TOOLS_DIR}' && go mod download"
for entry in "${missing[@]}"; do
	step "building ${entry%%=*}" build_one "${entry%%=*}" "${entry#*=}"
done
log "all binaries built in $((SECONDS - total))s: ${KZERO_BIN_DIR}"
