// Package authority is the kzero authority's Kubernetes side: the signer
// of certificates.k8s.io/v1 PodCertificateRequests for kzero.dev/identity,
// and the publisher of the trust bundle as a ClusterTrustBundle.
//
// kubelet makes each pod's key, and asks for a certificate with a
// PodCertificateRequest. The Signer checks the request against the API
// server (the pod exists with that UID, on that node, under that service
// account, in an enrolled namespace), decides with the pure function Decide,
// and then has the CA (internal/ca) sign an X.509-SVID for
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, or denies the
// request with a reason a person can act on. Every issuance and denial is an
// audit event.
//
// The Rotator runs the CA's rotation at the times the CA names and
// publishes the bundle after every change, so that peers (and kubelet's
// clusterTrustBundle projection) always hold every authority that verifies
// a live SVID, and keeps the caBundle of the pod identity webhook's
// configuration equal to it.
//
// The Webhook serves internal/admission's handler over HTTPS with a serving
// certificate the CA issues for the webhook's Service (not an SVID), and
// audits every verdict. A Replica is one replica of the authority
// Deployment: every replica serves the Webhook and keeps the CA loaded
// read-only; the one that holds the Lease (internal/leader) reloads the CA
// from its store and runs the Signer and the Rotator.
//
// The BundleEndpoint serves the bundle to federated trust domains per the
// SPIFFE Federation standard (profile https_spiffe), with an X.509-SVID the
// CA issues for the endpoint's SPIFFE ID; every replica can serve it, from
// the CA it has loaded.
//
// The AgentAPI is the authority's side of the API of kzero's node agents
// (package agentapi), served by every replica over HTTPS with the
// authority's X.509-SVID. An agent attests with its pod's projected
// service account token: a TokenReview and a fresh read of its pod show
// that it is a pod of the agent DaemonSet on the node it names, and it
// gets spiffe://<trust-domain>/kzero/agent/<node>. With that SVID as its
// client certificate it then gets the X.509- and JWT-SVIDs of the service
// accounts that pods of its own node run as, and the bundle; an agent
// asking for anything of another node is refused. Every issuance and
// refusal is audited.
package authority
