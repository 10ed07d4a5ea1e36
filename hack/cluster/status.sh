#!/usr/bin/env bash
# status.sh: prints the cluster's mode, its processes, node by node, and its
# nodes as the API server sees them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_root # a process's executable, which says whether it still runs, is root's to read

if [[ ! -f "${KZERO_RUN_DIR}/mode" ]]; then
	echo "no cluster ${KZERO_CLUSTER:-(default)} is running (state: ${KZERO_RUN_DIR}); start one with 'make cluster-up${KZERO_CLUSTER:+ CLUSTER=${KZERO_CLUSTER}}'"
	exit 0
fi
mode="$(cat "${KZERO_RUN_DIR}/mode")"
echo "cluster ${KZERO_CLUSTER:-(default)}, index ${KZERO_INDEX}, mode ${mode}    KUBECONFIG=${KZERO_KUBECONFIG}"
show() {
	local p="$1" pid
	if pid="$(recorded_pid "${p}")"; then
		printf '  %-32s running, pid %s\n' "${p}" "${pid}"
	else
		printf '  %-32s NOT RUNNING; log: %s\n' "${p}" "${KZERO_LOG_DIR}/${p}.log"
	fi
}
# node_rss NAME: the resident memory of every process of node NAME (those in
# its PID namespace: containerd, kubelet, kube-proxy, the pods), in MiB.
node_rss() {
	local init ns pid kb=0 n=0 rss
	init="$(recorded_pid "$1.init")" || { echo "unknown (node not running)"; return; }
	ns="$(readlink "/proc/${init}/ns/pid")"
	for pid in /proc/[0-9]*; do
		[[ "$(readlink "${pid}/ns/pid" 2>/dev/null)" == "${ns}" ]] || continue
		rss="$(awk '$1 == "VmRSS:" {print $2}' "${pid}/status" 2>/dev/null)"
		[[ -n "${rss}" ]] || continue
		kb=$((kb + rss))
		n=$((n + 1))
	done
	echo "$((kb / 1024)) MiB in ${n} processes"
}
for p in "${KZERO_CP_PROCS[@]}"; do show "${p}"; done
if [[ "${mode}" == node ]]; then
	for p in "${KZERO_CONTROLLERS[@]}"; do show "${p}"; done
	while read -r n nip cidr; do
		echo "node ${n}: ${nip}, pods ${cidr}, resident memory $(node_rss "${n}")"
		show "${n}.init"
		for p in "${KZERO_NODE_PROCS[@]}"; do show "${n}.${p}"; done
	done <"${KZERO_NODES_FILE}"
fi
kctl get nodes -o wide 2>/dev/null || true
