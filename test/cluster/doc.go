// Package cluster gives end-to-end tests the real single-node Kubernetes that
// the scripts in hack/cluster run as plain processes: etcd and kube-apiserver
// in control-plane mode, and kube-controller-manager, kube-scheduler,
// containerd, kubelet and kube-proxy as well in node mode.
//
// A test finds the running cluster with [Default] and [Harness.Cluster], which
// gives it a client-go client as the cluster admin. [Harness.Up] and
// [Harness.Down] drive `make cluster-up` and `make cluster-down`, and
// [Snapshot] with [Leaks] tells what a cluster left on the host.
//
// Every packet a test causes must stay on this machine. [CheckContained]
// verifies that the pod and Service ranges are routed to the harness's own
// devices and that pods cannot reach past them; a test calls it before it
// makes any pod or Service traffic, and fails if it returns an error.
//
// The ranges and names here are those of hack/cluster/lib.sh; a unit test
// keeps the two in step. docs/cluster.md describes the harness.
package cluster
