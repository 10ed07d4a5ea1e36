// Package podattest tells which pod and container a process on this node
// runs in, and so which SPIFFE ID it may have: the workload attestation of
// the kzero agent's Workload API.
//
// A caller on the agent's socket is known by the PID the kernel gives for
// the connection (SO_PEERCRED). Attestor.Attest reads that process's
// /proc/<pid>/cgroup, finds in it the pod UID and container ID that kubelet
// and the container runtime named the cgroup after (ParseCgroup: cgroup v1
// and v2, the cgroupfs and systemd drivers, containerd, CRI-O and Docker),
// and checks them against the pods the API server says run on this node:
// the pod must be bound to this node, running and not terminating, not a
// static (mirror) pod, in an enrolled namespace, and the container ID must
// be one of the pod's running containers. Only then is the caller given
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
//
// The process's start time is read before and after its cgroup, and again
// once the pod has been checked, so that a process that exited, and a PID
// the kernel gave to another process meanwhile, is refused rather than
// taken for the one that called.
//
// Every refusal is a *RefusalError: Error says what happened for an
// operator's log (naming the pod); PublicMessage says it for the caller,
// naming nothing, so that a process cannot learn about other pods by
// asking. errors.Is against the Err* sentinels tells the kinds apart.
//
// The package knows nothing of gRPC: the Workload API server adapts its
// caller's credentials to Attest. NodePods is the Pods source the agent
// uses, a pod informer restricted to its node. See docs/podattest.md.
package podattest
