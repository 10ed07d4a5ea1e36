# shellcheck shell=bash disable=SC2034
# lib.sh: settings and helpers shared by the hack/cluster scripts.
# Source it; it does not run anything by itself.

# The cluster. CLUSTER (make cluster-up CLUSTER=NAME) names a second,
# independent cluster beside the default one (empty): its own state
# directory, PKI, etcd, kube-apiserver, ranges and nodes. NODES is how many
# nodes a cluster-up starts (1 to 3).
KZERO_CLUSTER="${KZERO_CLUSTER:-${CLUSTER:-}}"
if [[ -n "${KZERO_CLUSTER}" && ! "${KZERO_CLUSTER}" =~ ^[a-z]([a-z0-9-]{0,14}[a-z0-9])?$ ]]; then
	printf 'hack/cluster: error: CLUSTER=%s: want a name of 1 to 16 lowercase letters, digits and dashes, starting with a letter\n' "${KZERO_CLUSTER}" >&2
	exit 1
fi
KZERO_NODES="${KZERO_NODES:-${NODES:-1}}"

# Paths. Every one can be overridden from the environment (docs/cluster.md).
KZERO_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KZERO_CACHE_DIR="${KZERO_CACHE_DIR:-${KZERO_REPO_ROOT}/.cache}"
if [[ -z "${KZERO_RUN_DIR:-}" ]]; then
	KZERO_RUN_DIR="${KZERO_REPO_ROOT}/.run/cluster${KZERO_CLUSTER:+-${KZERO_CLUSTER}}"
fi
KZERO_TOOLS_DIR="${KZERO_REPO_ROOT}/hack/k8s"

# Versions come from the pinning module, so there is one place to change them.
K8S_VERSION="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "${KZERO_TOOLS_DIR}/go.mod")"
ETCD_VERSION="$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' "${KZERO_TOOLS_DIR}/go.mod")"
[[ -z "${ETCD_VERSION}" ]] && ETCD_VERSION="$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3; exit}' "${KZERO_TOOLS_DIR}/go.mod")"
# etcd is the version k8s.io/kubernetes itself requires, so the Kubernetes
# version keys the whole directory.
KZERO_BIN_DIR="${KZERO_BIN_DIR:-${KZERO_CACHE_DIR}/k8s/${K8S_VERSION}/bin}"
KZERO_IMAGE_DIR="${KZERO_CACHE_DIR}/images"

# State files inside KZERO_RUN_DIR.
KZERO_PKI_DIR="${KZERO_RUN_DIR}/pki"
KZERO_PID_DIR="${KZERO_RUN_DIR}/pids"
KZERO_LOG_DIR="${KZERO_RUN_DIR}/logs"
KZERO_KUBECONFIG="${KZERO_RUN_DIR}/admin.kubeconfig"
KZERO_TOOLS_BIN="${KZERO_CACHE_DIR}/tools/bin"
# KZERO_NODES_FILE lists the running cluster's nodes, one a line:
# "NAME IP POD-CIDR".
KZERO_NODES_FILE="${KZERO_RUN_DIR}/nodes"

