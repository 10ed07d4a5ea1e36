package authority

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"kzero.dev/kzero/internal/agentapi"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/ca"
)

// Agent API defaults.
const (
	// DefaultAgentAddr is where the agent API listens: agentapi.DefaultPort.
	DefaultAgentAddr = ":8445"
	// DefaultAgentServiceAccount is the service account the agents run as,
	// in the authority's namespace.
	DefaultAgentServiceAccount = "kzero-agent"
	// DefaultAgentDaemonSet is the DaemonSet of the agents, in the
	// authority's namespace.
	DefaultAgentDaemonSet = "kzero-agent"
	// DefaultAgentSVIDTTL is the lifetime of an agent's X.509-SVID.
	DefaultAgentSVIDTTL = time.Hour
	// DefaultWorkloadSVIDTTL is the lifetime of the X.509-SVIDs agents get
	// for workloads.
	DefaultWorkloadSVIDTTL = time.Hour
	// MinAgentAPITTL is the shortest lifetime the agent API issues.
	MinAgentAPITTL = time.Minute
	// MaxAgentAPITTL is the longest: the CA's maximum X.509-SVID lifetime.
	MaxAgentAPITTL = ca.DefaultX509SVIDMaxTTL
	// maxAgentRequest bounds a request's body.
	maxAgentRequest = 64 << 10
	// agentAPITimeout bounds what one request asks of the API server.
	agentAPITimeout = 8 * time.Second
)

// AgentCA is what the agent API needs of the CA: *ca.CA.
type AgentCA interface {
	Bundle() *spiffebundle.Bundle
	IssueX509SVID(ca.X509Request) (*ca.X509SVID, error)
	IssueJWTSVID(ca.JWTRequest) (*ca.JWTSVID, error)
}

// TokenReviewer checks a service account token with a TokenReview:
// client.AuthenticationV1().TokenReviews() is one.
type TokenReviewer interface {
	Create(ctx context.Context, review *authnv1.TokenReview, opts metav1.CreateOptions) (*authnv1.TokenReview, error)
}

// AgentAPIConfig configures an AgentAPI.
type AgentAPIConfig struct {
	// Listener to serve on; nil means listen on Addr.
	Listener net.Listener
	// Addr is the TCP address to listen on when Listener is nil; empty
	// means DefaultAgentAddr.
	Addr string
	// TrustDomain of the CA and of every ID issued. Required.
	TrustDomain spiffeid.TrustDomain
	// Namespace the authority runs in: that of the agents' service account
	// and DaemonSet, and of the API's default ID. Required.
	Namespace string
	// ID is the SPIFFE ID of the X.509-SVID the API presents, the one the
	// agents expect; zero means the authority's own,
	// spiffe://<TrustDomain>/ns/<Namespace>/sa/kzero-authority. It must be
	// in TrustDomain and have a path.
	ID spiffeid.ID
	// CA returns the CA that issues, or nil while none is loaded: then no
	// TLS handshake succeeds until the API's SVID has been issued, and
	// requests get 503. Return an untyped nil, not a nil *ca.CA. It is
	// called on every handshake and request. Required.
	CA func() AgentCA
	// Tokens reviews the agents' tokens. Required.
	Tokens TokenReviewer
	// Cluster reads the API server itself: the agent's pod on attestation,
	// and namespaces and pods before a workload's SVID is refused.
	// Required.
	Cluster ClusterReader
	// Cache reads copies that may lag (CachedCluster), enough to issue a
	// workload's SVID without a request to the API server; nil means every
	// check reads Cluster.
	Cache ClusterReader
	// ServiceAccount and DaemonSet of the agents, in Namespace; empty means
	// DefaultAgentServiceAccount and DefaultAgentDaemonSet.
	ServiceAccount, DaemonSet string
	// AgentSVIDTTL and WorkloadSVIDTTL are the lifetimes of the X.509-SVIDs
	// issued to agents and, through them, to workloads; zero means
	// DefaultAgentSVIDTTL and DefaultWorkloadSVIDTTL. Each must be between
	// MinAgentAPITTL and MaxAgentAPITTL. JWT-SVIDs get the CA's default.
	AgentSVIDTTL, WorkloadSVIDTTL time.Duration
	// AttestRate and AttestBurst bound the attestations one address may
	// make a second, and at once; zero means DefaultAttestRate and
	// DefaultAttestBurst. SignRate and SignBurst bound the SVID requests
	// of one agent likewise; zero means DefaultSignRate and
	// DefaultSignBurst. A call over them gets 429, audited.
	AttestRate, SignRate   float64
	AttestBurst, SignBurst int
	// Audit records every issuance and refusal. Required.
	Audit Auditor
	// Log receives operational messages; never key material or tokens.
	// Required.
	Log *slog.Logger
	// Now returns the current time, for the API's SVID and for checking
	// clients' SVIDs; nil means time.Now.
	Now func() time.Time
}

