#!/usr/bin/env bash
# status.sh: prints the cluster's mode, its processes and its node.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ! -f "${KZERO_RUN_DIR}/mode" ]]; then
	echo "no cluster is running (state: ${KZERO_RUN_DIR}); start one with 'make cluster-up'"
	exit 0
fi
mode="$(cat "${KZERO_RUN_DIR}/mode")"
echo "mode: ${mode}    KUBECONFIG=${KZERO_KUBECONFIG}"
if [[ "${mode}" == node ]]; then procs=("${KZERO_NODE_PROCS[@]}"); else procs=("${KZERO_CP_PROCS[@]}"); fi
for p in "${procs[@]}"; do
	if pid="$(recorded_pid "${p}")"; then
		printf '  %-24s running, pid %s\n' "${p}" "${pid}"
	else
		printf '  %-24s NOT RUNNING; log: %s\n' "${p}" "${KZERO_LOG_DIR}/${p}.log"
	fi
done
kctl get nodes -o wide 2>/dev/null || true
