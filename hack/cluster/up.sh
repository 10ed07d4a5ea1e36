#!/usr/bin/env bash
# up.sh [node|control-plane]: starts a Kubernetes cluster as plain
# processes on this machine. control-plane runs etcd and kube-apiserver
# only; node adds kube-controller-manager and kube-scheduler, and NODES
# nodes (1 to 3; default 1), each in Linux namespaces of its own (mount,
# UTS, IPC, network, PID) with its own containerd, kubelet and kube-proxy,
# joined by a bridge on the machine, with a pod range each and ClusterIP
# Services. CLUSTER=NAME starts a second, independent cluster beside the
# default one. Starting a cluster that is already up in the same mode with
# the same nodes does nothing. State: ${KZERO_RUN_DIR}.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "${here}/lib.sh"

mode="${1:-${MODE:-node}}"
case "${mode}" in
node | control-plane) ;;
*) die "unknown mode '${mode}': use node or control-plane (make cluster-up MODE=control-plane)" ;;
esac
[[ "${KZERO_NODES}" =~ ^[1-3]$ ]] || die "NODES=${KZERO_NODES}: a cluster has 1 to 3 nodes on this machine"
[[ "${mode}" == control-plane ]] && KZERO_NODES=0

require_root
take_lock

# ---- already up? ------------------------------------------------------------

want_procs() {
	local n p
	for p in "${KZERO_CP_PROCS[@]}"; do echo "${p}"; done
	[[ "$1" == node ]] || return 0
	for p in "${KZERO_CONTROLLERS[@]}"; do echo "${p}"; done
	for n in $(nodes); do
		echo "${n}.init"
		for p in "${KZERO_NODE_PROCS[@]}"; do echo "${n}.${p}"; done
	done
}
if [[ -f "${KZERO_RUN_DIR}/mode" ]]; then
	running="$(cat "${KZERO_RUN_DIR}/mode")"
	all=1
	for p in $(want_procs "${running}"); do pid_alive "${p}" || all=0; done
	have="$(nodes | wc -l)"
	if [[ "${all}" == 1 && "${running}" == "${mode}" && "${have}" == "${KZERO_NODES}" ]]; then
		log "cluster ${KZERO_CLUSTER:-(default)} is already up in ${mode} mode with ${have} node(s); KUBECONFIG=${KZERO_KUBECONFIG}"
		exit 0
	fi
	if [[ "${all}" == 1 ]]; then
		die "a cluster is up in ${running} mode with ${have} node(s); run 'make cluster-down${KZERO_CLUSTER:+ CLUSTER=${KZERO_CLUSTER}}' before starting one in ${mode} mode with ${KZERO_NODES}"
	fi
	log "a previous cluster is partly up; stopping it first"
	bash "${here}/down.sh"
fi

# ---- preconditions ----------------------------------------------------------