# Cluster layout. Each cluster has an index: 0 for the default one, 1 to 3
# for named ones (given at cluster-up, kept in ${KZERO_RUN_DIR}/index). The
# index keys its ranges, so that clusters never overlap; docs/cluster.md
# lists them. With P = 10.(244+index):
#   P.0.0/24   the cluster network, on the machine's bridge KZERO_BRIDGE:
#              the machine is P.0.1 (kube-apiserver binds it), node i is
#              P.0.(10+i), each in Linux namespaces of its own
#   P.i.0/24   node i's pods, on a bridge inside node i; the machine and the
#              other nodes route it to node i
#   P.0.0/16   the guard range: routed to KZERO_SINK on the machine, a bridge
#              with no ports (this kernel has no dummy driver), so that no
#              address of the cluster follows the default route
#   10.(96+index).0.0/24 the Services, routed to a sink on the machine and
#              in each node; kube-proxy in each node rewrites those it knows
# Packets from the cluster's addresses that reach the machine are routed by
# table KZERO_ROUTE_TABLE, which knows only the cluster's ranges; the nodes
# have no default route at all. The control plane's other processes bind
# the loopback address KZERO_LOOPBACK.
cluster_layout() {
	local c="$1" p
	KZERO_INDEX="${c}"
	p="10.$((244 + c))"
	KZERO_NET_PREFIX="${p}"
	KZERO_HOST_IP="${p}.0.1"
	KZERO_CLUSTER_NET="${p}.0.0/24"
	KZERO_GUARD_CIDR="${p}.0.0/16"
	KZERO_SERVICE_CIDR="10.$((96 + c)).0.0/24"
	KZERO_SERVICE_APISERVER_IP="10.$((96 + c)).0.1"
	KZERO_BRIDGE="kzero${c}"
	KZERO_SINK="kzero-svc${c}"
	KZERO_ROUTE_TABLE=$((2440 + c))
	KZERO_LOOPBACK="127.0.${c}.1"
	KZERO_NAME_PREFIX="${KZERO_CLUSTER:-kzero}"
	# kube-apiserver's service account issuer: the cluster's own.
	KZERO_SA_ISSUER="https://kubernetes.default.svc.cluster.local"
	[[ -n "${KZERO_CLUSTER}" ]] && KZERO_SA_ISSUER="https://${KZERO_CLUSTER}.clusters.kzero.local"
	return 0
}

# node_name I, node_ip I, node_pod_cidr I, node_pod_gateway I: node I's name
# and addresses.
node_name() { echo "${KZERO_NAME_PREFIX}-node-$1"; }
node_ip() { echo "${KZERO_NET_PREFIX}.0.$((10 + $1))"; }
node_pod_cidr() { echo "${KZERO_NET_PREFIX}.$1.0/24"; }
node_pod_gateway() { echo "${KZERO_NET_PREFIX}.$1.1"; }
# node_dir NAME: a node's state; node_sock NAME: its containerd's socket.
node_dir() { echo "${KZERO_RUN_DIR}/$1"; }
node_sock() { echo "$(node_dir "$1")/containerd.sock"; }

