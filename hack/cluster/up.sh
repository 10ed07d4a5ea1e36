#!/usr/bin/env bash
# up.sh [node|control-plane]: starts a single-node Kubernetes as plain
# processes. control-plane runs etcd and kube-apiserver only; node adds
# kube-controller-manager, kube-scheduler, containerd, kubelet and kube-proxy,
# with a bridge pod network and ClusterIP Services. Starting a cluster that is
# already up in the same mode does nothing. State: ${KZERO_RUN_DIR}.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "${here}/lib.sh"

mode="${1:-${MODE:-node}}"
case "${mode}" in
node | control-plane) ;;
*) die "unknown mode '${mode}': use node or control-plane (make cluster-up MODE=control-plane)" ;;
esac

require_root
take_lock

# ---- already up? ------------------------------------------------------------

if [[ -f "${KZERO_RUN_DIR}/mode" ]]; then
	running="$(cat "${KZERO_RUN_DIR}/mode")"
	all=1
	if [[ "${running}" == node ]]; then want=("${KZERO_NODE_PROCS[@]}"); else want=("${KZERO_CP_PROCS[@]}"); fi
	for p in "${want[@]}"; do pid_alive "${p}" || all=0; done
	if [[ "${all}" == 1 && "${running}" == "${mode}" ]]; then
		log "cluster is already up in ${mode} mode; KUBECONFIG=${KZERO_KUBECONFIG}"
		exit 0
	fi
	if [[ "${all}" == 1 ]]; then
		die "a cluster is up in ${running} mode; run 'make cluster-down' before starting one in ${mode} mode"
	fi
	log "a previous cluster is partly up; stopping it first"
	bash "${here}/down.sh"
fi

# ---- preconditions ----------------------------------------------------------

sock_len="${#KZERO_CONTAINERD_SOCK}"
((sock_len < 100)) || die "KZERO_RUN_DIR is too long for a unix socket path (${KZERO_CONTAINERD_SOCK}); set KZERO_RUN_DIR to a shorter directory"
[[ "${mode}" == node ]] && require_cgroups
ports=("${KZERO_PORTS[@]}")
[[ "${mode}" == control-plane ]] && ports=(2379 2380 "${KZERO_APISERVER_PORT}")
require_ports_free "${ports[@]}"
for link in "${KZERO_BRIDGE}" "${KZERO_SINK}"; do
	if ip link show "${link}" >/dev/null 2>&1; then
		die "network device ${link} exists but no cluster is recorded in ${KZERO_RUN_DIR}; run 'make cluster-down' to remove what a previous run left"
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
log "starting a ${mode} cluster (Kubernetes ${K8S_VERSION}) in ${KZERO_RUN_DIR}"

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
echo "${mode}" >"${KZERO_RUN_DIR}/mode"
cleanup_on_failure() {
	local rc=$?
	if [[ "${rc}" != 0 ]]; then
		log "cluster-up failed; stopping what it started (logs stay in ${KZERO_LOG_DIR})"
		bash "${here}/down.sh" || true
	fi
	exit "${rc}"
}
trap cleanup_on_failure EXIT

# ---- network ----------------------------------------------------------------

