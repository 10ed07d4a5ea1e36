#!/usr/bin/env bash
# build-tools.sh: builds the harness's own small tools from hack/k8s into
# ${KZERO_TOOLS_BIN}: mkimage (container images without Docker), pause (the
# pod sandbox's process) and cri-reset (removes pod sandboxes on
# cluster-down). They are always rebuilt; the Go build cache makes that quick.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_go
mkdir -p "${KZERO_TOOLS_BIN}"
cd "${KZERO_TOOLS_DIR}"
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "${KZERO_TOOLS_BIN}/" \
	./cmd/mkimage ./cmd/pause ./cmd/cri-reset ||
	die "building the harness tools in ${KZERO_TOOLS_DIR} failed; see the Go error above"
