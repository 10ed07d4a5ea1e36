package authority

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"kzero.dev/kzero/internal/admission"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/ca"
)

// Webhook serving defaults.
const (
	// DefaultWebhookAddr is where the webhook listens.
	DefaultWebhookAddr = ":8443"
	// DefaultWebhookService is the Service in front of the authority's
	// webhook; its DNS names are in the serving certificate.
	DefaultWebhookService = "kzero-authority"
	// DefaultWebhookConfig is the MutatingWebhookConfiguration whose
	// caBundle the leader keeps equal to the CA's bundle.
	DefaultWebhookConfig = "kzero-pod-identity"
	// MutatePodsPath is the pod identity webhook's path.
	MutatePodsPath = "/mutate-pods"
	// ValidatePodsPath is the pod admission webhook's path: it refuses,
	// in enrolled namespaces, pods with a hostPath volume.
	ValidatePodsPath = "/validate-pods"
	// DefaultServingLifetime is the serving certificate's lifetime; it is
	// renewed at half of it.
	DefaultServingLifetime = 24 * time.Hour
)

// ServingIssuer signs the webhook's serving certificate: *ca.CA.
type ServingIssuer interface {
	IssueServingCertificate(ca.ServingRequest) (*ca.ServingCertificate, error)
}

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	// Listener to serve on; nil means listen on Addr.
	Listener net.Listener
	// Addr is the TCP address to listen on when Listener is nil; empty
	// means DefaultWebhookAddr.
	Addr string
	// Service and Namespace name the Service kube-apiserver calls: the
	// serving certificate holds <Service>.<Namespace>.svc and
	// <Service>.<Namespace>.svc.cluster.local. Required.
	Service, Namespace string
	// IPs are added to the serving certificate, for a webhook reached by
	// URL at an IP address (an authority run outside the cluster).
	IPs []netip.Addr
	// CA returns the CA that signs the serving certificate, or nil while
	// none is loaded (the TLS handshake then fails). Required.
	CA func() ServingIssuer
	// Namespaces finds a pod's namespace. Required.
	Namespaces admission.NamespaceGetter
	// ClientCAs, if set, authenticate the senders of AdmissionReviews: a
	// review is read only from a sender whose TLS client certificate
	// verifies against them (the certificate kube-apiserver presents to
	// webhooks through its AdmissionConfiguration), and with ClientNames,
	// names one of them. Others are refused (401) and audited. Nil: every
	// review is read, and its audit event is marked unauthenticated.
	ClientCAs *x509.CertPool
	// ClientNames are the names, a certificate's common name or one of
	// its DNS names, accepted from ClientCAs; empty: any certificate they
	// verify. Use it when the CA issues other client certificates too.
	ClientNames []string
	// Audit records every admission verdict. Required.
	Audit Auditor
	// Log receives operational messages. Required.
	Log *slog.Logger
	// Lifetime of the serving certificate; zero means
	// DefaultServingLifetime.
	Lifetime time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Webhook serves the pod identity webhook (admission.Handler) at
// MutatePodsPath and the pod admission webhook (admission.ValidatingHandler)
// at ValidatePodsPath over HTTPS, with a serving certificate from the CA
// that it renews at half life; with ClientCAs it reads reviews only from
// kube-apiserver. It is stateless: every replica serves it, leader or not.
// Create it with NewWebhook and call Run once.
type Webhook struct {
	cfg      WebhookConfig
	names    []string
	refusals *refusalAudit

	mu    sync.Mutex
	cert  *tls.Certificate // guarded by mu
	renew time.Time        // guarded by mu
}

// NewWebhook checks cfg; it listens only in Run.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	var errs []error
	if cfg.Service == "" || cfg.Namespace == "" {
		errs = append(errs, errors.New("service, namespace: required (the serving certificate's DNS names)"))
	}
	if cfg.CA == nil {
		errs = append(errs, errors.New("ca: required"))
	}
	if cfg.Namespaces == nil {
		errs = append(errs, errors.New("namespaces: required"))
	}
	if cfg.Audit == nil {
		errs = append(errs, errors.New("audit: required"))
	}
	if cfg.Log == nil {
		errs = append(errs, errors.New("log: required"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("authority: invalid webhook config: %w", errors.Join(errs...))
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultWebhookAddr
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultServingLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	svc := cfg.Service + "." + cfg.Namespace + ".svc"
	return &Webhook{cfg: cfg, names: []string{svc, svc + ".cluster.local"}, refusals: newRefusalAudit(cfg.Now)}, nil
}

// DNSNames are the names in the serving certificate.
func (w *Webhook) DNSNames() []string { return append([]string(nil), w.names...) }

// Run serves until ctx ends, then stops accepting, gives the requests in
// flight five seconds, and returns ctx.Err(); it returns early only if it
// cannot listen or serve.
func (w *Webhook) Run(ctx context.Context) error {
	ln, err := listen(ctx, w.cfg.Listener, w.cfg.Addr, "webhook")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(MutatePodsPath, w.authenticate(&admission.Handler{Namespaces: w.cfg.Namespaces, Log: w.cfg.Log,
		Decided: w.audit("pod identity webhook: ", "pod identity webhook refused the pod: ")}))
	mux.Handle(ValidatePodsPath, w.authenticate(&admission.ValidatingHandler{Namespaces: w.cfg.Namespaces, Log: w.cfg.Log,
		Decided: w.audit("pod admission webhook: ", "pod admission webhook refused the pod: ")}))
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("ok\n")) })
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: w.certificate}
	if w.cfg.ClientCAs != nil {
		// Asked, not required: the handler refuses and audits a review
		// without one, and /healthz needs none.
		tc.ClientAuth = tls.RequestClientCert
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         tc,
		ErrorLog:          slog.NewLogLogger(w.cfg.Log.Handler(), slog.LevelWarn),
	}
	if w.cfg.ClientCAs == nil {
		w.cfg.Log.Warn("the webhook does not authenticate kube-apiserver: anyone who reaches it can send reviews, whose audit events are marked unauthenticated; give it the CA of the client certificate kube-apiserver presents to webhooks (docs/authority.md)")
	}
	w.cfg.Log.Info("serving the pod identity and pod admission webhooks", "addr", ln.Addr().String(),
		"paths", []string{MutatePodsPath, ValidatePodsPath}, "dnsNames", w.names, "clientAuthentication", w.cfg.ClientCAs != nil)
	return serveTLS(ctx, srv, ln, w.cfg.Log, "webhook")
}