// AgentAPI is the authority's side of the agent API (package agentapi):
// HTTPS with the authority's X.509-SVID, where an agent attests with its
// pod's service account token and gets an X.509-SVID for its node, then,
// with that SVID as its client certificate, gets the SVIDs of the
// workloads of its node and the bundle. Every issuance and every refusal
// is audited. It is stateless: every replica serves it, from the CA it
// has loaded. Create it with NewAgentAPI and call Run once; ServeHTTP is
// safe for concurrent use.
type AgentAPI struct {
	cfg  AgentAPIConfig
	user string // the agents' Kubernetes user name
	svid *ownSVID
	// attests limits attestations by address; signsX509 and signsJWT
	// SVID requests by agent node, each type in a bucket of its own, so
	// that a workload asking for JWT-SVIDs without end cannot hold back
	// the X.509-SVIDs of its node.
	attests, signsX509, signsJWT *keyedLimiter
	// refusals bounds the refusals audited one by one.
	refusals *refusalAudit
}

var (
	_ AgentCA       = (*ca.CA)(nil)
	_ TokenReviewer = authnclient.TokenReviewInterface(nil)
	_ http.Handler  = (*AgentAPI)(nil)
)

// NewAgentAPI checks cfg; it listens only in Run.
func NewAgentAPI(cfg AgentAPIConfig) (*AgentAPI, error) {
	var errs []error
	if cfg.TrustDomain.IsZero() {
		errs = append(errs, errors.New("trustDomain: required"))
	}
	if cfg.Namespace == "" {
		errs = append(errs, errors.New("namespace: required"))
	}
	if id, err := serverID(cfg.TrustDomain, cfg.Namespace, cfg.ID, "API"); err != nil {
		errs = append(errs, err)
	} else {
		cfg.ID = id
	}
	if cfg.CA == nil {
		errs = append(errs, errors.New("ca: required"))
	}
	if cfg.Tokens == nil {
		errs = append(errs, errors.New("tokens: required"))
	}
	if cfg.Cluster == nil {
		errs = append(errs, errors.New("cluster: required"))
	}
	if cfg.Audit == nil {
		errs = append(errs, errors.New("audit: required"))
	}
	if cfg.Log == nil {
		errs = append(errs, errors.New("log: required"))
	}
	for _, ttl := range []struct {
		field string
		v     time.Duration
	}{{"agentSVIDTTL", cfg.AgentSVIDTTL}, {"workloadSVIDTTL", cfg.WorkloadSVIDTTL}} {
		if ttl.v != 0 && (ttl.v < MinAgentAPITTL || ttl.v > MaxAgentAPITTL) {
			errs = append(errs, fmt.Errorf("%s: %s is not between %s and %s (the CA's maximum)", ttl.field, ttl.v, MinAgentAPITTL, MaxAgentAPITTL))
		}
	}
	for _, r := range []struct {
		field string
		rate  float64
		burst int
	}{{"attestRate, attestBurst", cfg.AttestRate, cfg.AttestBurst}, {"signRate, signBurst", cfg.SignRate, cfg.SignBurst}} {
		if r.rate < 0 || r.burst < 0 {
			errs = append(errs, fmt.Errorf("%s: %g a second, %d at once: must not be negative (zero: the default)", r.field, r.rate, r.burst))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("authority: invalid agent API config: %w", errors.Join(errs...))
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAgentAddr
	}
	if cfg.AttestRate == 0 {
		cfg.AttestRate = DefaultAttestRate
	}
	if cfg.AttestBurst == 0 {
		cfg.AttestBurst = DefaultAttestBurst
	}
	if cfg.SignRate == 0 {
		cfg.SignRate = DefaultSignRate
	}
	if cfg.SignBurst == 0 {
		cfg.SignBurst = DefaultSignBurst
	}
	if cfg.ServiceAccount == "" {
		cfg.ServiceAccount = DefaultAgentServiceAccount
	}
	if cfg.DaemonSet == "" {
		cfg.DaemonSet = DefaultAgentDaemonSet
	}
	if cfg.AgentSVIDTTL == 0 {
		cfg.AgentSVIDTTL = DefaultAgentSVIDTTL
	}
	if cfg.WorkloadSVIDTTL == 0 {
		cfg.WorkloadSVIDTTL = DefaultWorkloadSVIDTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &AgentAPI{
		cfg:       cfg,
		user:      "system:serviceaccount:" + cfg.Namespace + ":" + cfg.ServiceAccount,
		svid:      &ownSVID{id: cfg.ID, issuer: issuerOf(cfg.CA), now: cfg.Now, log: cfg.Log, what: "agent API"},
		attests:   newKeyedLimiter(cfg.AttestRate, cfg.AttestBurst, cfg.Now),
		refusals:  newRefusalAudit(cfg.Now),
		signsX509: newKeyedLimiter(cfg.SignRate, cfg.SignBurst, cfg.Now),
		signsJWT:  newKeyedLimiter(cfg.SignRate, cfg.SignBurst, cfg.Now),
	}, nil
}

// ID is the SPIFFE ID the API presents: agents authorize it.
func (a *AgentAPI) ID() spiffeid.ID { return a.cfg.ID }

// Run serves until ctx ends, then stops accepting, gives the requests in
// flight five seconds, and returns ctx.Err(); it returns early only if it
// cannot listen or serve.
func (a *AgentAPI) Run(ctx context.Context) error {
	ln, err := listen(ctx, a.cfg.Listener, a.cfg.Addr, "agent API")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           a,
		TLSConfig:         a.tlsConfig(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(a.cfg.Log.Handler(), slog.LevelInfo),
	}
	a.cfg.Log.Info("serving the agent API", "addr", ln.Addr().String(), "trustDomain", a.cfg.TrustDomain.Name(),
		"apiID", a.cfg.ID.String(), "agents", a.cfg.Namespace+"/"+a.cfg.DaemonSet, "serviceAccount", a.cfg.ServiceAccount,
		"agentSVIDTTL", a.cfg.AgentSVIDTTL, "workloadSVIDTTL", a.cfg.WorkloadSVIDTTL)
	return serveTLS(ctx, srv, ln, a.cfg.Log, "agent API")
}

// tlsConfig presents the API's SVID and asks for a client certificate
// without requiring one (Attest is made without): a certificate given must
// be an X.509-SVID that verifies against the CA's bundle of the moment,
// or the handshake fails. It is checked in VerifyConnection, which runs on
// resumed sessions too, rather than with tls.VerifyClientCertIfGiven,
// which would verify against ClientCAs (fixed, and a plain chain check)
// instead of the rotating bundle with the X.509-SVID rules. Agents are
// kzero's own: TLS 1.3 only.
func (a *AgentAPI) tlsConfig() *tls.Config {
	tc := tlsconfig.TLSServerConfig(a.svid)
	tc.MinVersion = tls.VersionTLS13
	tc.ClientAuth = tls.RequestClientCert
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil // the handler refuses every call but Attest
		}
		c := a.cfg.CA()
		if c == nil {
			return errNoCA
		}
		if _, _, err := x509svid.Verify(cs.PeerCertificates, c.Bundle(), x509svid.WithTime(a.cfg.Now())); err != nil {
			return fmt.Errorf("authority: agent API: client certificate: %w", err)
		}
		return nil
	}
	return tc
}

