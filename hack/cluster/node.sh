#!/usr/bin/env bash
# node.sh I: starts node I of the running cluster (up.sh runs it for each):
# its namespaces (node name and addresses from lib.sh), its network (a veth
# to the cluster's bridge, routes to the other nodes' pods, no default
# route), what its pods see as the host (/run, /var/lib/kubelet), its cgroup,
# and its containerd, kubelet and kube-proxy.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "${here}/lib.sh"

require_root
take_lock
i="$1"
name="$(node_name "${i}")"
ip="$(node_ip "${i}")"
pod_cidr="$(node_pod_cidr "${i}")"
dir="$(node_dir "${name}")"
sock="$(node_sock "${name}")"
pki="${KZERO_PKI_DIR}"
bin="${KZERO_BIN_DIR}"
mkdir -p "${dir}/kubelet" "${dir}/containerd" "${dir}/cni/net.d" "${dir}/pod-logs"

# ---- namespaces and network ---------------------------------------------------

start_node_namespaces "${name}"
init="$(recorded_pid "${name}.init")"
veth="kz${KZERO_INDEX}n${i}"
ip link add "${veth}" type veth peer name eth0 netns "${init}"
ip link set "${veth}" master "${KZERO_BRIDGE}" up

node_network() {
	ip link set lo up
	ip addr add "${ip}/${KZERO_CLUSTER_NET#*/}" dev eth0
	ip link set eth0 up
	# The other nodes' pods, by way of those nodes; no default route, so
	# nothing a pod sends can leave the cluster's network.
	local j
	for ((j = 1; j <= KZERO_NODES; j++)); do
		[[ "${j}" == "${i}" ]] || ip route add "$(node_pod_cidr "${j}")" via "$(node_ip "${j}")"
	done
	# Services: what kube-proxy does not rewrite is dropped in a bridge
	# with no ports.
	ip link add svc0 type bridge
	ip link set svc0 up
	ip route add "${KZERO_SERVICE_CIDR}" dev svc0
	sysctl -qw net.ipv4.ip_forward=1
	# kube-proxy's rules must see packets that cross the pods' bridge.
	sysctl -qw net.bridge.bridge-nf-call-iptables=1
	hostname "${name}"
}
in_node "${name}" bash -c "$(declare -f node_network node_pod_cidr node_ip); $(declare -p i ip KZERO_CLUSTER_NET KZERO_NODES KZERO_NET_PREFIX KZERO_SERVICE_CIDR name); node_network"

