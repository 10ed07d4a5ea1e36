package v1alpha1

// Well-known names of kzero in a cluster, the one place they are spelled.
const (
	// SignerName is kzero's PodCertificateRequest signer and the signer of
	// its ClusterTrustBundle.
	SignerName = "kzero.dev/identity"
	// EnrolledLabel on a namespace, set to "true", enrols its pods: they
	// get an identity and their traffic is decided by AccessPolicies.
	EnrolledLabel = "kzero.dev/enrolled"
	// ModeLabel on an enrolled namespace, set to "audit", lets everything
	// through while recording what enforcement would have done.
	ModeLabel = "kzero.dev/mode"
	// MeshModeLabel on an enrolled namespace, set to "permissive", lets
	// plain text from outside the mesh into its pods (audited), so that a
	// namespace can be enrolled before all its callers are; without it, or
	// set to "strict", such plain text is refused. A namespace in audit
	// mode (ModeLabel) is permissive too.
	MeshModeLabel = "kzero.dev/mesh-mode"
	// Namespace is where kzero install puts kzero: the authority, its
	// Secret and Lease, the agents.
	Namespace = "kzero-system"
	// TrustBundleNamePrefix is the prefix kube-apiserver requires of the
	// name of a ClusterTrustBundle whose spec.signerName is SignerName: the
	// signer name with its slash turned into a colon, then a colon.
	TrustBundleNamePrefix = "kzero.dev:identity:"
	// WorkloadAPIDir is the directory, on the node, where kzero agent
	// makes its socket. The agent's CSI driver, CSIDriverName, binds it
	// read-only into the pods of enrolled namespaces, where the
	// authority's webhook mounts it at the same path.
	WorkloadAPIDir = "/run/kzero/agent"
	// WorkloadAPISocket is the Workload API's socket, on the node and in
	// the containers alike.
	WorkloadAPISocket = WorkloadAPIDir + "/agent.sock"
	// CSIDriverName is the name of the CSI driver kzero agent serves on
	// every node (its CSIDriver object, the driver of the pods' inline
	// volume), which brings WorkloadAPIDir into pods: a CSI inline volume,
	// unlike a hostPath one, is allowed by Pod Security restricted.
	CSIDriverName = "csi.kzero.dev"
	// KubeletDir is kubelet's root directory (kubelet's --root-dir) on a
	// node, unless the cluster sets another.
	KubeletDir = "/var/lib/kubelet"
)

// TrustBundleName is the name of the ClusterTrustBundle the authority
// publishes for the trust domain named tdName: TrustBundleNamePrefix +
// tdName (a trust domain name is a valid DNS subdomain, which is what the
// API requires of the rest).
func TrustBundleName(tdName string) string { return TrustBundleNamePrefix + tdName }

// NamespaceSystem is Kubernetes' own namespace.
const NamespaceSystem = "kube-system"

// NeverEnrolled reports whether the pods of namespace never get a workload
// identity, whatever the namespace's labels: those of kube-system, and
// those of kzeroNamespace, the namespace kzero runs in. The authority's
// own SPIFFE ID, that of a service account of kzeroNamespace, signs the
// audit trail's checkpoints, so no pod may be given an identity there.
func NeverEnrolled(namespace, kzeroNamespace string) bool {
	return namespace == NamespaceSystem || namespace == kzeroNamespace
}