// certificate returns the serving certificate, renewing it from half its
// life on; while renewal fails, the current one serves until it expires.
func (w *Webhook) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.cfg.Now()
	if w.cert != nil && now.Before(w.renew) {
		return w.cert, nil
	}
	cert, err := w.issue()
	if err != nil {
		if w.cert != nil && now.Before(w.cert.Leaf.NotAfter) {
			w.cfg.Log.Warn("renewing the webhook's serving certificate failed; serving the current one", "error", err, "notAfter", w.cert.Leaf.NotAfter)
			return w.cert, nil
		}
		w.cfg.Log.Error("no serving certificate for the webhook", "error", err)
		return nil, err
	}
	w.cert = cert
	w.renew = cert.Leaf.NotBefore.Add(cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore) / 2)
	w.cfg.Log.Info("issued the webhook's serving certificate", "dnsNames", w.names, "notAfter", cert.Leaf.NotAfter)
	return cert, nil
}

// issue makes a key and has the CA certify it.
func (w *Webhook) issue() (*tls.Certificate, error) {
	c := w.cfg.CA()
	if c == nil {
		return nil, errors.New("authority: webhook: the CA is not loaded yet (is the leader up, and the CA's Secret readable?)")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("authority: webhook serving key: %w", err)
	}
	sc, err := c.IssueServingCertificate(ca.ServingRequest{DNSNames: w.names, IPs: w.cfg.IPs, PublicKey: key.Public(), TTL: w.cfg.Lifetime})
	if err != nil {
		return nil, fmt.Errorf("authority: webhook serving certificate: %w", err)
	}
	return &tls.Certificate{Certificate: sc.Chain, PrivateKey: key, Leaf: sc.Certificates[0]}, nil
}

// audit returns what records a webhook's verdicts; their reasons begin
// with allowed, or with refused for a pod refused.
func (w *Webhook) audit(allowed, refused string) admission.DecidedFunc {
	return func(ctx context.Context, req *admissionv1.AdmissionRequest, res admission.Result, err error) {
		e := admissionEvent(req, res, err, allowed, refused)
		callerOf(ctx).mark(e.Admission)
		w.record(e)
	}
}

// record writes an audit event; a failure is logged loudly, since what the
// authority decides must not go unseen.
func (w *Webhook) record(e audit.Event) {
	if err := w.cfg.Audit.Record(e); err != nil {
		w.cfg.Log.Error("audit event not recorded", "error", err)
	}
}

// admissionEvent is the audit event of one verdict of a webhook: the pod
// changed or left alone (both allowed), or refused (res.Refused, or err
// when nothing could be decided). allowed and refused begin the reason.
func admissionEvent(req *admissionv1.AdmissionRequest, res admission.Result, err error, allowed, refused string) audit.Event {
	resource := req.Resource.Version + "/" + req.Resource.Resource
	if req.Resource.Group != "" {
		resource = req.Resource.Group + "/" + resource
	}
	ok := err == nil && !res.Refused
	p := &audit.Admission{
		UID: string(req.UID), Resource: resource, SubResource: req.SubResource,
		Namespace: req.Namespace, Name: req.Name, GenerateName: generateName(req), Operation: string(req.Operation),
		User: req.UserInfo.Username, Allowed: ok, Patched: ok && res.Patch != nil,
	}
	switch {
	case err != nil:
		return audit.Event{Kind: audit.KindAdmission, Outcome: audit.OutcomeDeny, Admission: p, Reason: refused + err.Error()}
	case res.Refused:
		return audit.Event{Kind: audit.KindAdmission, Outcome: audit.OutcomeDeny, Admission: p, Reason: refused + res.Reason}
	}
	return audit.Event{Kind: audit.KindAdmission, Outcome: audit.OutcomeAllow, Admission: p, Reason: allowed + res.Reason}
}

// generateName is the metadata.generateName of a request's object when the
// request names none: the name kube-apiserver will make starts with it.
func generateName(req *admissionv1.AdmissionRequest) string {
	if req.Name != "" || len(req.Object.Raw) == 0 {
		return ""
	}
	var obj struct {
		Metadata struct {
			GenerateName string `json:"generateName"`
		} `json:"metadata"`
	}
	if json.Unmarshal(req.Object.Raw, &obj) != nil {
		return ""
	}
	return obj.Metadata.GenerateName
}