# What the node's processes and pods see as the host's is the node's own:
# /run (the agent's socket directory, kubelet's and containerd's runtime
# state) a tmpfs, and the directories where hostPath volumes usually point
# (KZERO_NODE_PRIVATE_DIRS) directories of the node's state, so that a
# DaemonSet's pods on two nodes share none of them. /var/lib/kubelet is the
# node's kubelet directory, a shared mount (as on a node whose / systemd
# shares): a pod's Bidirectional mount below it, such as kzero's CSI
# driver's, needs that. The rest (/usr, /etc) is the machine's. A directory
# that holds the repository, the run or the cache directory stays the
# machine's, or the node could not reach its own state.
node_mounts() {
	local d k keep
	mount -t tmpfs -o mode=0755,size=64m tmpfs /run
	for d in "${KZERO_NODE_PRIVATE_DIRS[@]}"; do
		[[ -d "${d}" ]] || continue
		keep=""
		for k in "${KZERO_REPO_ROOT}" "${KZERO_RUN_DIR}" "${KZERO_CACHE_DIR}" "${KZERO_BIN_DIR}"; do
			if [[ "${k}" == "${d}" || "${k}" == "${d}/"* ]]; then
				keep="${k}"
				break
			fi
		done
		if [[ -n "${keep}" ]]; then
			echo "${name}: ${d} stays the machine's: it holds ${keep}" >&2
			continue
		fi
		mkdir -p "${dir}/root${d}"
		chmod "$(stat -c %a "${d}")" "${dir}/root${d}"
		mount --bind "${dir}/root${d}" "${d}"
	done
	if [[ ! -d /var/lib/kubelet ]]; then
		mkdir -p /var/lib/kubelet
		# Made on the machine, if /var/lib stayed the machine's.
		[[ -d "${dir}/root/var/lib/kubelet" ]] || touch "${KZERO_RUN_DIR}/made-var-lib-kubelet"
	fi
	mount --bind "${dir}/kubelet" /var/lib/kubelet
	mount --make-rshared /var/lib/kubelet
	# The CNI directories where a node's plugins usually are, and where
	# kzero agent chains its plugin (kzero install's defaults): the node's
	# own, its bin directory holding links to the machine's plugins.
	mkdir -p "${dir}/cni/bin" /opt/cni/bin
	ln -sf /usr/lib/cni/* "${dir}/cni/bin/"
	mount --bind "${dir}/cni/bin" /opt/cni/bin
	mount --bind "${dir}/cni/net.d" /etc/cni/net.d
}
# /etc is the machine's: the mount point of the node's network
# configuration must be there (an empty directory, as a CNI package makes).
mkdir -p /etc/cni/net.d
in_node "${name}" bash -c "$(declare -f node_mounts); $(declare -p dir name KZERO_NODE_PRIVATE_DIRS KZERO_REPO_ROOT KZERO_RUN_DIR KZERO_CACHE_DIR KZERO_BIN_DIR); node_mounts"

# The node's cgroup, in every hierarchy: its kubelet's cgroupRoot.
cg="$(node_cgroup "${name}")"
for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
	[[ -e "${h}cgroup.procs" ]] || continue
	[[ -f /sys/fs/cgroup/cgroup.controllers && "${h}" != /sys/fs/cgroup/ ]] && continue # v2: the one hierarchy
	mkdir -p "${h%/}${cg}"
done

# ---- containerd -------------------------------------------------------------------

c="${dir}/containerd"
cat >"${dir}/cni/net.d/10-kzero.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "${KZERO_CNI_NETWORK}",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "${dir}/cni/ipam",
        "ranges": [[{"subnet": "${pod_cidr}", "gateway": "$(node_pod_gateway "${i}")"}]],
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
  address = "${sock}"

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
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
EOF
start_node_proc "${name}" "${name}.containerd" /usr/bin/containerd --config "${c}/config.toml"
wait_for "${name}'s containerd" 30 "${name}.containerd" ctr --address "${sock}" version
ctr --address "${sock}" -n "${KZERO_CONTAINERD_NS}" images import "${KZERO_IMAGE_DIR}/pause_v1.tar" >/dev/null ||
	die "importing the pause image into ${name}'s containerd failed"

# ---- kubelet ----------------------------------------------------------------------

cat >"${dir}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${ip}
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
tlsCertFile: ${pki}/kubelet-server-${name}.crt
tlsPrivateKeyFile: ${pki}/kubelet-server-${name}.key
containerRuntimeEndpoint: unix://${sock}
cgroupDriver: cgroupfs
# The node's own cgroup: kubelet kills what it finds in its cgroups that it
# did not start, so two nodes never share one.
cgroupRoot: ${cg}
# This machine has cgroup v1 (hybrid); kubelet 1.35+ refuses v1 unless told.
failCgroupV1: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: ${dir}/pod-logs
hairpinMode: hairpin-veth
# A node's pod range is a /24: room for about 250 pods, and the e2e tests
# start 100 at once.
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
start_node_proc "${name}" "${name}.kubelet" "${bin}/kubelet" \
	--config="${dir}/kubelet.yaml" --kubeconfig="${pki}/kubelet-${name}.kubeconfig" \
	--root-dir=/var/lib/kubelet --node-ip="${ip}" --hostname-override="${name}"
wait_for "${name}'s kubelet /healthz" 60 "${name}.kubelet" in_node "${name}" curl -fsS --max-time 2 http://127.0.0.1:10248/healthz

# ---- kube-proxy -------------------------------------------------------------------

cat >"${dir}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: ${pki}/kube-proxy.kubeconfig
mode: iptables
clusterCIDR: ${KZERO_GUARD_CIDR}
hostnameOverride: ${name}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["${ip}/32"]
conntrack:
  maxPerCore: 0
EOF
start_node_proc "${name}" "${name}.kube-proxy" "${bin}/kube-proxy" --config="${dir}/kube-proxy.yaml"
wait_for "${name}'s kube-proxy /healthz" 60 "${name}.kube-proxy" in_node "${name}" curl -fsS --max-time 2 http://127.0.0.1:10256/healthz
