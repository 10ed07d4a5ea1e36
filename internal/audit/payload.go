package audit

import (
	"net/netip"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Issuance is the payload of an issuance event: an SVID signed, or
// refused.
type Issuance struct {
	// SPIFFEID is the ID certified, or asked for when refused.
	SPIFFEID spiffeid.ID `json:"spiffeID"`
	// Type is SVIDTypeX509 or SVIDTypeJWT.
	Type string `json:"type"`
	// Serial is the X.509-SVID's serial number, hex; empty for JWT-SVIDs
	// and refusals.
	Serial string `json:"serial,omitempty"`
	// Audience is a JWT-SVID's audience.
	Audience []string `json:"audience,omitempty"`
	// NotBefore and NotAfter are the SVID's validity; zero when refused.
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	// KeyType is the subject's key: "ECDSA-P256", "ECDSA-P384",
	// "ECDSA-P521", "Ed25519", "RSA-3072", "RSA-4096".
	KeyType string `json:"keyType,omitempty"`
	// Requester says who asked: "pod/<namespace>/<name>/<uid>" for a
	// PodCertificateRequest, "node/<name>" for a node agent, or the
	// requester's SPIFFE ID.
	Requester string `json:"requester"`
	// Address is the requester's ip:port, for requests made over the
	// network (kzero's agent API): it tells a replayed token or a stolen
	// SVID from the real agent.
	Address netip.AddrPort `json:"address,omitzero"`
	// PodUID is the UID of the pod the requester's credential is bound to:
	// on an agent's attestation, the pod its service account token names.
	PodUID string `json:"podUID,omitempty"`
	// SignerKeyID names the key that signed: the issuing CA's subject key
	// ID (hex) for an X.509-SVID, the JWT key's kid for a JWT-SVID.
	SignerKeyID string `json:"signerKeyID,omitempty"`
}

// SVID types of Issuance.Type.
const (
	SVIDTypeX509 = "x509-svid"
	SVIDTypeJWT  = "jwt-svid"
)

// Admission is the payload of an admission event: a verdict of one of
// kzero's admission webhooks.
type Admission struct {
	// UID is the AdmissionReview request's uid.
	UID string `json:"uid"`
	// Resource is "<group>/<version>/<resource>", "v1/<resource>" for the
	// core group; SubResource is set for subresources.
	Resource    string `json:"resource"`
	SubResource string `json:"subResource,omitempty"`
	// Namespace and Name of the object; Name is empty on a CREATE that
	// leaves the name to the API server, and GenerateName (the object's
	// metadata.generateName, the prefix of the name to come) is then set.
	Namespace    string `json:"namespace,omitempty"`
	Name         string `json:"name,omitempty"`
	GenerateName string `json:"generateName,omitempty"`
	// Operation is CREATE, UPDATE, DELETE or CONNECT.
	Operation string `json:"operation"`
	// User is the Kubernetes user who made the request.
	User string `json:"user,omitempty"`
	// Allowed is the verdict; Patched says a mutating webhook changed
	// the object.
	Allowed bool `json:"allowed"`
	Patched bool `json:"patched"`
	// Caller names who sent the review, as its verified TLS client
	// certificate does (kube-apiserver's, when the webhook is given the CA
	// of the certificate kube-apiserver presents to webhooks).
	Caller string `json:"caller,omitempty"`
	// Address is the sender's ip:port.
	Address netip.AddrPort `json:"address,omitzero"`
	// Unauthenticated is true when nothing proved that the review came
	// from kube-apiserver: the webhook was given no client CA, or the
	// sender presented no certificate it trusts. Such an event may be
	// forged by anyone who reaches the webhook. A review refused for that
	// reason is not read: its uid, resource and operation are empty.
	Unauthenticated bool `json:"unauthenticated,omitempty"`
}

// Access is the payload of an access event: a policy decision on a
// connection (L4) or a request (L7), by an agent or a gateway.
type Access struct {
	Source      Source      `json:"source"`
	Destination Destination `json:"destination"`
	// Protocol is "tcp" for a connection decided at L4, "http" for a
	// request decided at L7 (HTTP/1.1, HTTP/2, gRPC).
	Protocol string `json:"protocol"`
	// Method, Path (without its query, which may carry secrets) and Host
	// of an HTTP request.
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	Host   string `json:"host,omitempty"`
	// Verdict is what the policy decided, and so what enforcement does or,
	// in audit mode, would have done.
	Verdict Verdict `json:"verdict"`
	// Mode is the destination's mode; Enforced is true when the verdict
	// was applied (mode enforce). Event.Outcome is the effect: the verdict
	// when enforced, allow otherwise.
	Mode     Mode `json:"mode"`
	Enforced bool `json:"enforced"`
	// Policy is the AccessPolicy and rule that decided; nil when no rule
	// matched and the default deny decided.
	Policy *PolicyRef `json:"policy,omitempty"`
	// Audit is set when audit-mode policies, enforced, would have decided
	// otherwise than Verdict: what they would have done, and which rule.
	Audit *AuditFinding `json:"audit,omitempty"`
	// Passthrough marks an enrolled pod's connection to a destination
	// outside the mesh, which the agent passed through in plain text: no
	// policy decided it (verdict allow, no policy).
	Passthrough bool `json:"passthrough,omitempty"`
}

// Source is who connected: a workload (SPIFFE ID), an end user
// authenticated by the gateway, or both (a user through a workload).
type Source struct {
	SPIFFEID spiffeid.ID    `json:"spiffeID,omitzero"`
	User     *User          `json:"user,omitempty"`
	Address  netip.AddrPort `json:"address,omitzero"`
}

// User is an end user authenticated by the gateway: the token's or the
// client certificate's issuer and subject. Never the token itself.
type User struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
}

// Destination is the workload connected to.
type Destination struct {
	SPIFFEID       spiffeid.ID `json:"spiffeID,omitzero"`
	Namespace      string      `json:"namespace,omitempty"`
	ServiceAccount string      `json:"serviceAccount,omitempty"`
	// Workload is the pod's name.
	Workload string `json:"workload,omitempty"`
	Port     uint16 `json:"port,omitzero"`
	// Address is the destination's ip:port, for one outside the mesh
	// (Access.Passthrough), which has no workload name.
	Address netip.AddrPort `json:"address,omitzero"`
}

// PolicyRef names the AccessPolicy rule that decided.
// AuditFinding is what an audit-mode policy would have decided.
type AuditFinding struct {
	Verdict Verdict   `json:"verdict"`
	Policy  PolicyRef `json:"policy"`
}

// PolicyRef names the policy and rule of a decision.
type PolicyRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Rule is the rule's name, or its index ("rules[2]") when unnamed.
	Rule string `json:"rule"`
}

// Verdict is a policy's decision.
type Verdict string

// Verdicts.
const (
	VerdictAllow Verdict = "allow"
	VerdictDeny  Verdict = "deny"
)

// Mode is an enrolled namespace's policy mode.
type Mode string

// Modes: enforce applies verdicts, audit only records them.
const (
	ModeEnforce Mode = "enforce"
	ModeAudit   Mode = "audit"
)

// ReasonDefaultDeny is the reason of an access event no rule matched.
const ReasonDefaultDeny = "no rule matched: default deny"