setup_network() {
	# Remember the sysctls we change so down.sh can put them back.
	local k
	for k in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.route_localnet; do
		[[ -e "/proc/sys/${k//.//}" ]] && echo "${k}=$(sysctl -n "${k}")" >>"${KZERO_RUN_DIR}/sysctl.orig"
	done
	ip link add "${KZERO_BRIDGE}" type bridge
	ip addr add "${KZERO_NODE_IP}/${KZERO_POD_CIDR#*/}" dev "${KZERO_BRIDGE}"
	ip link set "${KZERO_BRIDGE}" up
	ip link add "${KZERO_SINK}" type bridge
	ip link set "${KZERO_SINK}" up
	ip route add "${KZERO_SERVICE_CIDR}" dev "${KZERO_SINK}"
	ip route add "${KZERO_GUARD_CIDR}" dev "${KZERO_SINK}"
	ip route add "${KZERO_POD_CIDR}" dev "${KZERO_BRIDGE}" table "${KZERO_ROUTE_TABLE}"
	ip route add unreachable default table "${KZERO_ROUTE_TABLE}"
	ip rule add from "${KZERO_POD_CIDR}" lookup "${KZERO_ROUTE_TABLE}" pref "${KZERO_ROUTE_TABLE}"
	if [[ "${mode}" == node ]]; then
		sysctl -qw net.ipv4.ip_forward=1
		# kube-proxy's rules must see packets that cross the bridge.
		if [[ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
			modprobe br_netfilter 2>/dev/null ||
				die "the kernel has no br_netfilter (no /proc/sys/net/bridge): load it with 'modprobe br_netfilter'"
			echo "net.bridge.bridge-nf-call-iptables=$(sysctl -n net.bridge.bridge-nf-call-iptables)" >>"${KZERO_RUN_DIR}/sysctl.orig"
		fi
		sysctl -qw net.bridge.bridge-nf-call-iptables=1
	fi
}
step "network: bridge ${KZERO_BRIDGE} ${KZERO_NODE_IP}, Services ${KZERO_SERVICE_CIDR} to ${KZERO_SINK}" setup_network

step "PKI and kubeconfigs" bash "${here}/pki.sh"
cp "${KZERO_PKI_DIR}/admin.kubeconfig" "${KZERO_KUBECONFIG}"

pki="${KZERO_PKI_DIR}"
bin="${KZERO_BIN_DIR}"

# ---- etcd and kube-apiserver ------------------------------------------------

start_etcd() {
	start_proc etcd "${bin}/etcd" \
		--name=kzero --data-dir="${KZERO_RUN_DIR}/etcd" \
		--listen-client-urls="https://127.0.0.1:${KZERO_ETCD_CLIENT_PORT}" \
		--advertise-client-urls="https://127.0.0.1:${KZERO_ETCD_CLIENT_PORT}" \
		--listen-peer-urls="https://127.0.0.1:${KZERO_ETCD_PEER_PORT}" \
		--initial-advertise-peer-urls="https://127.0.0.1:${KZERO_ETCD_PEER_PORT}" \
		--initial-cluster="kzero=https://127.0.0.1:${KZERO_ETCD_PEER_PORT}" \
		--cert-file="${pki}/etcd-server.crt" --key-file="${pki}/etcd-server.key" \
		--client-cert-auth --trusted-ca-file="${pki}/etcd-ca.crt" \
		--peer-cert-file="${pki}/etcd-server.crt" --peer-key-file="${pki}/etcd-server.key" \
		--peer-client-cert-auth --peer-trusted-ca-file="${pki}/etcd-ca.crt" \
		--unsafe-no-fsync --log-level=warn
	wait_for "etcd to be healthy" 30 etcd \
		curl -fsS --max-time 2 --cacert "${pki}/etcd-ca.crt" --cert "${pki}/apiserver-etcd-client.crt" \
		--key "${pki}/apiserver-etcd-client.key" "https://127.0.0.1:${KZERO_ETCD_CLIENT_PORT}/health"
}
step "etcd ${ETCD_VERSION}" start_etcd

start_apiserver() {
	start_proc kube-apiserver "${bin}/kube-apiserver" \
		--etcd-servers="https://127.0.0.1:${KZERO_ETCD_CLIENT_PORT}" \
		--etcd-cafile="${pki}/etcd-ca.crt" --etcd-certfile="${pki}/apiserver-etcd-client.crt" \
		--etcd-keyfile="${pki}/apiserver-etcd-client.key" \
		--bind-address="${KZERO_NODE_IP}" --advertise-address="${KZERO_NODE_IP}" \
		--secure-port="${KZERO_APISERVER_PORT}" \
		--tls-cert-file="${pki}/apiserver.crt" --tls-private-key-file="${pki}/apiserver.key" \
		--client-ca-file="${pki}/ca.crt" --anonymous-auth=false \
		--kubelet-client-certificate="${pki}/apiserver-kubelet-client.crt" \
		--kubelet-client-key="${pki}/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="${pki}/ca.crt" \
		--kubelet-preferred-address-types=InternalIP \
		--service-cluster-ip-range="${KZERO_SERVICE_CIDR}" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="${pki}/sa.pub" \
		--service-account-signing-key-file="${pki}/sa.key" \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction \
		--admission-control-config-file="${pki}/admission.yaml" \
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

# ---- node -------------------------------------------------------------------

if [[ "${mode}" == node ]]; then
	start_controllers() {
		local kc
		kc="${pki}/kube-controller-manager.kubeconfig"
		start_proc kube-controller-manager "${bin}/kube-controller-manager" \
			--kubeconfig="${kc}" --authentication-kubeconfig="${kc}" --authorization-kubeconfig="${kc}" \
			--bind-address=127.0.0.1 --secure-port=10257 \
			--cluster-signing-cert-file="${pki}/ca.crt" --cluster-signing-key-file="${pki}/ca.key" \
			--root-ca-file="${pki}/ca.crt" --service-account-private-key-file="${pki}/sa.key" \
			--use-service-account-credentials=true \
			--service-cluster-ip-range="${KZERO_SERVICE_CIDR}" \
			--cluster-cidr="${KZERO_POD_CIDR}" --allocate-node-cidrs=false \
			--leader-elect=false --profiling=false
		kc="${pki}/kube-scheduler.kubeconfig"
		start_proc kube-scheduler "${bin}/kube-scheduler" \
			--kubeconfig="${kc}" --authentication-kubeconfig="${kc}" --authorization-kubeconfig="${kc}" \
			--bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false
	}
	step "kube-controller-manager and kube-scheduler" start_controllers

	start_containerd() {
		local c="${KZERO_RUN_DIR}/containerd"
		mkdir -p "${c}" "${KZERO_RUN_DIR}/cni/net.d"
		cat >"${KZERO_RUN_DIR}/cni/net.d/10-kzero.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "${KZERO_CNI_NETWORK}",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${KZERO_BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "${KZERO_RUN_DIR}/cni/ipam",
        "ranges": [[{"subnet": "${KZERO_POD_CIDR}", "gateway": "${KZERO_NODE_IP}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
		cat >"${c}/config.toml" <<EOF
version = 2
root = "${c}/root"
state = "${c}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "${KZERO_CONTAINERD_SOCK}"

[plugins."io.containerd.internal.v1.opt"]
  path = "${c}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${KZERO_PAUSE_IMAGE}"
  # This machine lacks CAP_SYS_RESOURCE: kubelet's negative oom_score_adj for
  # sandboxes would make runc fail.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${KZERO_RUN_DIR}/cni/net.d"
EOF
		start_proc containerd /usr/bin/containerd --config "${c}/config.toml"
		wait_for "containerd" 30 containerd \
			ctr --address "${KZERO_CONTAINERD_SOCK}" version
	}
	step "containerd $(containerd --version | awk '{print $3}')" start_containerd

	step "pause image ${KZERO_PAUSE_IMAGE}" bash "${here}/image.sh" --binary "${KZERO_TOOLS_BIN}/pause" "${KZERO_PAUSE_IMAGE}" >/dev/null

	start_kubelet() {
		local k="${KZERO_RUN_DIR}/kubelet"
		mkdir -p "${k}/root"
		# kubelet's root is a shared mount, as on a node whose / is shared
		# (systemd makes it so): a container's Bidirectional mount of a
		# directory under it (kzero agent's CSI driver mounts pods' volumes
		# in kubelet's pods/) needs that, and containerd refuses it on a
		# private source. This machine's / is private, so the root is made a
		# mount of its own, then shared; down.sh unmounts it.
		mount --bind "${k}/root" "${k}/root"
		mount --make-rshared "${k}/root"
		cat >"${k}/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${KZERO_NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: ${pki}/ca.crt
authorization:
  mode: Webhook
tlsCertFile: ${pki}/kubelet-server.crt
tlsPrivateKeyFile: ${pki}/kubelet-server.key
containerRuntimeEndpoint: unix://${KZERO_CONTAINERD_SOCK}
cgroupDriver: cgroupfs
# This machine has cgroup v1 (hybrid); kubelet 1.35+ refuses v1 unless told.
failCgroupV1: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: ${KZERO_RUN_DIR}/pod-logs
hairpinMode: hairpin-veth
# The pod range is a /24: room for about 250 pods, and the e2e tests start
# 100 at once.
maxPods: 240
serializeImagePulls: false
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
rotateCertificates: false
serverTLSBootstrap: false
EOF
		start_proc kubelet "${bin}/kubelet" \
			--config="${k}/config.yaml" --kubeconfig="${pki}/kubelet.kubeconfig" \
			--root-dir="${k}/root" --node-ip="${KZERO_NODE_IP}" \
			--hostname-override="${KZERO_NODE_NAME}"
		wait_for "kubelet /healthz" 60 kubelet curl -fsS --max-time 2 http://127.0.0.1:10248/healthz
	}
	step "kubelet" start_kubelet

	start_proxy() {
		cat >"${KZERO_RUN_DIR}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: ${pki}/kube-proxy.kubeconfig
mode: iptables
clusterCIDR: ${KZERO_POD_CIDR}
hostnameOverride: ${KZERO_NODE_NAME}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["${KZERO_NODE_IP}/32"]
conntrack:
  maxPerCore: 0
EOF
		start_proc kube-proxy "${bin}/kube-proxy" --config="${KZERO_RUN_DIR}/kube-proxy.yaml"
		wait_for "kube-proxy /healthz" 60 kube-proxy curl -fsS --max-time 2 http://127.0.0.1:10256/healthz
	}
	step "kube-proxy" start_proxy

	node_ready() {
		wait_for "node ${KZERO_NODE_NAME} to be Ready" 120 kubelet \
			kctl wait --for=condition=Ready "node/${KZERO_NODE_NAME}" --timeout=2s
		# Every pod mounts the namespace's kube-root-ca.crt and runs as its
		# service account, which kube-controller-manager creates.
		wait_for "the default service account and kube-root-ca.crt" 60 kube-controller-manager \
			kctl get serviceaccount/default configmap/kube-root-ca.crt
	}
	step "node ${KZERO_NODE_NAME} Ready" node_ready
fi

trap - EXIT
log "cluster up in ${mode} mode in $((SECONDS - total))s"
log "  export KUBECONFIG=${KZERO_KUBECONFIG}"
log "  kubectl: ${KZERO_BIN_DIR}/kubectl   stop: make cluster-down"
