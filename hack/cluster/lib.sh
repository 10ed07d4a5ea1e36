# shellcheck shell=bash disable=SC2034
# lib.sh: settings and helpers shared by the hack/cluster scripts.
# Source it; it does not run anything by itself.

# Paths. Every one can be overridden from the environment (docs/cluster.md).
KZERO_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KZERO_CACHE_DIR="${KZERO_CACHE_DIR:-${KZERO_REPO_ROOT}/.cache}"
KZERO_RUN_DIR="${KZERO_RUN_DIR:-${KZERO_REPO_ROOT}/.run/cluster}"
KZERO_TOOLS_DIR="${KZERO_REPO_ROOT}/hack/k8s"

# Versions come from the pinning module, so there is one place to change them.
K8S_VERSION="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "${KZERO_TOOLS_DIR}/go.mod")"
ETCD_VERSION="$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' "${KZERO_TOOLS_DIR}/go.mod")"
[[ -z "${ETCD_VERSION}" ]] && ETCD_VERSION="$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3; exit}' "${KZERO_TOOLS_DIR}/go.mod")"
# etcd is the version k8s.io/kubernetes itself requires, so the Kubernetes
# version keys the whole directory.
KZERO_BIN_DIR="${KZERO_BIN_DIR:-${KZERO_CACHE_DIR}/k8s/${K8S_VERSION}/bin}"
KZERO_IMAGE_DIR="${KZERO_CACHE_DIR}/images"

# Cluster layout. The ranges are chosen once; docs/cluster.md lists them.
KZERO_NODE_NAME="${KZERO_NODE_NAME:-kzero-node}"
# The pod range lives on the bridge KZERO_BRIDGE, whose address is also the
# node's: kube-apiserver and kubelet bind it. The Service range is routed to
# KZERO_SINK, a bridge with no ports (this kernel has no dummy driver), where
# whatever kube-proxy does not rewrite is dropped. KZERO_GUARD_CIDR, the pod
# range's /16, is routed to the sink as well, so pod addresses never follow
# the default route, even when the bridge is gone. Packets from pods are
# routed by table KZERO_ROUTE_TABLE, which knows only the pod range.
KZERO_POD_CIDR="10.244.0.0/24"
KZERO_NODE_IP="10.244.0.1"
KZERO_GUARD_CIDR="10.244.0.0/16"
KZERO_SERVICE_CIDR="10.96.0.0/24"
KZERO_SERVICE_APISERVER_IP="10.96.0.1"
KZERO_BRIDGE="kzero0"
KZERO_SINK="kzero-svc0"
KZERO_ROUTE_TABLE=2440
KZERO_CNI_NETWORK="kzero"
KZERO_APISERVER_PORT="${KZERO_APISERVER_PORT:-6443}"
KZERO_ETCD_CLIENT_PORT=2379
KZERO_ETCD_PEER_PORT=2380
# Ports the harness binds. Components' own health/metrics ports included.
KZERO_PORTS=(2379 2380 "${KZERO_APISERVER_PORT}" 10248 10249 10250 10256 10257 10259)
KZERO_CONTAINERD_NS="k8s.io"
KZERO_PAUSE_IMAGE="kzero.local/pause:v1"

# State files inside KZERO_RUN_DIR.
KZERO_PKI_DIR="${KZERO_RUN_DIR}/pki"
KZERO_PID_DIR="${KZERO_RUN_DIR}/pids"
KZERO_LOG_DIR="${KZERO_RUN_DIR}/logs"
KZERO_KUBECONFIG="${KZERO_RUN_DIR}/admin.kubeconfig"
KZERO_TOOLS_BIN="${KZERO_CACHE_DIR}/tools/bin"
KZERO_CONTAINERD_SOCK="${KZERO_RUN_DIR}/containerd/containerd.sock"

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

# port_in_use PORT: true if something listens on TCP PORT.
port_in_use() {
	local hex
	hex="$(printf '%04X' "$1")"
	awk -v p=":${hex}" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p {found = 1} END {exit !found}' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}

require_ports_free() {
	local p
	for p in "$@"; do
		if port_in_use "${p}"; then
			die "TCP port ${p} is already in use; find the owner with 'ss -ltnp sport = :${p}' and stop it (or run 'make cluster-down' if it is ours)"
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
		"https://${KZERO_NODE_IP}:${KZERO_APISERVER_PORT}$1"
}

# Components in the order they start; down.sh stops them in reverse.
KZERO_CP_PROCS=(etcd kube-apiserver)
KZERO_NODE_PROCS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)
