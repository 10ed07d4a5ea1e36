# kzero — the two commands a person needs are `make demo` and `make test`.
# Everything else here is a step of those or a developer's tool.

SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# grpcnotrace: gRPC without golang.org/x/net/trace, which kzero never turns
# on and which costs megabytes of binary; hack/cluster/image.sh builds the
# images with it too (docs/agent.md, Memory).
TAGS := grpcnotrace
LDFLAGS := -X kzero.dev/kzero/internal/version.version=$(VERSION) -X kzero.dev/kzero/internal/version.commit=$(COMMIT)

# golangci-lint, pinned in hack/tools/go.mod, built once into .cache/tools.
LINT_VERSION := $(shell awk '{for (i = 1; i < NF; i++) if ($$i == "github.com/golangci/golangci-lint/v2") {print $$(i+1); exit}}' hack/tools/go.mod)
LINT := .cache/tools/golangci-lint-$(LINT_VERSION)

FUZZTIME ?= 10s
BENCHTIME ?= 2s

.PHONY: all build test check lint unit fuzz bench demo help
all: build

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

build: ## build bin/kzero
	$(GO) build -trimpath -tags $(TAGS) -ldflags "$(LDFLAGS)" -o bin/kzero ./cmd/kzero

# make test: every test the project has. CI runs exactly this.
test: check unit e2e ## run every test: format, vet, unit, fuzz seeds, end to end

check: ## gofmt, go vet (with the e2e build tag), go mod tidy
	@echo "== check: gofmt, go vet, go.mod"
	@unformatted="$$(gofmt -l cmd internal test hack 2>/dev/null)"; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet -tags e2e ./...
	cd hack/k8s && $(GO) vet ./cmd/...
	@$(MAKE) --no-print-directory lint
	@cp go.mod /tmp/kzero-go.mod.$$$$ && cp go.sum /tmp/kzero-go.sum.$$$$ && $(GO) mod tidy && \
	  if ! cmp -s go.mod /tmp/kzero-go.mod.$$$$ || ! cmp -s go.sum /tmp/kzero-go.sum.$$$$; then \
	    echo "go.mod or go.sum was not tidy: run 'go mod tidy' and commit"; exit 1; fi; \
	  rm -f /tmp/kzero-go.mod.$$$$ /tmp/kzero-go.sum.$$$$

lint: $(LINT) ## golangci-lint (gosec, errname, contextcheck, exhaustive, forbidigo...; .golangci.yml)
	$(LINT) run ./...

$(LINT): hack/tools/go.mod
	@echo "== building golangci-lint $(LINT_VERSION) (once; about a minute)"
	@mkdir -p $(dir $(LINT))
	cd hack/tools && $(GO) build -o $(CURDIR)/$(LINT) github.com/golangci/golangci-lint/v2/cmd/golangci-lint

unit: ## unit and integration tests, with every fuzz target's seed corpus
	@echo "== unit tests"
	$(GO) test -count=1 ./...

fuzz: ## run every fuzz target for FUZZTIME each (default 10s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench: ## run the benchmarks on one core
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -cpu 1 ./...

demo: build ## the end-to-end demo
	@hack/demo.sh

# The real-cluster harness (hack/cluster) brings its own targets:
# cluster-up, cluster-down, test-e2e.
include hack/cluster/cluster.mk

.PHONY: e2e
e2e: test-e2e ## end-to-end tests on a real cluster (root; see docs/cluster.md)