// ServeHTTP routes the calls of package agentapi: POST AttestPath,
// X509SVIDPath and JWTSVIDPath, GET BundlePath. Other paths get 404, other
// methods 405, and every call 503 while no CA is loaded.
func (a *AgentAPI) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	method := http.MethodPost
	var handle func(http.ResponseWriter, *http.Request, AgentCA)
	switch req.URL.Path {
	case agentapi.AttestPath:
		handle = a.attest
	case agentapi.X509SVIDPath:
		handle = a.x509SVID
	case agentapi.JWTSVIDPath:
		handle = a.jwtSVID
	case agentapi.BundlePath:
		method, handle = http.MethodGet, a.bundle
	default:
		writeError(rw, http.StatusNotFound, "no such call: the agent API answers "+agentapi.AttestPath+", "+agentapi.X509SVIDPath+", "+
			agentapi.JWTSVIDPath+" and "+agentapi.BundlePath)
		return
	}
	if req.Method != method {
		rw.Header().Set("Allow", method)
		writeError(rw, http.StatusMethodNotAllowed, req.URL.Path+" answers "+method+" only")
		return
	}
	c := a.cfg.CA()
	if c == nil {
		rw.Header().Set("Retry-After", "30")
		writeError(rw, http.StatusServiceUnavailable, "this authority replica has not loaded the CA yet; try again shortly")
		return
	}
	handle(rw, req, c)
}

