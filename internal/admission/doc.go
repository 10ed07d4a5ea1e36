// Package admission is kzero's mutating admission webhook: it gives the
// pods of enrolled namespaces their identity volume, so that developers'
// manifests mention nothing of kzero. The volume projects a
// podCertificate source (kubelet makes the key and asks the signer
// kzero.dev/identity) and the signer's ClusterTrustBundle, mounted
// read-only in every container at /var/run/secrets/kzero.dev/identity/.
//
// The decision is a pure function, Mutate, over the pod and its namespace;
// Handler serves it as an admission.k8s.io/v1 AdmissionReview endpoint.
package admission
