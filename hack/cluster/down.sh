#!/usr/bin/env bash
# down.sh: stops the cluster that up.sh started and removes what it made:
# each node (its kubelet first, its pod sandboxes, its containerd and
# kube-proxy, then its init, whose end takes the node's namespaces with
# their mounts, network devices and iptables rules), the control plane's
# processes (by the PIDs recorded in ${KZERO_RUN_DIR}/pids), the machine's
# bridges, routes and rule, the nodes' cgroups, and the state. Stopping a
# cluster that is not running does nothing harmful. The logs of the last
# run stay in ${KZERO_LOG_DIR}. CLUSTER=NAME stops that cluster.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "${here}/lib.sh"

require_root
take_lock
total="${SECONDS}"
mode=""
[[ -f "${KZERO_RUN_DIR}/mode" ]] && mode="$(cat "${KZERO_RUN_DIR}/mode")"
if [[ ! "${KZERO_INDEX_NOW}" =~ ^[0-3]$ ]]; then
	log "no cluster ${KZERO_CLUSTER} is recorded in ${KZERO_RUN_DIR}"
	exit 0
fi

# ---- nodes ------------------------------------------------------------------

# Every node recorded, also one a failed cluster-up did not list yet.
node_names() {
	{
		nodes
		for f in "${KZERO_PID_DIR}"/*.init.pid; do
			[[ -f "${f}" ]] && basename "${f}" .init.pid
		done
	} | sort -u
}

stop_node() {
	local n="$1" sock
	sock="$(node_sock "${n}")"
	# kubelet first, so that it does not restart the pods removed below.
	stop_procs 15 "${n}.kubelet"
	if pid_alive "${n}.containerd" && [[ -x "${KZERO_TOOLS_BIN}/cri-reset" ]]; then
		step "${n}: removing pod sandboxes" "${KZERO_TOOLS_BIN}/cri-reset" -endpoint "unix://${sock}" -timeout 60s ||
			log "cri-reset failed on ${n}; its init's end kills what is left"
	fi
	stop_procs 15 "${n}.kube-proxy" "${n}.containerd"
	# The node's init: PID 1 of its namespace, whose end kills every
	# process left in it (shims, pods) and frees the namespaces.
	stop_procs 15 "${n}.init"
}
for n in $(node_names); do
	stop_node "${n}"
done

stop_procs 15 "${KZERO_CONTROLLERS[@]}" kube-apiserver
stop_procs 15 etcd

# ---- cgroups, mounts, network --------------------------------------------------

# The nodes' cgroups: processes left in them (there should be none), then
# the empty directories, deepest first.
for n in $(node_names); do
	cg="$(node_cgroup "${n}")"
	mapfile -t left < <(find /sys/fs/cgroup/*"${cg}" /sys/fs/cgroup"${cg}" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un)
	if [[ "${#left[@]}" -gt 0 ]]; then
		log "killing ${#left[@]} processes left in ${n}'s cgroups: ${left[*]}"
		kill -KILL "${left[@]}" 2>/dev/null || true
		sleep 0.5
	fi
	for root in /sys/fs/cgroup/*"${cg}" /sys/fs/cgroup"${cg}"; do
		[[ -d "${root}" ]] || continue
		find "${root}" -depth -type d -exec rmdir {} \; 2>/dev/null || log "could not remove cgroup ${root}"
	done
done

unmount_ours() {
	local m
	[[ -d "${KZERO_RUN_DIR}" ]] || return 0
	# Mounts of the machine below the state directory (nodes' mounts are
	# in their own namespaces, gone with them), deepest first.
	while read -r m; do
		umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || log "could not unmount ${m}"
	done < <(awk -v root="${KZERO_RUN_DIR}/" 'index($5, root) == 1 {print $5}' /proc/self/mountinfo | sort -r)
}
unmount_ours
if [[ -f "${KZERO_RUN_DIR}/made-var-lib-kubelet" ]]; then
	rmdir /var/lib/kubelet 2>/dev/null || true
fi

for veth in $(ip -o link show master "${KZERO_BRIDGE}" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
	ip link del "${veth}" 2>/dev/null || true
done
for link in "${KZERO_BRIDGE}" "${KZERO_SINK}"; do
	if ip link del "${link}" 2>/dev/null; then log "removed network device ${link}"; fi
done
while ip rule del pref "${KZERO_ROUTE_TABLE}" 2>/dev/null; do :; done
ip route flush table "${KZERO_ROUTE_TABLE}" 2>/dev/null || true

# ---- state ------------------------------------------------------------------

if [[ -n "${mode}" || -d "${KZERO_RUN_DIR}/pids" ]]; then
	find "${KZERO_RUN_DIR}" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null || {
		log "could not remove all of ${KZERO_RUN_DIR}; something still uses it (see 'grep ${KZERO_RUN_DIR} /proc/self/mountinfo')"
		exit 1
	}
	log "cluster ${KZERO_CLUSTER:-(default)} down in $((SECONDS - total))s; logs of the last run: ${KZERO_LOG_DIR}"
else
	log "no cluster was running"
fi