// call is one request for an SVID, as it will be audited.
type call struct {
	id        spiffeid.ID // asked for; the trust domain's ID until known
	typ       string      // audit.SVIDTypeX509 or audit.SVIDTypeJWT
	requester string
	address   netip.AddrPort // the caller's; zero if RemoteAddr does not parse
	podUID    string         // on attestation, the pod the token is bound to
	keyType   string
	audience  []string
	// what says what was asked, to begin the audit reason: "attestation".
	what string
}

// newCall is a call of kind what (see call) for an SVID of type typ, made
// by req; who asked is filled in as the call is authenticated.
func newCall(td spiffeid.TrustDomain, typ, what string, req *http.Request) call {
	addr, _ := netip.ParseAddrPort(req.RemoteAddr)
	return call{id: td.ID(), typ: typ, what: what, address: netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())}
}

// attest answers AttestPath: the token is reviewed, the pod it is bound
// to read from the API server and checked, and the agent gets the
// X.509-SVID of its node.
func (a *AgentAPI) attest(rw http.ResponseWriter, req *http.Request, c AgentCA) {
	cl := newCall(a.cfg.TrustDomain, audit.SVIDTypeX509, "attestation", req)
	cl.requester = "address/" + req.RemoteAddr
	if !a.attests.allow(cl.address.Addr().String()) {
		a.tooMany(rw, cl, fmt.Sprintf("too many attestations from %s: at most %g a second (%d at once) from one address; retry in a second",
			cl.address.Addr(), a.cfg.AttestRate, a.cfg.AttestBurst))
		return
	}
	var in agentapi.AttestRequest
	if r := decode(rw, req, &in, "AttestRequest"); r != nil {
		a.refuse(rw, cl, r)
		return
	}
	cl.keyType = keyType(in.CSR)
	if in.Token == "" {
		a.refuse(rw, cl, refuseWith(http.StatusUnauthorized, "the request has no token: attest with the agent pod's projected service account token of audience %s", agentapi.TokenAudience))
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), agentAPITimeout)
	defer cancel()
	review, err := a.cfg.Tokens.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{
		Token: in.Token, Audiences: []string{agentapi.TokenAudience},
	}}, metav1.CreateOptions{})
	if err != nil {
		a.unavailable(rw, "the token could not be reviewed", err)
		return
	}
	tok, r := checkTokenReview(review.Status, a.user)
	cl.podUID = tok.podUID
	switch {
	case tok.user == a.user && tok.node != "":
		cl.requester = "node/" + tok.node
	case tok.user != "":
		cl.requester = "user/" + tok.user
	}
	if tok.node != "" {
		id, err := agentID(a.cfg.TrustDomain, tok.node)
		switch {
		case err == nil:
			cl.id = id
		case r == nil:
			r = refuseWith(http.StatusForbidden, "the token's node name %q makes no SPIFFE ID (%v)", tok.node, err)
		}
	}
	if r != nil {
		a.refuse(rw, cl, r)
		return
	}
	pod, err := a.cfg.Cluster.Pod(ctx, a.cfg.Namespace, tok.pod)
	if err != nil {
		a.unavailable(rw, "the agent's pod could not be read", err)
		return
	}
	if r := checkAgentPod(tok, a.cfg.Namespace, a.cfg.DaemonSet, pod); r != nil {
		a.refuse(rw, cl, r)
		return
	}
	svid, ok := a.issueX509(rw, c, cl, in.CSR, a.cfg.AgentSVIDTTL)
	if !ok {
		return
	}
	a.cfg.Log.Info("agent attested", "node", tok.node, "pod", a.cfg.Namespace+"/"+tok.pod, "notAfter", svid.NotAfter)
	a.issued(cl, svid, fmt.Sprintf("issued the X.509-SVID of the agent of node %s on attestation: pod %s/%s (UID %s) of DaemonSet %s/%s, service account %s",
		tok.node, a.cfg.Namespace, tok.pod, tok.podUID, a.cfg.Namespace, a.cfg.DaemonSet, a.cfg.ServiceAccount))
	writeJSON(rw, http.StatusOK, agentapi.AttestResponse{Chain: svid.Chain})
}

