package authority

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"kzero.dev/kzero/internal/agentapi"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/ca"
)

// issueX509 has the CA sign the X.509-SVID of cl.id; when it does not,
// it answers the call and returns false.
func (a *AgentAPI) issueX509(rw http.ResponseWriter, c AgentCA, cl call, csr []byte, ttl time.Duration) (*ca.X509SVID, bool) {
	s, err := c.IssueX509SVID(ca.X509Request{ID: cl.id, CSR: csr, TTL: ttl})
	if err != nil {
		a.caFailed(rw, cl, err)
		return nil, false
	}
	return s, true
}

// caFailed answers a call the CA did not sign: 400 for a request it
// refuses (its CSR, its audience), 503 while it has no valid authority
// (until it rotates), 500 for the rest (kzero's own settings).
func (a *AgentAPI) caFailed(rw http.ResponseWriter, cl call, err error) {
	var re *ca.RequestError
	switch {
	case errors.Is(err, ca.ErrNoAuthority):
		a.unavailable(rw, "the CA cannot sign now", err)
	case errors.Is(err, ca.ErrTTLTooLong), errors.Is(err, ca.ErrInvalidTTL), !errors.As(err, &re):
		a.cfg.Log.Error("the CA did not sign for the agent API", "spiffeID", cl.id.String(), "requester", cl.requester, "error", err)
		writeError(rw, http.StatusInternalServerError, "the authority could not sign; its log says why")
	default:
		a.refuse(rw, cl, refuseWith(http.StatusBadRequest, "the CA refused the request: %v", err))
	}
}

// refuse answers a call with r and audits the refusal.
//
// Refusals are audited one by one up to a rate per source (refusalAudit);
// past it they are counted, and logged at debug level only, so that
// anyone who can reach the API cannot flood the audit trail.
func (a *AgentAPI) refuse(rw http.ResponseWriter, cl call, r *apiRefusal) {
	source := cl.requester
	if strings.HasPrefix(source, "address/") && cl.address.IsValid() {
		source = "address/" + cl.address.Addr().String()
	}
	note, audited := a.refusals.admit(source)
	if !audited {
		a.cfg.Log.Debug("refused, over the rate of refusals audited one by one", "call", cl.what, "requester", cl.requester, "status", r.status)
		writeError(rw, r.status, r.msg)
		return
	}
	a.cfg.Log.Info("refused", "call", cl.what, "requester", cl.requester, "spiffeID", cl.id.String(), "status", r.status, "message", r.msg)
	a.record(audit.Event{
		Kind: audit.KindIssuance, Outcome: audit.OutcomeFailure,
		Reason: "refused " + cl.what + ": " + r.msg + note,
		Issuance: &audit.Issuance{SPIFFEID: cl.id, Type: cl.typ, Audience: cl.audience, KeyType: cl.keyType,
			Requester: cl.requester, Address: cl.address, PodUID: cl.podUID},
	})
	writeError(rw, r.status, r.msg)
}

// tooMany answers 429 with Retry-After, and audits the refusal: a caller
// over a rate limit of the agent API.
func (a *AgentAPI) tooMany(rw http.ResponseWriter, cl call, msg string) {
	rw.Header().Set("Retry-After", "1")
	a.refuse(rw, cl, refuseWith(http.StatusTooManyRequests, "%s", msg))
}

// unavailable answers 503 when something the decision needs did not
// answer: nothing was decided, so nothing is audited; the cause is
// logged, not told.
func (a *AgentAPI) unavailable(rw http.ResponseWriter, what string, err error) {
	a.cfg.Log.Warn("agent API call not answered: "+what, "error", err)
	rw.Header().Set("Retry-After", "5")
	writeError(rw, http.StatusServiceUnavailable, what+"; try again shortly")
}

// issued audits a delivered X.509-SVID.
func (a *AgentAPI) issued(cl call, s *ca.X509SVID, reason string) {
	p := &audit.Issuance{SPIFFEID: s.ID, Type: audit.SVIDTypeX509, NotBefore: s.NotBefore, NotAfter: s.NotAfter,
		KeyType: cl.keyType, Requester: cl.requester, Address: cl.address, PodUID: cl.podUID}
	if len(s.Certificates) > 0 {
		p.Serial = fmt.Sprintf("%x", s.Certificates[0].SerialNumber)
	}
	if len(s.Certificates) > 1 {
		p.SignerKeyID = hex.EncodeToString(s.Certificates[1].SubjectKeyId)
	}
	a.cfg.Log.Debug("issued", "call", cl.what, "requester", cl.requester, "spiffeID", s.ID.String(), "notAfter", s.NotAfter)
	a.record(audit.Event{Kind: audit.KindIssuance, Outcome: audit.OutcomeSuccess, Reason: reason, Issuance: p})
}

// record writes an audit event; a failure is logged loudly, since what the
// authority decides must not go unseen.
func (a *AgentAPI) record(e audit.Event) {
	if err := a.cfg.Audit.Record(e); err != nil {
		a.cfg.Log.Error("audit event not recorded", "error", err)
	}
}

// decode reads the body, at most maxAgentRequest bytes, as exactly one
// JSON agentapi.<name>, with no field it does not have.
func decode(rw http.ResponseWriter, req *http.Request, v any, name string) *apiRefusal {
	dec := json.NewDecoder(http.MaxBytesReader(rw, req.Body, maxAgentRequest))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err = dec.Token(); errors.Is(err, io.EOF) {
			return nil
		}
		return refuseWith(http.StatusBadRequest, "the body has more than one JSON value: send one agentapi.%s", name)
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return refuseWith(http.StatusRequestEntityTooLarge, "the body is over %d KiB: send one agentapi.%s", maxAgentRequest>>10, name)
	}
	return refuseWith(http.StatusBadRequest, "the body is not a JSON agentapi.%s (%v): send exactly its fields", name, err)
}

// writeJSON answers with v as JSON; no proxy or client may cache it.
func writeJSON(rw http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"the answer does not encode as JSON"}`)
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(status)
	_, _ = rw.Write(append(b, '\n'))
}

// writeError answers with agentapi.Error.
func writeError(rw http.ResponseWriter, status int, msg string) {
	writeJSON(rw, status, agentapi.Error{Error: msg})
}
