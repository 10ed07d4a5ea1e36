#!/usr/bin/env bash
# e2e.sh: the end-to-end run behind `make test-e2e`.
#  1. test/cluster's e2e test: make cluster-up and cluster-down twice, with a
#     pod running, and check that nothing of the cluster is left on the host;
#  2. make cluster-up (node mode, E2E_NODES nodes: 2 unless set), the tests
#     of test/e2e, make cluster-down, also when a test fails.
# E2E_RUN picks tests by name (go test -run), E2E_FLAGS adds go test flags.
set -euo pipefail
# The tests run on the default cluster (test/e2e serves on its addresses);
# the leak test starts and stops its own second cluster.
unset CLUSTER KZERO_CLUSTER
here="$(dirname "${BASH_SOURCE[0]}")"
source "${here}/lib.sh"

require_root
require_go
cd "${KZERO_REPO_ROOT}"
run="${E2E_RUN:-.}"
read -r -a flags <<<"${E2E_FLAGS:-}"

# Build first, so the tests' own timeouts do not include a cold build.
bash "${here}/build-k8s.sh"
bash "${here}/down.sh" >/dev/null
# Whatever fails below (a test, a timeout that kills go test before its own
# clean-up), the cluster goes down.
trap 'bash "${here}/down.sh"' EXIT

step "harness test: cluster-up and cluster-down twice, two clusters at once, leave nothing" \
	go test -tags e2e -count=1 -timeout 20m -run "TestUpDown" -v "${flags[@]}" ./test/cluster/

KZERO_NODES="${E2E_NODES:-2}" bash "${here}/up.sh" node
step "e2e tests" go test -tags e2e -count=1 -timeout 40m -run "${run}" -v "${flags[@]}" ./test/e2e/...