# The index is taken under a lock of every cluster beside this one, held
# until this cluster has recorded it below.
exec 8>"${KZERO_INDEX_LOCK}"
flock 8
index="$(cluster_index)"
[[ "${index}" =~ ^[0-3]$ ]] || die "three named clusters run already under $(dirname "${KZERO_RUN_DIR}"): stop one with 'make cluster-down CLUSTER=NAME'"
cluster_layout "${index}"
sock="$(node_sock "$(node_name 3)")"
((${#sock} < 100)) || die "KZERO_RUN_DIR is too long for a unix socket path (${sock}); set KZERO_RUN_DIR to a shorter directory"
[[ "${mode}" == node ]] && require_cgroups
ports=("${KZERO_LOOPBACK}:${KZERO_ETCD_CLIENT_PORT}" "${KZERO_LOOPBACK}:${KZERO_ETCD_PEER_PORT}" "${KZERO_HOST_IP}:${KZERO_APISERVER_PORT}")
[[ "${mode}" == node ]] && ports+=("${KZERO_LOOPBACK}:10257" "${KZERO_LOOPBACK}:10259")
require_ports_free "${ports[@]}"
for link in "${KZERO_BRIDGE}" "${KZERO_SINK}"; do
	if ip link show "${link}" >/dev/null 2>&1; then
		die "network device ${link} exists but no cluster is recorded in ${KZERO_RUN_DIR}; run 'make cluster-down${KZERO_CLUSTER:+ CLUSTER=${KZERO_CLUSTER}}' to remove what a previous run left"
	fi
done
for cidr in "${KZERO_GUARD_CIDR}" "${KZERO_SERVICE_CIDR}"; do
	conflict="$({ ip -4 route show table all root "${cidr}"; ip -4 route show table all match "${cidr%/*}"; } 2>/dev/null |
		grep -vE '^((unreachable|blackhole|prohibit) )?default' | head -n 1 || true)"
	[[ -z "${conflict}" ]] || die "${cidr} is already routed on this machine (${conflict}); the harness needs the range for itself: remove that route or run 'make cluster-down'"
done
if ip rule show pref "${KZERO_ROUTE_TABLE}" 2>/dev/null | grep -q .; then
	die "ip rule ${KZERO_ROUTE_TABLE} exists; run 'make cluster-down' to remove what a previous run left"
fi

total="${SECONDS}"
log "starting cluster ${KZERO_CLUSTER:-(default)} in ${mode} mode with ${KZERO_NODES} node(s) (Kubernetes ${K8S_VERSION}) in ${KZERO_RUN_DIR}"

if [[ "${mode}" == node ]]; then
	bash "${here}/install-deps.sh"
else
	if ! command -v openssl >/dev/null || ! command -v curl >/dev/null; then
		bash "${here}/install-deps.sh"
	fi
fi
bash "${here}/build-k8s.sh"
step "building harness tools" bash "${here}/build-tools.sh"

# Fresh state for every cluster; keep the previous run's logs for a post-mortem.
rm -rf "${KZERO_RUN_DIR}.prev-logs"
[[ -d "${KZERO_LOG_DIR}" ]] && mv "${KZERO_LOG_DIR}" "${KZERO_RUN_DIR}.prev-logs"
rm -rf "${KZERO_RUN_DIR}"
mkdir -p "${KZERO_RUN_DIR}" "${KZERO_PID_DIR}" "${KZERO_LOG_DIR}"
chmod 700 "${KZERO_RUN_DIR}"
# From here on a failure leaves state that down.sh removes.
echo "${index}" >"${KZERO_RUN_DIR}/index"
flock -u 8
exec 8>&-
echo "${mode}" >"${KZERO_RUN_DIR}/mode"
: >"${KZERO_NODES_FILE}"
for ((i = 1; i <= KZERO_NODES; i++)); do
	echo "$(node_name "${i}") $(node_ip "${i}") $(node_pod_cidr "${i}")" >>"${KZERO_NODES_FILE}"
done
cleanup_on_failure() {
	local rc=$?
	if [[ "${rc}" != 0 ]]; then
		log "cluster-up failed; stopping what it started (logs stay in ${KZERO_LOG_DIR})"
		bash "${here}/down.sh" || true
	fi
	exit "${rc}"
}
trap cleanup_on_failure EXIT

# ---- the machine's side of the network -----------------------------------------

setup_network() {
	ip link add "${KZERO_BRIDGE}" type bridge
	ip addr add "${KZERO_HOST_IP}/${KZERO_CLUSTER_NET#*/}" dev "${KZERO_BRIDGE}"
	ip link set "${KZERO_BRIDGE}" up
	ip link add "${KZERO_SINK}" type bridge
	ip link set "${KZERO_SINK}" up
	ip route add "${KZERO_SERVICE_CIDR}" dev "${KZERO_SINK}"
	ip route add "${KZERO_GUARD_CIDR}" dev "${KZERO_SINK}"
	ip route add "${KZERO_CLUSTER_NET}" dev "${KZERO_BRIDGE}" table "${KZERO_ROUTE_TABLE}"
	ip route add unreachable default table "${KZERO_ROUTE_TABLE}"
	ip rule add from "${KZERO_GUARD_CIDR}" lookup "${KZERO_ROUTE_TABLE}" pref "${KZERO_ROUTE_TABLE}"
	local i
	for ((i = 1; i <= KZERO_NODES; i++)); do
		ip route add "$(node_pod_cidr "${i}")" via "$(node_ip "${i}")"
		ip route add "$(node_pod_cidr "${i}")" via "$(node_ip "${i}")" table "${KZERO_ROUTE_TABLE}"
	done
}
step "network: bridge ${KZERO_BRIDGE} ${KZERO_HOST_IP}, Services ${KZERO_SERVICE_CIDR} to ${KZERO_SINK}" setup_network

step "PKI and kubeconfigs" bash "${here}/pki.sh"
cp "${KZERO_PKI_DIR}/admin.kubeconfig" "${KZERO_KUBECONFIG}"

pki="${KZERO_PKI_DIR}"
bin="${KZERO_BIN_DIR}"

# ---- etcd and kube-apiserver ------------------------------------------------

start_etcd() {
	local lo="${KZERO_LOOPBACK}"
	start_proc etcd "${bin}/etcd" \
		--name=kzero --data-dir="${KZERO_RUN_DIR}/etcd" \
		--listen-client-urls="https://${lo}:${KZERO_ETCD_CLIENT_PORT}" \
		--advertise-client-urls="https://${lo}:${KZERO_ETCD_CLIENT_PORT}" \
		--listen-peer-urls="https://${lo}:${KZERO_ETCD_PEER_PORT}" \
		--initial-advertise-peer-urls="https://${lo}:${KZERO_ETCD_PEER_PORT}" \
		--initial-cluster="kzero=https://${lo}:${KZERO_ETCD_PEER_PORT}" \
		--cert-file="${pki}/etcd-server.crt" --key-file="${pki}/etcd-server.key" \
		--client-cert-auth --trusted-ca-file="${pki}/etcd-ca.crt" \
		--peer-cert-file="${pki}/etcd-server.crt" --peer-key-file="${pki}/etcd-server.key" \
		--peer-client-cert-auth --peer-trusted-ca-file="${pki}/etcd-ca.crt" \
		--unsafe-no-fsync --log-level=warn
	wait_for "etcd to be healthy" 30 etcd \
		curl -fsS --max-time 2 --cacert "${pki}/etcd-ca.crt" --cert "${pki}/apiserver-etcd-client.crt" \
		--key "${pki}/apiserver-etcd-client.key" "https://${lo}:${KZERO_ETCD_CLIENT_PORT}/health"
}
step "etcd ${ETCD_VERSION}" start_etcd

start_apiserver() {
	# The machine runs no kube-proxy (the nodes do): kube-apiserver calls
	# webhooks and aggregated APIs behind Services at their endpoints.
	start_proc kube-apiserver "${bin}/kube-apiserver" \
		--etcd-servers="https://${KZERO_LOOPBACK}:${KZERO_ETCD_CLIENT_PORT}" \
		--etcd-cafile="${pki}/etcd-ca.crt" --etcd-certfile="${pki}/apiserver-etcd-client.crt" \
		--etcd-keyfile="${pki}/apiserver-etcd-client.key" \
		--bind-address="${KZERO_HOST_IP}" --advertise-address="${KZERO_HOST_IP}" \
		--secure-port="${KZERO_APISERVER_PORT}" \
		--tls-cert-file="${pki}/apiserver.crt" --tls-private-key-file="${pki}/apiserver.key" \
		--client-ca-file="${pki}/ca.crt" --anonymous-auth=false \
		--kubelet-client-certificate="${pki}/apiserver-kubelet-client.crt" \
		--kubelet-client-key="${pki}/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="${pki}/ca.crt" \
		--kubelet-preferred-address-types=InternalIP \
		--service-cluster-ip-range="${KZERO_SERVICE_CIDR}" \
		--service-account-issuer="${KZERO_SA_ISSUER}" \
		--service-account-key-file="${pki}/sa.pub" \
		--service-account-signing-key-file="${pki}/sa.key" \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction \
		--admission-control-config-file="${pki}/admission.yaml" \
		--enable-aggregator-routing=true \
		--allow-privileged=true --profiling=false \
		--enable-bootstrap-token-auth=false \
		--requestheader-client-ca-file="${pki}/front-proxy-ca.crt" \
		--requestheader-allowed-names=front-proxy-client \
		--requestheader-username-headers=X-Remote-User \
		--requestheader-group-headers=X-Remote-Group \
		--requestheader-extra-headers-prefix=X-Remote-Extra- \
		--proxy-client-cert-file="${pki}/front-proxy-client.crt" \
		--proxy-client-key-file="${pki}/front-proxy-client.key"
	wait_for "kube-apiserver /readyz" 90 kube-apiserver api_get /readyz
}
step "kube-apiserver" start_apiserver

# kube-apiserver reaches kubelets with this identity; kubelet asks the API
# server whether it may (webhook authorization), so grant it.
rbac() {
	kctl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kzero:kube-apiserver-kubelet-client
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kubelet-api-admin
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: kube-apiserver-kubelet-client
EOF
}
step "RBAC for kube-apiserver to kubelet" rbac

# ---- nodes ------------------------------------------------------------------

if [[ "${mode}" == node ]]; then
	start_controllers() {
		local kc
		kc="${pki}/kube-controller-manager.kubeconfig"
		start_proc kube-controller-manager "${bin}/kube-controller-manager" \
			--kubeconfig="${kc}" --authentication-kubeconfig="${kc}" --authorization-kubeconfig="${kc}" \
			--bind-address="${KZERO_LOOPBACK}" --secure-port=10257 \
			--cluster-signing-cert-file="${pki}/ca.crt" --cluster-signing-key-file="${pki}/ca.key" \
			--root-ca-file="${pki}/ca.crt" --service-account-private-key-file="${pki}/sa.key" \
			--use-service-account-credentials=true \
			--service-cluster-ip-range="${KZERO_SERVICE_CIDR}" \
			--cluster-cidr="${KZERO_GUARD_CIDR}" --allocate-node-cidrs=false \
			--leader-elect=false --profiling=false
		kc="${pki}/kube-scheduler.kubeconfig"
		start_proc kube-scheduler "${bin}/kube-scheduler" \
			--kubeconfig="${kc}" --authentication-kubeconfig="${kc}" --authorization-kubeconfig="${kc}" \
			--bind-address="${KZERO_LOOPBACK}" --secure-port=10259 --leader-elect=false --profiling=false
	}
	step "kube-controller-manager and kube-scheduler" start_controllers

	step "pause image ${KZERO_PAUSE_IMAGE}" bash "${here}/image.sh" --no-import --binary "${KZERO_TOOLS_BIN}/pause" "${KZERO_PAUSE_IMAGE}" >/dev/null
	for ((i = 1; i <= KZERO_NODES; i++)); do
		step "node $(node_name "${i}") $(node_ip "${i}"), pods $(node_pod_cidr "${i}")" bash "${here}/node.sh" "${i}"
	done

	nodes_ready() {
		local n
		for n in $(nodes); do
			wait_for "node ${n} to be Ready" 120 "${n}.kubelet" \
				kctl wait --for=condition=Ready "node/${n}" --timeout=2s
		done
		# Every pod mounts the namespace's kube-root-ca.crt and runs as its
		# service account, which kube-controller-manager creates.
		wait_for "the default service account and kube-root-ca.crt" 60 kube-controller-manager \
			kctl get serviceaccount/default configmap/kube-root-ca.crt
	}
	step "nodes Ready" nodes_ready
fi

trap - EXIT
log "cluster ${KZERO_CLUSTER:-(default)} up in ${mode} mode with ${KZERO_NODES} node(s) in $((SECONDS - total))s"
log "  export KUBECONFIG=${KZERO_KUBECONFIG}"
log "  kubectl: ${KZERO_BIN_DIR}/kubectl   stop: make cluster-down${KZERO_CLUSTER:+ CLUSTER=${KZERO_CLUSTER}}"
