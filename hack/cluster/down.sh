#!/usr/bin/env bash
# down.sh: stops the cluster that up.sh started and removes what it made:
# its processes (by the PIDs recorded in ${KZERO_RUN_DIR}/pids), pod
# sandboxes with their veths and network namespaces, mounts under
# ${KZERO_RUN_DIR}, the bridges, routes and rule, the iptables chains of
# kube-proxy and kubelet, the kubepods cgroups, and the sysctls it changed.
# Stopping a cluster that is not running does nothing harmful. The logs of the
# last run stay in ${KZERO_LOG_DIR}.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_root
take_lock
total="${SECONDS}"
mode=""
[[ -f "${KZERO_RUN_DIR}/mode" ]] && mode="$(cat "${KZERO_RUN_DIR}/mode")"

# ---- processes --------------------------------------------------------------

# kubelet first, so that it does not restart the pods removed below.
stop_procs 15 kubelet

if pid_alive containerd; then
	if [[ -x "${KZERO_TOOLS_BIN}/cri-reset" ]]; then
		step "removing pod sandboxes" "${KZERO_TOOLS_BIN}/cri-reset" -endpoint "unix://${KZERO_CONTAINERD_SOCK}" -timeout 60s ||
			log "cri-reset failed; killing what is left of the pods below"
	fi
fi
stop_procs 15 kube-proxy containerd

# Shims and pod processes left over (cri-reset failed or containerd died):
# shims name our socket on their command line; pod processes are in the
# kubepods cgroups that our kubelet made.
leftover_pids() {
	local p cmd
	for p in /proc/[0-9]*; do
		cmd="$(tr '\0' ' ' <"${p}/cmdline" 2>/dev/null)" || continue
		[[ "${cmd}" == *containerd-shim*"${KZERO_CONTAINERD_SOCK}"* ]] && echo "${p#/proc/}"
	done
	cat /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/*/cgroup.procs \
		/sys/fs/cgroup/*/kubepods/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods/*/*/*/cgroup.procs 2>/dev/null || true
}
mapfile -t left < <(leftover_pids | sort -un)
if [[ "${#left[@]}" -gt 0 ]]; then
	log "killing ${#left[@]} leftover pod and shim processes: ${left[*]}"
	kill -KILL "${left[@]}" 2>/dev/null || true
	sleep 0.5
fi

stop_procs 15 kube-scheduler kube-controller-manager kube-apiserver
stop_procs 15 etcd

# ---- iptables ---------------------------------------------------------------

# kube-proxy's own cleanup removes its chains in every mode (iptables,
# nftables, ipvs). What is left of KUBE-* (kubelet's and kube-proxy's canary,
# hint and firewall chains, and the rules that jump to them) is removed by
# name: no other Kubernetes runs on a machine the harness runs on.
cleanup_iptables() {
	if [[ -x "${KZERO_BIN_DIR}/kube-proxy" ]] && command -v iptables >/dev/null; then
		"${KZERO_BIN_DIR}/kube-proxy" --cleanup >"${KZERO_LOG_DIR}/kube-proxy-cleanup.log" 2>&1 || true
	fi
	local ipt table rule chain
	for ipt in iptables ip6tables; do
		command -v "${ipt}" >/dev/null || continue
		for table in raw mangle nat filter; do
			"${ipt}" -w -t "${table}" -S >/dev/null 2>&1 || continue
			while IFS= read -r rule; do
				# "-A CHAIN ... -j KUBE-X" -> "-D CHAIN ... -j KUBE-X"
				eval "\"${ipt}\" -w -t ${table} -D ${rule#-A }" 2>/dev/null || true
			done < <("${ipt}" -w -t "${table}" -S | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-')
			for chain in $("${ipt}" -w -t "${table}" -S | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
				"${ipt}" -w -t "${table}" -F "${chain}" 2>/dev/null || true
			done
			for chain in $("${ipt}" -w -t "${table}" -S | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
				"${ipt}" -w -t "${table}" -X "${chain}" 2>/dev/null || log "could not remove ${ipt} ${table} chain ${chain}"
			done
		done
	done
}
if [[ "${mode}" == node ]] || iptables -w -t nat -S KUBE-SERVICES >/dev/null 2>&1; then
	step "iptables cleanup" cleanup_iptables
fi

# ---- mounts, network, cgroups, sysctls --------------------------------------

unmount_ours() {
	local m
	[[ -d "${KZERO_RUN_DIR}" ]] || return 0
	# Deepest first: pods' volumes, then kubelet's root, a shared bind
	# mount of itself (up.sh).
	while read -r m; do
		umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || log "could not unmount ${m}"
	done < <(awk -v root="${KZERO_RUN_DIR}/" 'index($5, root) == 1 {print $5}' /proc/self/mountinfo | sort -r)
}
unmount_ours

for veth in $(ip -o link show master "${KZERO_BRIDGE}" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
	ip link del "${veth}" 2>/dev/null || true
done
for link in "${KZERO_BRIDGE}" "${KZERO_SINK}"; do
	if ip link del "${link}" 2>/dev/null; then log "removed network device ${link}"; fi
done
while ip rule del pref "${KZERO_ROUTE_TABLE}" 2>/dev/null; do :; done
ip route flush table "${KZERO_ROUTE_TABLE}" 2>/dev/null || true

# cgroups kubelet and runc made for pods: remove the empty directories,
# deepest first.
for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods.slice; do
	[[ -d "${root}" ]] || continue
	find "${root}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done

if [[ -f "${KZERO_RUN_DIR}/sysctl.orig" ]]; then
	while IFS= read -r kv; do
		sysctl -qw "${kv}" 2>/dev/null || log "could not restore sysctl ${kv}"
	done <"${KZERO_RUN_DIR}/sysctl.orig"
fi

# ---- state ------------------------------------------------------------------

if [[ -n "${mode}" || -d "${KZERO_RUN_DIR}/pids" ]]; then
	find "${KZERO_RUN_DIR}" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null || {
		log "could not remove all of ${KZERO_RUN_DIR}; something still uses it (see 'grep ${KZERO_RUN_DIR} /proc/self/mountinfo')"
		exit 1
	}
	log "cluster down in $((SECONDS - total))s; logs of the last run: ${KZERO_LOG_DIR}"
else
	log "no cluster was running"
fi
