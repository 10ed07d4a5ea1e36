// Package cluster gives end-to-end tests the real Kubernetes that the
// scripts in hack/cluster run as plain processes: etcd and kube-apiserver
// in control-plane mode, and kube-controller-manager, kube-scheduler and one
// to three nodes as well in node mode, each node in Linux namespaces of its
// own with its containerd, kubelet and kube-proxy. A second, independent
// cluster can run beside the default one.
//
// A test finds the running cluster with [Default] (or [Named]) and
// [Harness.Cluster], which gives it a client-go client as the cluster
// admin, the cluster's [Layout] and its [Node]s. [Cluster.NodeExec] runs a
// command on a node, [Cluster.NodePath] reaches a node's files and sockets,
// [Cluster.LoadImage] imports an image into every node, and
// [Cluster.StartCapture] with [ReadPackets] records the cluster network's
// packets. [Harness.Up] and [Harness.Down] drive `make cluster-up` and
// `make cluster-down`, and [Harness.Snapshot] with [Leaks] tells what a
// cluster left on the host.
//
// Every packet a test causes must stay on this machine.
// [Cluster.CheckContained] verifies that the machine and the nodes route the
// cluster's ranges to the harness's own devices and that neither pods nor
// nodes can reach past them; a test calls it before it makes any pod or
// Service traffic, and fails if it returns an error.
//
// The ranges and names here are those of hack/cluster/lib.sh; a unit test
// keeps the two in step. docs/cluster.md describes the harness.
package cluster
