// Package e2e holds the end-to-end tests that run on the real single-node
// cluster of hack/cluster (see test/cluster). They are behind the build tag
// e2e; `make test-e2e` starts a node, runs them and stops it:
//
//	make cluster-up && go test -tags e2e ./test/e2e/ && make cluster-down
package e2e
