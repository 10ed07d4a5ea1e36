// Package admission is kzero's admission webhooks for pods of enrolled
// namespaces. The mutating webhook gives them their identity, so that
// developers' manifests mention nothing of kzero; the validating webhook
// refuses those with a hostPath volume, through which a pod could read
// other pods' keys (Validate). The mutating webhook adds two things:
//
//   - the identity volume, which projects a podCertificate source (kubelet
//     makes the key and asks the signer kzero.dev/identity) and the
//     signer's ClusterTrustBundle, mounted read-only in every container at
//     /var/run/secrets/kzero.dev/identity/;
//   - the node agent's SPIFFE Workload API: the node's directory
//     /run/kzero/agent, as a read-only CSI inline volume of the agent's
//     driver csi.kzero.dev (Pod Security restricted allows it, where it
//     refuses hostPath), mounted read-only at the same path, and
//     SPIFFE_ENDPOINT_SOCKET=unix:///run/kzero/agent/agent.sock,
//     where SPIFFE clients look for the socket. A pod leaves it out with
//     the annotation kzero.dev/workload-api: "false".
//
// Each decision is a pure function, Mutate or Validate, over the pod and
// its namespace; Handler and ValidatingHandler serve them as
// admission.k8s.io/v1 AdmissionReview endpoints.
package admission
