// Package csidriver is the CSI node plugin that kzero agent serves on
// every node, so that pods get the agent's Workload API socket through a
// CSI ephemeral inline volume, which Pod Security restricted allows,
// rather than a hostPath volume, which it refuses.
//
// Its NodePublishVolume mounts a clone of the agent's socket directory,
// made read-only, nosuid, nodev and noexec before it is attached (so that
// it reaches kubelet so), at the target path kubelet gives;
// NodeUnpublishVolume unmounts it and removes the directory. It serves
// only inline volumes declared read-only, and checks every field kubelet
// passes on (a pod's spec chooses some of them) before it mounts
// anything. It also serves kubelet's plugin registration
// (pluginregistration.v1) on a socket in kubelet's plugins_registry
// directory, so that no node-driver-registrar container is needed.
//
// The mounts need Linux 5.12 or later and CAP_SYS_ADMIN, and the target
// paths kubelet gives must be visible to kubelet: the agent's DaemonSet
// runs the driver (`kzero-agent csi-driver`) in a privileged container of
// its own, with kubelet's pods directory mounted at the same path with
// Bidirectional mount propagation (docs/install.md).
package csidriver
