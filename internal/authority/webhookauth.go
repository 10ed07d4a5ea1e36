package authority

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"

	"kzero.dev/kzero/internal/audit"
)

// webhookCaller is who sent an AdmissionReview, as the TLS layer shows it.
type webhookCaller struct {
	address netip.AddrPort
	// name is the verified client certificate's name; empty when the
	// sender was not authenticated.
	name string
}

// mark records the caller in an admission event's payload.
func (c webhookCaller) mark(p *audit.Admission) {
	p.Address = c.address
	p.Caller = c.name
	p.Unauthenticated = c.name == ""
}

type callerKey struct{}

// callerOf returns the caller authenticate put in ctx.
func callerOf(ctx context.Context) webhookCaller {
	c, _ := ctx.Value(callerKey{}).(webhookCaller)
	return c
}

// authenticate finds who sent a request and passes it on with the caller
// in its context. With ClientCAs, a sender without a client certificate
// they verify (and, with ClientNames, naming one of them) is refused with
// 401 before its review is read, and the refusal is audited: a forged
// review never becomes an admission event of its own.
func (w *Webhook) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		addr, _ := netip.ParseAddrPort(req.RemoteAddr)
		c := webhookCaller{address: netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())}
		if w.cfg.ClientCAs != nil {
			name, err := w.clientName(req)
			if err != nil {
				// Audited one by one up to a rate per address, as anyone
				// who reaches the port can send them (refusalAudit).
				if note, ok := w.refusals.admit("address/" + c.address.Addr().String()); ok {
					w.cfg.Log.Warn("refused an AdmissionReview from an unauthenticated sender", "address", req.RemoteAddr, "path", req.URL.Path, "error", err)
					e := audit.Event{Kind: audit.KindAdmission, Outcome: audit.OutcomeDeny,
						Reason:    fmt.Sprintf("refused an AdmissionReview sent to %s from %s, unread: %v", req.URL.Path, c.address, err) + note,
						Admission: &audit.Admission{}}
					c.mark(e.Admission)
					w.record(e)
				}
				http.Error(rw, "webhook: "+err.Error(), http.StatusUnauthorized)
				return
			}
			c.name = name
		}
		next.ServeHTTP(rw, req.WithContext(context.WithValue(req.Context(), callerKey{}, c)))
	})
}

// errNoClientCert is a sender without a TLS client certificate.
var errNoClientCert = errors.New("no TLS client certificate: only kube-apiserver, with the client certificate of its AdmissionConfiguration, sends reviews here")

// clientName verifies the request's TLS client certificate against
// ClientCAs (for client authentication, at the time of the request) and
// returns the name it is accepted under.
func (w *Webhook) clientName(req *http.Request) (string, error) {
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		return "", errNoClientCert
	}
	leaf := req.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range req.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: w.cfg.ClientCAs, Intermediates: inter, CurrentTime: w.cfg.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", fmt.Errorf("the TLS client certificate %q does not verify against the webhook's client CAs (%w): only kube-apiserver sends reviews here", short(leaf.Subject.CommonName), err)
	}
	var names []string
	if leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	names = append(names, leaf.DNSNames...)
	if len(w.cfg.ClientNames) == 0 {
		if len(names) == 0 {
			return "certificate " + leaf.SerialNumber.Text(16), nil
		}
		return names[0], nil
	}
	for _, n := range names {
		if slices.Contains(w.cfg.ClientNames, n) {
			return n, nil
		}
	}
	for i, n := range names {
		names[i] = short(n)
	}
	return "", fmt.Errorf("the TLS client certificate names %q, none of %q: only kube-apiserver sends reviews here", names[:min(len(names), 4)], w.cfg.ClientNames)
}

// short is a name a client chose, cut to 128 bytes, for a message that
// quotes it.
func short(s string) string {
	if len(s) <= 128 {
		return s
	}
	return s[:128] + "…"
}
