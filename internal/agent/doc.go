// Package agent is kzero's node agent, `kzero agent`: the client of the
// authority's agent API (package agentapi), and the wiring that serves the
// SPIFFE Workload API (package workloadapi) to the pods of its node, whose
// callers package podattest identifies.
//
// Attestation runs both ways. The agent proves itself to the authority
// with its pod's projected service account token (audience
// agentapi.TokenAudience) and gets the X.509-SVID
// spiffe://<trust-domain>/kzero/agent/<node>; it attests again at half
// life and, when that fails, with backoff, for ever, so that an agent whose
// SVID expired while the authority was down recovers by itself. The
// authority proves itself to the agent with an X.509-SVID of a configured
// SPIFFE ID that verifies against the trust domain's X.509 authorities:
// those of the ClusterTrustBundle kubelet projects into the agent's pod,
// read again for every connection, and those of the bundle last fetched
// from the authority.
//
// Client is the agent's side of the agent API and the Workload API's
// workloadapi.Signer; Agent runs it with the informers of the node's pods
// and of the namespaces, and the Workload API server. See docs/agent.md.
package agent