// x509SVID answers X509SVIDPath.
func (a *AgentAPI) x509SVID(rw http.ResponseWriter, req *http.Request, c AgentCA) {
	cl := newCall(a.cfg.TrustDomain, audit.SVIDTypeX509, "X.509-SVID", req)
	node, ok := a.authenticate(rw, req, &cl)
	if !ok || !a.allowSign(rw, cl, node) {
		return
	}
	var in agentapi.X509SVIDRequest
	if r := decode(rw, req, &in, "X509SVIDRequest"); r != nil {
		a.refuse(rw, cl, r)
		return
	}
	cl.keyType = keyType(in.CSR)
	pod, ok := a.authorize(rw, req, &cl, node, in.ID)
	if !ok {
		return
	}
	svid, ok := a.issueX509(rw, c, cl, in.CSR, a.cfg.WorkloadSVIDTTL)
	if !ok {
		return
	}
	a.issued(cl, svid, fmt.Sprintf("issued X.509-SVID to the agent of node %s: pod %s/%s runs there as service account %s", node, pod.Namespace, pod.Name, pod.Spec.ServiceAccountName))
	writeJSON(rw, http.StatusOK, agentapi.X509SVIDResponse{Chain: svid.Chain})
}

// jwtSVID answers JWTSVIDPath.
func (a *AgentAPI) jwtSVID(rw http.ResponseWriter, req *http.Request, c AgentCA) {
	cl := newCall(a.cfg.TrustDomain, audit.SVIDTypeJWT, "JWT-SVID", req)
	node, ok := a.authenticate(rw, req, &cl)
	if !ok || !a.allowSign(rw, cl, node) {
		return
	}
	var in agentapi.JWTSVIDRequest
	if r := decode(rw, req, &in, "JWTSVIDRequest"); r != nil {
		a.refuse(rw, cl, r)
		return
	}
	if msg := agentapi.AudienceProblem(in.Audience); msg != "" {
		a.refuse(rw, cl, refuseWith(http.StatusBadRequest, "%s", msg)) // audited without the audience
		return
	}
	cl.audience = in.Audience
	pod, ok := a.authorize(rw, req, &cl, node, in.ID)
	if !ok {
		return
	}
	s, err := c.IssueJWTSVID(ca.JWTRequest{ID: cl.id, Audience: in.Audience})
	if err != nil {
		a.caFailed(rw, cl, err)
		return
	}
	a.record(audit.Event{
		Kind: audit.KindIssuance, Outcome: audit.OutcomeSuccess,
		Reason: fmt.Sprintf("issued JWT-SVID to the agent of node %s: pod %s/%s runs there as service account %s", node, pod.Namespace, pod.Name, pod.Spec.ServiceAccountName),
		Issuance: &audit.Issuance{SPIFFEID: s.ID, Type: audit.SVIDTypeJWT, Audience: s.Audience,
			NotBefore: s.IssuedAt, NotAfter: s.Expiry, Requester: cl.requester, Address: cl.address, SignerKeyID: s.KeyID},
	})
	writeJSON(rw, http.StatusOK, agentapi.JWTSVIDResponse{Token: s.Token, Expiry: s.Expiry})
}

