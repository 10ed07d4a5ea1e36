package authority

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
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
	// MutatePodsPath is the webhook's path.
	MutatePodsPath = "/mutate-pods"
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
// MutatePodsPath over HTTPS, with a serving certificate from the CA that it
// renews at half life. It is stateless: every replica serves it, leader or
// not. Create it with NewWebhook and call Run once.
type Webhook struct {
	cfg   WebhookConfig
	names []string

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
	return &Webhook{cfg: cfg, names: []string{svc, svc + ".cluster.local"}}, nil
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
	mux.Handle(MutatePodsPath, &admission.Handler{Namespaces: w.cfg.Namespaces, Log: w.cfg.Log, Decided: w.audit})
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("ok\n")) })
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: w.certificate},
		ErrorLog:          slog.NewLogLogger(w.cfg.Log.Handler(), slog.LevelWarn),
	}
	w.cfg.Log.Info("serving the pod identity webhook", "addr", ln.Addr().String(), "path", MutatePodsPath, "dnsNames", w.names)
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

// audit records an admission verdict.
func (w *Webhook) audit(req *admissionv1.AdmissionRequest, res admission.Result, err error) {
	if rerr := w.cfg.Audit.Record(admissionEvent(req, res, err)); rerr != nil {
		w.cfg.Log.Error("audit event not recorded", "error", rerr)
	}
}

// admissionEvent is the audit event of one verdict of the pod identity
// webhook: the volume added, the pod left alone (both allowed), or the pod
// refused (err).
func admissionEvent(req *admissionv1.AdmissionRequest, res admission.Result, err error) audit.Event {
	resource := req.Resource.Version + "/" + req.Resource.Resource
	if req.Resource.Group != "" {
		resource = req.Resource.Group + "/" + resource
	}
	p := &audit.Admission{
		UID: string(req.UID), Resource: resource, SubResource: req.SubResource,
		Namespace: req.Namespace, Name: req.Name, GenerateName: generateName(req), Operation: string(req.Operation),
		User: req.UserInfo.Username, Allowed: err == nil, Patched: err == nil && res.Patch != nil,
	}
	if err != nil {
		return audit.Event{Kind: audit.KindAdmission, Outcome: audit.OutcomeDeny, Admission: p,
			Reason: "pod identity webhook refused the pod: " + err.Error()}
	}
	return audit.Event{Kind: audit.KindAdmission, Outcome: audit.OutcomeAllow, Admission: p,
		Reason: "pod identity webhook: " + res.Reason}
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
