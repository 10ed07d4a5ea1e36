// Package e2e holds the end-to-end tests that run on the real cluster of
// hack/cluster (see test/cluster), with two nodes. They are behind the
// build tag e2e; `make test-e2e` starts the cluster, runs them and stops it:
//
//	make cluster-up NODES=2 && go test -tags e2e ./test/e2e/ && make cluster-down
package e2e
