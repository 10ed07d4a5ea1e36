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
)
