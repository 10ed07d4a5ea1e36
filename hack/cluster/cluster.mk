# hack/cluster/cluster.mk: targets for the real Kubernetes (one to three
# nodes, and a second cluster beside the first) that hack/cluster runs as
# plain processes. The top-level Makefile includes this file; it also works
# alone: make -f hack/cluster/cluster.mk cluster-up.
# See docs/cluster.md.

KZERO_CLUSTER_MK := $(lastword $(MAKEFILE_LIST))
KZERO_CLUSTER_DIR := $(patsubst %/,%,$(dir $(KZERO_CLUSTER_MK)))

# MODE: node (everything, pods run) or control-plane (etcd + kube-apiserver).
MODE ?= node
# NODES: how many nodes cluster-up starts (1 to 3). CLUSTER: a second,
# independent cluster's name; empty: the default cluster.
NODES ?= 1
CLUSTER ?=
CLUSTER_ENV = CLUSTER='$(CLUSTER)' NODES='$(NODES)'
# E2E_RUN: a -run pattern to pick e2e tests; E2E_FLAGS: more go test flags.
E2E_RUN ?= .
E2E_FLAGS ?=
# E2E_NODES: how many nodes the e2e tests' cluster has.
E2E_NODES ?= 2

.PHONY: k8s-binaries cluster-up cluster-down cluster-status test-e2e

k8s-binaries: ## build the Kubernetes and etcd binaries, unless cached
	@bash $(KZERO_CLUSTER_DIR)/build-k8s.sh

cluster-up: ## start a cluster: MODE=node (default) or control-plane, NODES=1 to 3, CLUSTER=NAME for a second one
	@$(CLUSTER_ENV) bash $(KZERO_CLUSTER_DIR)/up.sh $(MODE)

cluster-down: ## stop the cluster (CLUSTER=NAME: that one) and remove everything it made
	@$(CLUSTER_ENV) bash $(KZERO_CLUSTER_DIR)/down.sh

cluster-status: ## show the cluster's processes and nodes
	@$(CLUSTER_ENV) bash $(KZERO_CLUSTER_DIR)/status.sh

test-e2e: ## harness up/down leak test, then the e2e tests on E2E_NODES nodes (2)
	@E2E_RUN='$(E2E_RUN)' E2E_FLAGS='$(E2E_FLAGS)' E2E_NODES='$(E2E_NODES)' bash $(KZERO_CLUSTER_DIR)/e2e.sh
