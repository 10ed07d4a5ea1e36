#!/usr/bin/env bash
# install-deps.sh: installs what a node needs from Debian's packages when it
# is missing: containerd, runc, the CNI plugins, iptables, conntrack, the
# small tools kubelet calls, and tcpdump for the tests' captures. Runs
# apt-get update once, only if it installs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_root

# package:file-that-shows-it-is-installed
wanted=(
	"containerd:/usr/bin/containerd"
	"runc:/usr/sbin/runc"
	"containernetworking-plugins:/usr/lib/cni/bridge"
	"iptables:/usr/sbin/iptables"
	"conntrack:/usr/sbin/conntrack"
	"iproute2:/usr/sbin/ip"
	"openssl:/usr/bin/openssl"
	"curl:/usr/bin/curl"
	"util-linux:/usr/bin/nsenter"
	"mount:/usr/bin/mount"
	"procps:/usr/bin/ps"
	"socat:/usr/bin/socat"
	# test/cluster's Capture: packets on the cluster's network, as pcap.
	"tcpdump:/usr/bin/tcpdump"
	# test/meshbench: the pair of nginx mTLS proxies the mesh is measured beside.
	"nginx:/usr/sbin/nginx"
	# ... and its stream module, for the pair of TCP (L4) mTLS proxies.
	"libnginx-mod-stream:/usr/lib/nginx/modules/ngx_stream_module.so"
)

missing=()
for w in "${wanted[@]}"; do
	[[ -e "${w#*:}" ]] || missing+=("${w%%:*}")
done
if [[ "${#missing[@]}" == 0 ]]; then
	log "node packages are installed (containerd $(containerd --version 2>/dev/null | awk '{print $3}'), runc, CNI plugins, iptables)"
	exit 0
fi

command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them with your distribution's package manager"
export DEBIAN_FRONTEND=noninteractive
# Packages such as nginx start their service when installed; the tests
# start what they need themselves, and leave no daemon behind: services
# are not started (policy-rc.d says so to invoke-rc.d) while installing.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 0755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
step "apt-get update" apt-get update -qq
step "apt-get install ${missing[*]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
for w in "${wanted[@]}"; do
	[[ -e "${w#*:}" ]] || die "package ${w%%:*} installed but ${w#*:} is missing; check 'dpkg -L ${w%%:*}'"
done