# cluster_index prints this cluster's index: recorded, else 0 for the
# default cluster, else (a named cluster about to start) the lowest that no
# other cluster whose state directory is beside this one's holds, else
# "none". up.sh calls it under KZERO_INDEX_LOCK, so that two named clusters
# starting at once do not take the same.
cluster_index() {
	if [[ -f "${KZERO_RUN_DIR}/index" ]]; then
		cat "${KZERO_RUN_DIR}/index"
		return
	fi
	if [[ -z "${KZERO_CLUSTER}" ]]; then
		echo 0
		return
	fi
	local c f taken
	for c in 1 2 3; do
		taken=0
		for f in "$(dirname "${KZERO_RUN_DIR}")"/*/index; do
			[[ -f "${f}" && "$(cat "${f}")" == "${c}" ]] && taken=1
		done
		if [[ "${taken}" == 0 ]]; then
			echo "${c}"
			return
		fi
	done
	echo none
}
KZERO_INDEX_LOCK="$(dirname "${KZERO_RUN_DIR}")/.cluster-index.lock"
KZERO_INDEX_NOW="$(cluster_index)"
if [[ "${KZERO_INDEX_NOW}" =~ ^[0-3]$ ]]; then
	cluster_layout "${KZERO_INDEX_NOW}"
fi

# nodes prints the running cluster's node names.
nodes() { [[ -f "${KZERO_NODES_FILE}" ]] && awk '{print $1}' "${KZERO_NODES_FILE}"; return 0; }

KZERO_CNI_NETWORK="kzero"
KZERO_APISERVER_PORT="${KZERO_APISERVER_PORT:-6443}"
KZERO_ETCD_CLIENT_PORT=2379
KZERO_ETCD_PEER_PORT=2380
KZERO_CONTAINERD_NS="k8s.io"
KZERO_PAUSE_IMAGE="kzero.local/pause:v1"

# ---- output -----------------------------------------------------------------

# KZERO_T0 is when the outermost script started; scripts it runs inherit it,
# so every progress line counts from the same moment.
: "${KZERO_T0:=${EPOCHSECONDS}}"
export KZERO_T0

# log prints a progress line with the seconds since KZERO_T0.
log() { printf '[%4ds] %s\n' "$((EPOCHSECONDS - KZERO_T0))" "$*" >&2; }

# die prints an error that says what to do and exits.
die() { printf 'hack/cluster: error: %s\n' "$*" >&2; exit 1; }

# step NAME CMD...: runs CMD with a "start" and a "done in Ns" line.
step() {
	local name="$1" start="${SECONDS}"
	shift
	log "${name} ..."
	"$@"
	log "${name}: done in $((SECONDS - start))s"
}

# ---- preconditions ----------------------------------------------------------

require_root() {
	[[ "$(id -u)" == 0 ]] || die "must run as root (the cluster needs network devices, mounts and iptables): run it with sudo"
}

require_cgroups() {
	[[ -d /sys/fs/cgroup ]] || die "no /sys/fs/cgroup: mount cgroups (v1 or v2) before starting a node"
	if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
		return 0 # cgroup v2
	fi
	local c
	for c in cpu memory pids; do
		[[ -d "/sys/fs/cgroup/${c}" ]] || die "cgroup v1 controller '${c}' is not mounted at /sys/fs/cgroup/${c}: mount it (mount -t cgroup -o ${c} cgroup /sys/fs/cgroup/${c})"
	done
}

# port_in_use IP PORT: true if something listens on TCP PORT of IP (or of
# every address).
port_in_use() {
	local ip="$1" hex addr a b c d
	hex="$(printf '%04X' "$2")"
	IFS=. read -r a b c d <<<"${ip}"
	addr="$(printf '%02X%02X%02X%02X' "${d}" "${c}" "${b}" "${a}")" # /proc/net/tcp: little-endian
	awk -v a="${addr}:${hex}" -v any="00000000:${hex}" 'NR > 1 && $4 == "0A" && ($2 == a || $2 == any) {found = 1} END {exit !found}' \
		/proc/net/tcp 2>/dev/null ||
		awk -v p=":${hex}" 'NR > 1 && $4 == "0A" && $2 == "00000000000000000000000000000000" p {found = 1} END {exit !found}' \
			/proc/net/tcp6 2>/dev/null
}

# require_ports_free IP:PORT...: dies if something listens on one.
require_ports_free() {
	local p
	for p in "$@"; do
		if port_in_use "${p%:*}" "${p##*:}"; then
			die "TCP port ${p} is already in use; find the owner with 'ss -ltnp sport = :${p##*:}' and stop it (or run 'make cluster-down' if it is ours)"
		fi
	done
}

require_go() {
	if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
		export PATH="${PATH}:/usr/local/go/bin"
	fi
	command -v go >/dev/null || die "go is not on PATH: install Go (see go.mod for the version) or add /usr/local/go/bin to PATH"
}

# take_lock: one up.sh or down.sh at a time. A second one waits for the first
# (so a cluster-down that a timed-out test leaves running is followed, not
# raced, by the next). Scripts run by a holder do not lock again.
take_lock() {
	[[ -n "${KZERO_LOCK_HELD:-}" ]] && return 0
	mkdir -p "$(dirname "${KZERO_RUN_DIR}")"
	exec 9>"${KZERO_RUN_DIR}.lock"
	if ! flock -n 9; then
		log "waiting for another cluster-up or cluster-down to finish"
		flock 9
	fi
	export KZERO_LOCK_HELD=1
}

# ---- processes --------------------------------------------------------------

# start_proc NAME BINARY ARGS...: starts BINARY in its own session, logging to
# ${KZERO_LOG_DIR}/NAME.log, and records "PID BINARY" in ${KZERO_PID_DIR}.
start_proc() {
	local name="$1" bin="$2"
	shift 2
	mkdir -p "${KZERO_PID_DIR}" "${KZERO_LOG_DIR}"
	setsid "${bin}" "$@" >"${KZERO_LOG_DIR}/${name}.log" 2>&1 </dev/null 9>&- &
	local pid=$! i
	echo "${pid} ${bin}" >"${KZERO_PID_DIR}/${name}.pid"
	# Until the forked shell has exec'd the binary, /proc/PID/exe is bash's.
	for ((i = 0; i < 50; i++)); do
		pid_alive "${name}" && return 0
		kill -0 "${pid}" 2>/dev/null || return 0 # exited: wait_for says so
		sleep 0.02
	done
}

# recorded_pid NAME: prints the PID recorded for NAME if that process still
# runs the binary it was started with (so a reused PID is never signalled).
recorded_pid() {
	local f="${KZERO_PID_DIR}/$1.pid" pid bin exe
	[[ -f "${f}" ]] || return 1
	read -r pid bin <"${f}" || return 1
	[[ "${pid}" =~ ^[0-9]+$ ]] || return 1
	exe="$(readlink "/proc/${pid}/exe" 2>/dev/null)" || return 1
	exe="${exe% (deleted)}"
	[[ "${exe}" == "$(readlink -f "${bin}")" ]] || return 1
	echo "${pid}"
}

pid_alive() { recorded_pid "$1" >/dev/null; }

# stop_procs GRACE NAME...: sends SIGTERM to each, waits up to GRACE seconds
# for all of them, then sends SIGKILL to those left.
stop_procs() {
	local grace="$1" name pid i start="${SECONDS}" alive
	shift
	local -A pids=()
	for name in "$@"; do
		if pid="$(recorded_pid "${name}")"; then
			pids["${name}"]="${pid}"
			kill -TERM "${pid}" 2>/dev/null || true
		fi
		rm -f "${KZERO_PID_DIR}/${name}.pid"
	done
	[[ "${#pids[@]}" == 0 ]] && return 0
	for ((i = 0; i < grace * 10; i++)); do
		alive=0
		for name in "${!pids[@]}"; do kill -0 "${pids[${name}]}" 2>/dev/null && alive=1; done
		[[ "${alive}" == 0 ]] && break
		sleep 0.1
	done
	for name in "${!pids[@]}"; do
		pid="${pids[${name}]}"
		if kill -0 "${pid}" 2>/dev/null; then
			log "${name} (pid ${pid}) did not stop in ${grace}s; killing it"
			kill -KILL "${pid}" 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
		fi
	done
	log "stopped ${!pids[*]} in $((SECONDS - start))s"
}

# wait_for WHAT TIMEOUT PROC CMD...: runs CMD until it succeeds. Fails with
# the end of PROC's log if PROC exits or TIMEOUT seconds pass.
wait_for() {
	local what="$1" timeout="$2" proc="$3" deadline
	shift 3
	deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if [[ -n "${proc}" ]] && ! pid_alive "${proc}"; then
			tail -n 25 "${KZERO_LOG_DIR}/${proc}.log" >&2 || true
			die "${proc} exited while waiting for ${what}; its log is ${KZERO_LOG_DIR}/${proc}.log (last lines above)"
		fi
		if ((SECONDS >= deadline)); then
			[[ -n "${proc}" ]] && { tail -n 25 "${KZERO_LOG_DIR}/${proc}.log" >&2 || true; }
			die "timed out after ${timeout}s waiting for ${what}; see ${KZERO_LOG_DIR}/${proc:-}.log"
		fi
		sleep 0.2
	done
}

# kctl ARGS...: kubectl as the cluster admin.
kctl() { "${KZERO_BIN_DIR}/kubectl" --kubeconfig "${KZERO_KUBECONFIG}" "$@"; }

# api_get PATH: GET PATH from kube-apiserver with the admin certificate.
api_get() {
	curl -fsS --max-time 5 --cacert "${KZERO_PKI_DIR}/ca.crt" \
		--cert "${KZERO_PKI_DIR}/admin.crt" --key "${KZERO_PKI_DIR}/admin.key" \
		"https://${KZERO_HOST_IP}:${KZERO_APISERVER_PORT}$1"
}


# ---- nodes ------------------------------------------------------------------

# A node is a set of Linux namespaces of its own (mount, UTS, IPC, network,
# PID), held by an init: the harness's pause, PID 1 of the node, which reaps
# orphans. Its processes are entered into those namespaces with nsenter.
# When its init stops, the kernel kills every process of the node, and the
# namespaces, with their mounts, network devices and iptables rules, go.

# record_child PARENT NAME BINARY: waits (5 s at most) until PARENT (unshare
# or nsenter) has forked the process that runs BINARY, and records that
# process, not PARENT, as NAME. Fails if PARENT exits first or the child
# does not show.
record_child() {
	local parent="$1" name="$2" bin="$3" i child
	for ((i = 0; i < 250; i++)); do
		child="$(awk '{print $1}' "/proc/${parent}/task/${parent}/children" 2>/dev/null || true)"
		if [[ -n "${child}" ]]; then
			echo "${child} ${bin}" >"${KZERO_PID_DIR}/${name}.pid"
			pid_alive "${name}" && return 0
		fi
		kill -0 "${parent}" 2>/dev/null || return 1
		sleep 0.02
	done
	return 1
}

# start_node_namespaces NAME: makes node NAME's namespaces and init,
# recorded as NAME.init (the init's PID, on the machine).
start_node_namespaces() {
	local name="$1"
	mkdir -p "${KZERO_PID_DIR}" "${KZERO_LOG_DIR}"
	setsid unshare --fork --pid --mount-proc --mount --uts --ipc --net --propagation private --kill-child \
		-- "${KZERO_TOOLS_BIN}/pause" >"${KZERO_LOG_DIR}/${name}.init.log" 2>&1 </dev/null 9>&- &
	record_child "$!" "${name}.init" "${KZERO_TOOLS_BIN}/pause" ||
		die "node ${name}'s namespaces did not start; see ${KZERO_LOG_DIR}/${name}.init.log"
}

# in_node NAME CMD...: runs CMD in node NAME's namespaces.
in_node() {
	local name="$1" pid
	shift
	pid="$(recorded_pid "${name}.init")" || die "node ${name} is not running (no init recorded in ${KZERO_PID_DIR})"
	nsenter --target "${pid}" --mount --uts --ipc --net --pid -- "$@"
}

# start_node_proc NODE NAME BINARY ARGS...: start_proc, in node NODE's
# namespaces; the PID recorded is the binary's own, not nsenter's.
start_node_proc() {
	local node="$1" name="$2" bin="$3" init
	shift 3
	init="$(recorded_pid "${node}.init")" || die "node ${node} is not running (no init recorded in ${KZERO_PID_DIR})"
	mkdir -p "${KZERO_PID_DIR}" "${KZERO_LOG_DIR}"
	setsid nsenter --target "${init}" --mount --uts --ipc --net --pid -- "${bin}" "$@" \
		>"${KZERO_LOG_DIR}/${name}.log" 2>&1 </dev/null 9>&- &
	record_child "$!" "${name}" "${bin}" || true # it exited: the caller's wait_for says so
}

# node_cgroup NAME: the cgroup (below each hierarchy's root) that node
# NAME's kubelet makes its pods' cgroups in: nodes never share one, as a
# kubelet kills what it finds in its own that it did not start.
node_cgroup() { echo "/kzero-node.$1"; }

# KZERO_NODE_PRIVATE_DIRS are the directories each node has of its own (in
# ${KZERO_RUN_DIR}/<node>/root), besides /run and /var/lib/kubelet.
KZERO_NODE_PRIVATE_DIRS=(/tmp /var/tmp /var/lib /var/log /mnt /srv /opt)

# node_procs: the processes of a node, in the order they start (recorded as
# <node>.<proc>); the control plane's.
KZERO_NODE_PROCS=(containerd kubelet kube-proxy)
KZERO_CP_PROCS=(etcd kube-apiserver)
KZERO_CONTROLLERS=(kube-controller-manager kube-scheduler)
