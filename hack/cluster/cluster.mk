# hack/cluster/cluster.mk: targets for the real single-node Kubernetes that
# hack/cluster runs as plain processes. The top-level Makefile includes this
# file; it also works alone: make -f hack/cluster/cluster.mk cluster-up.
# See docs/cluster.md.

KZERO_CLUSTER_MK := $(lastword $(MAKEFILE_LIST))
KZERO_CLUSTER_DIR := $(patsubst %/,%,$(dir $(KZERO_CLUSTER_MK)))

# MODE: node (everything, pods run) or control-plane (etcd + kube-apiserver).
MODE ?= node
# E2E_RUN: a -run pattern to pick e2e tests; E2E_FLAGS: more go test flags.
E2E_RUN ?= .
E2E_FLAGS ?=

.PHONY: k8s-binaries cluster-up cluster-down cluster-status test-e2e

k8s-binaries: ## build the Kubernetes and etcd binaries, unless cached
	@bash $(KZERO_CLUSTER_DIR)/build-k8s.sh

cluster-up: ## start a cluster: MODE=node (default) or MODE=control-plane
	@bash $(KZERO_CLUSTER_DIR)/up.sh $(MODE)

cluster-down: ## stop the cluster and remove everything it made
	@bash $(KZERO_CLUSTER_DIR)/down.sh

cluster-status: ## show the cluster's processes and node
	@bash $(KZERO_CLUSTER_DIR)/status.sh

test-e2e: ## harness up/down leak test, then the e2e tests on a node
	@E2E_RUN='$(E2E_RUN)' E2E_FLAGS='$(E2E_FLAGS)' bash $(KZERO_CLUSTER_DIR)/e2e.sh