// bundle answers BundlePath: the CA's bundle, to agents only.
func (a *AgentAPI) bundle(rw http.ResponseWriter, req *http.Request, c AgentCA) {
	if _, _, r := a.agentOf(req); r != nil {
		writeError(rw, r.status, r.msg)
		return
	}
	b, err := c.Bundle().Marshal()
	if err != nil {
		a.cfg.Log.Error("the bundle does not marshal", "error", err)
		writeError(rw, http.StatusInternalServerError, "the authority could not encode its bundle; see its log")
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(http.StatusOK)
	_, _ = rw.Write(b)
}

// allowSign takes one of the agent of node's SVID requests of the second;
// over the rate, it answers 429 and returns false.
func (a *AgentAPI) allowSign(rw http.ResponseWriter, cl call, node string) bool {
	limits, what := a.signsX509, "X.509-SVID"
	if cl.typ == audit.SVIDTypeJWT {
		limits, what = a.signsJWT, "JWT-SVID"
	}
	if limits.allow(node) {
		return true
	}
	a.tooMany(rw, cl, fmt.Sprintf("too many %s requests from the agent of node %s: at most %g a second (%d at once) from one agent; retry in a second",
		what, node, a.cfg.SignRate, a.cfg.SignBurst))
	return false
}

// authenticate finds the agent's node from its client X.509-SVID, or
// refuses the call (401) and audits it.
func (a *AgentAPI) authenticate(rw http.ResponseWriter, req *http.Request, cl *call) (string, bool) {
	node, requester, r := a.agentOf(req)
	cl.requester = requester
	if r != nil {
		a.refuse(rw, *cl, r)
		return "", false
	}
	return node, true
}

// agentOf returns the node of the agent whose X.509-SVID the client
// presented, and who asked as the audit names them. The handshake
// verified the certificate against the bundle (tlsConfig); a connection
// may outlive it, so its validity is checked again here.
func (a *AgentAPI) agentOf(req *http.Request) (node, requester string, r *apiRefusal) {
	requester = "address/" + req.RemoteAddr
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		return "", requester, refuseWith(http.StatusUnauthorized,
			"this call needs the agent's X.509-SVID as the TLS client certificate: attest first (POST %s) and call with the SVID it returns", agentapi.AttestPath)
	}
	leaf := req.TLS.PeerCertificates[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return "", requester, refuseWith(http.StatusUnauthorized, "the client certificate names no SPIFFE ID (%v): call with the agent's X.509-SVID", err)
	}
	requester = id.String()
	if now := a.cfg.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return "", requester, refuseWith(http.StatusUnauthorized,
			"the client X.509-SVID of %s is valid from %s to %s, not now: attest again (POST %s) for a new one", id,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), agentapi.AttestPath)
	}
	node, ok := agentNode(a.cfg.TrustDomain, id)
	if !ok {
		return "", requester, refuseWith(http.StatusUnauthorized,
			"the client certificate is the X.509-SVID of %s, not of a kzero agent (spiffe://%s%s<node>): only agents call this API",
			id, a.cfg.TrustDomain.Name(), agentapi.AgentPathPrefix)
	}
	return node, "node/" + node, nil
}

// authorize checks that the agent of node may have the ID asked: a
// workload's, of an enrolled namespace, and a pod of the node runs as it.
// It decides on the cache first, and refuses only on what the API server
// says now. It returns the pod, or refuses the call and audits it.
func (a *AgentAPI) authorize(rw http.ResponseWriter, req *http.Request, cl *call, node, asked string) (*corev1.Pod, bool) {
	id, err := spiffeid.FromString(asked)
	if err != nil {
		a.refuse(rw, *cl, refuseWith(http.StatusBadRequest, "the ID asked for, %q, is not a SPIFFE ID (%v): ask for spiffe://%s/ns/<namespace>/sa/<service-account>", asked, err, a.cfg.TrustDomain.Name()))
		return nil, false
	}
	cl.id = id
	ns, sa, r := workloadID(a.cfg.TrustDomain, a.cfg.Namespace, node, id)
	if r != nil {
		a.refuse(rw, *cl, r)
		return nil, false
	}
	ctx, cancel := context.WithTimeout(req.Context(), agentAPITimeout)
	defer cancel()
	if a.cfg.Cache != nil {
		// Copies found are enough to issue: the pod they show running
		// there was, a moment ago, and may still be. A namespace
		// enrolled a moment ago, a pod just started: the cache may not
		// have them yet, so a refusal is made only on a fresh read.
		namespace, _ := a.cfg.Cache.Namespace(ctx, ns)
		pods, _ := a.cfg.Cache.PodsOnNode(ctx, ns, node)
		if pod, r := decideWorkload(node, id, ns, sa, namespace, pods); r == nil {
			return pod, true
		}
	}
	namespace, err := a.cfg.Cluster.Namespace(ctx, ns)
	if err != nil {
		a.unavailable(rw, "the namespace could not be read", err)
		return nil, false
	}
	var pods []*corev1.Pod
	if namespace != nil && namespace.Labels[EnrolledLabel] == "true" {
		if pods, err = a.cfg.Cluster.PodsOnNode(ctx, ns, node); err != nil {
			a.unavailable(rw, "the pods of the node could not be listed", err)
			return nil, false
		}
	}
	pod, r := decideWorkload(node, id, ns, sa, namespace, pods)
	if r != nil {
		a.refuse(rw, *cl, r)
		return nil, false
	}
	return pod, true
}
