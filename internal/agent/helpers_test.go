package agent_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"

	"kzero.dev/kzero/internal/agent"
	"kzero.dev/kzero/internal/agentapi"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
	"kzero.dev/kzero/internal/workloadapi"
)

const node = "node-a"

var (
	td          = spiffeid.RequireTrustDomainFromString("cluster.local")
	authorityID = spiffeid.RequireFromString("spiffe://cluster.local/ns/kzero-system/sa/kzero-authority")
	agentID     = spiffeid.RequireFromString("spiffe://cluster.local/kzero/agent/" + node)
	webID       = spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web")
)

// testClock is a clock the test moves. The client's loop waits on one
// After at a time, so the clock keeps only the last one asked for: the
// test knows the loop is waiting when there is one (blocked), and Advance
// fires it once it is due.
type testClock struct {
	*catest.Clock
	mu      sync.Mutex
	pending *clockWait // guarded by mu
}

type clockWait struct {
	at time.Time
	ch chan time.Time
}

func newTestClock() *testClock {
	// The authority's own certificate is checked against the system
	// clock (go-spiffe's tlsconfig), so the test's clock starts now and
	// moves forward only within that certificate's life.
	return &testClock{Clock: catest.NewClock(time.Now())}
}

// After is the client's After.
func (c *testClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.Now()
		c.pending = nil
		return ch
	}
	c.pending = &clockWait{at: c.Now().Add(d), ch: ch}
	return ch
}

// Advance moves the clock by d and fires the wait if it is due.
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Add(d)
	if now := c.Now(); c.pending != nil && !now.Before(c.pending.at) {
		c.pending.ch <- now
		c.pending = nil
	}
}

// blocked waits until the client's loop waits on the clock, and returns
// how long it waits for.
func (c *testClock) blocked(t testing.TB) time.Duration {
	t.Helper()
	var d time.Duration
	eventually(t, "the client's loop to wait", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.pending == nil {
			return false
		}
		d = c.pending.at.Sub(c.Now())
		return true
	})
	return d
}

// eventually polls cond every few milliseconds, for five seconds at most.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-time.After(2 * time.Millisecond)
	}
}

// testLog logs to the test's log.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// standin stands in for the authority's agent API. The real one
// (internal/authority's AgentAPI) was written at the same time as this
// package, by another hand; this one speaks the same agentapi with the
// same rules (TLS 1.3, the authority's X.509-SVID, client SVIDs checked
// against the CA at the handshake and on every call) but lets a test move
// its clock, take it down, and make it refuse. authority_test.go runs the
// client against the real AgentAPI as well.
type standin struct {
	t     testing.TB
	ca    *ca.CA
	clock *testClock
	url   string
	// svidTTL is the life of the agents' SVIDs.
	svidTTL time.Duration

	mu      sync.Mutex
	tokens  []string          // guarded by mu: the tokens of the attestations
	asked   []string          // guarded by mu: who asked for what, "<agent> <path> <id>"
	bundles int               // guarded by mu: bundle fetches
	down    bool              // guarded by mu: connections are closed at once
	refuse  map[string]string // guarded by mu: ID → message of a 403
	reject  int               // guarded by mu: the next calls with a client SVID get 401
	// rejectTLS: the next handshakes with a client SVID fail.
	rejectTLS int // guarded by mu
	// padAnswers: every answer is 2 MiB of JSON.
	padAnswers bool // guarded by mu
	extraCAs   []*x509.Certificate
}

type standinConfig struct {
	// id is the SPIFFE ID the stand-in presents; zero: authorityID.
	id spiffeid.ID
	// svidTTL is the life of the agents' SVIDs; zero: an hour.
	svidTTL time.Duration
	// clock is the CA's; nil: a new one.
	clock *testClock
}

func newStandin(t testing.TB, cfg standinConfig) *standin {
	t.Helper()
	if cfg.id.IsZero() {
		cfg.id = authorityID
	}
	if cfg.svidTTL == 0 {
		cfg.svidTTL = time.Hour
	}
	if cfg.clock == nil {
		cfg.clock = newTestClock()
	}
	c, err := ca.New(t.Context(), ca.Config{TrustDomain: td, Store: catest.NewMemStore(nil), Now: cfg.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	s := &standin{t: t, ca: c, clock: cfg.clock, svidTTL: cfg.svidTTL, refuse: map[string]string{}}
	key, csr := catest.NewCSR(t)
	own, err := c.IssueX509SVID(ca.X509Request{ID: cfg.id, CSR: csr, TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := x509svid.ParseRaw(bytes.Join(own.Chain, nil), keyDER)
	if err != nil {
		t.Fatal(err)
	}
	tc := tlsconfig.TLSServerConfig(svid)
	tc.MinVersion = tls.VersionTLS13
	tc.ClientAuth = tls.RequestClientCert
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		s.mu.Lock()
		reject := s.rejectTLS > 0
		if reject {
			s.rejectTLS--
		}
		s.mu.Unlock()
		if reject {
			return errors.New("standin: the client certificate is refused")
		}
		_, _, err := x509svid.Verify(cs.PeerCertificates, c.Bundle(), x509svid.WithTime(s.clock.Now()))
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, TLSConfig: tc, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(testLog(t).With("component", "standin").Handler(), slog.LevelInfo)}
	// One request per connection, so that taking the stand-in down
	// takes effect at once.
	srv.SetKeepAlivesEnabled(false)
	go func() { _ = srv.ServeTLS(downListener{Listener: ln, s: s}, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	s.url = "https://" + ln.Addr().String()
	return s
}

// downListener closes the connections it accepts while the stand-in is
// down: the authority is unreachable.
type downListener struct {
	net.Listener
	s *standin
}

func (l downListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.s.mu.Lock()
		down := l.s.down
		l.s.mu.Unlock()
		if !down {
			return conn, nil
		}
		_ = conn.Close()
	}
}

func (s *standin) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *standin) attestations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tokens...)
}

func (s *standin) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.asked...)
}

func (s *standin) bundleFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bundles
}

// writeBundle writes the CA's X.509 authorities as PEM, as kubelet
// projects the ClusterTrustBundle, and returns the file's path.
func (s *standin) writeBundle(t testing.TB, dir string) string {
	t.Helper()
	var out []byte
	for _, c := range s.ca.Bundle().X509Authorities() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	path := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (s *standin) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	s.mu.Lock()
	pad := s.padAnswers
	s.mu.Unlock()
	if pad {
		rw.WriteHeader(http.StatusOK)
		_, _ = rw.Write([]byte(`{"token":"` + strings.Repeat("a", 2<<20) + `"}`))
		return
	}
	switch req.URL.Path {
	case agentapi.AttestPath:
		s.attest(rw, req)
	case agentapi.X509SVIDPath, agentapi.JWTSVIDPath, agentapi.BundlePath:
		caller, ok := s.agentOf(rw, req)
		if !ok {
			return
		}
		switch req.URL.Path {
		case agentapi.X509SVIDPath:
			s.x509SVID(rw, req, caller)
		case agentapi.JWTSVIDPath:
			s.jwtSVID(rw, req, caller)
		default:
			s.bundle(rw)
		}
	default:
		answer(rw, http.StatusNotFound, agentapi.Error{Error: "no such call"})
	}
}

func (s *standin) attest(rw http.ResponseWriter, req *http.Request) {
	var in agentapi.AttestRequest
	if !decode(rw, req, &in) {
		return
	}
	s.mu.Lock()
	s.tokens = append(s.tokens, in.Token)
	s.mu.Unlock()
	svid, err := s.ca.IssueX509SVID(ca.X509Request{ID: agentID, CSR: in.CSR, TTL: s.svidTTL})
	if err != nil {
		answer(rw, http.StatusBadRequest, agentapi.Error{Error: err.Error()})
		return
	}
	answer(rw, http.StatusOK, agentapi.AttestResponse{Chain: svid.Chain})
}

// agentOf checks the client's X.509-SVID, as the authority does.
func (s *standin) agentOf(rw http.ResponseWriter, req *http.Request) (spiffeid.ID, bool) {
	s.mu.Lock()
	reject := s.reject > 0
	if reject {
		s.reject--
	}
	s.mu.Unlock()
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		answer(rw, http.StatusUnauthorized, agentapi.Error{Error: "this call needs the agent's X.509-SVID"})
		return spiffeid.ID{}, false
	}
	leaf := req.TLS.PeerCertificates[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil || id != agentID || reject || s.clock.Now().After(leaf.NotAfter) {
		answer(rw, http.StatusUnauthorized, agentapi.Error{Error: fmt.Sprintf("the client X.509-SVID of %s is not accepted: attest again", id)})
		return spiffeid.ID{}, false
	}
	return id, true
}

func (s *standin) x509SVID(rw http.ResponseWriter, req *http.Request, caller spiffeid.ID) {
	var in agentapi.X509SVIDRequest
	if !decode(rw, req, &in) {
		return
	}
	id, ok := s.allowed(rw, caller, req.URL.Path, in.ID)
	if !ok {
		return
	}
	svid, err := s.ca.IssueX509SVID(ca.X509Request{ID: id, CSR: in.CSR})
	if err != nil {
		answer(rw, http.StatusBadRequest, agentapi.Error{Error: err.Error()})
		return
	}
	answer(rw, http.StatusOK, agentapi.X509SVIDResponse{Chain: svid.Chain})
}

func (s *standin) jwtSVID(rw http.ResponseWriter, req *http.Request, caller spiffeid.ID) {
	var in agentapi.JWTSVIDRequest
	if !decode(rw, req, &in) {
		return
	}
	id, ok := s.allowed(rw, caller, req.URL.Path, in.ID)
	if !ok {
		return
	}
	svid, err := s.ca.IssueJWTSVID(ca.JWTRequest{ID: id, Audience: in.Audience})
	if err != nil {
		answer(rw, http.StatusBadRequest, agentapi.Error{Error: err.Error()})
		return
	}
	answer(rw, http.StatusOK, agentapi.JWTSVIDResponse{Token: svid.Token, Expiry: svid.Expiry})
}

// allowed records the call and refuses the IDs of s.refuse.
func (s *standin) allowed(rw http.ResponseWriter, caller spiffeid.ID, path, asked string) (spiffeid.ID, bool) {
	s.mu.Lock()
	s.asked = append(s.asked, caller.String()+" "+path+" "+asked)
	msg, refused := s.refuse[asked]
	s.mu.Unlock()
	if refused {
		answer(rw, http.StatusForbidden, agentapi.Error{Error: msg})
		return spiffeid.ID{}, false
	}
	id, err := spiffeid.FromString(asked)
	if err != nil {
		answer(rw, http.StatusBadRequest, agentapi.Error{Error: err.Error()})
		return spiffeid.ID{}, false
	}
	return id, true
}

func (s *standin) bundle(rw http.ResponseWriter) {
	b := s.ca.Bundle()
	s.mu.Lock()
	s.bundles++
	for _, c := range s.extraCAs {
		b.AddX509Authority(c)
	}
	s.mu.Unlock()
	doc, err := b.Marshal()
	if err != nil {
		answer(rw, http.StatusInternalServerError, agentapi.Error{Error: err.Error()})
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	_, _ = rw.Write(doc)
}

func decode(rw http.ResponseWriter, req *http.Request, v any) bool {
	dec := json.NewDecoder(req.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		answer(rw, http.StatusBadRequest, agentapi.Error{Error: err.Error()})
		return false
	}
	return true
}

func answer(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}

// agentFiles are the token and bundle files of an agent of s.
type agentFiles struct {
	dir, token, bundle string
}

func newAgentFiles(t testing.TB, s *standin) agentFiles {
	t.Helper()
	dir := t.TempDir()
	f := agentFiles{dir: dir, token: filepath.Join(dir, "token"), bundle: s.writeBundle(t, dir)}
	f.setToken(t, "token-1")
	return f
}

// setToken writes the token file, as kubelet does when it rotates it.
func (f agentFiles) setToken(t testing.TB, token string) {
	t.Helper()
	if err := os.WriteFile(f.token, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newClient is a client of s on s's clock, with bundles.
func newClient(t testing.TB, s *standin, f agentFiles, bundles *workloadapi.Bundles) *agent.Client {
	t.Helper()
	if bundles == nil {
		bundles = &workloadapi.Bundles{}
	}
	c, err := agent.NewClient(agent.ClientConfig{
		URL: s.url, TrustDomain: td, NodeName: node, AuthorityID: authorityID,
		BundleFile: f.bundle, TokenFile: f.token, Bundles: bundles, Log: testLog(t),
		Now: s.clock.Now, After: s.clock.After,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs fn until the test ends, and checks it then returns
// context.Canceled.
func run(t testing.TB, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

// workloadAPI is a Workload API served with the client as its Signer,
// to every caller as webID.
type workloadAPI struct{ addr string }

func serveWorkloadAPI(t testing.TB, signer workloadapi.Signer, bundles *workloadapi.Bundles, now func() time.Time) *workloadAPI {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	srv, err := workloadapi.New(workloadapi.Config{
		SocketPath: sock, TrustDomain: td, Signer: signer, Bundles: bundles, Log: testLog(t), Now: now,
		Attestor: workloadapi.AttestorFunc(func(context.Context, workloadapi.Caller) (spiffeid.ID, error) { return webID, nil }),
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, srv.Run)
	eventually(t, "the socket", func() bool { _, err := os.Stat(sock); return err == nil })
	return &workloadAPI{addr: "unix://" + sock}
}

// x509Bundle is the trust domain's X.509 bundle as the Workload API
// serves it, once it has one.
func (w *workloadAPI) x509Bundle(t testing.TB) []*x509.Certificate {
	t.Helper()
	var set *x509bundle.Set
	var err error
	eventually(t, "the X.509 bundles", func() bool {
		set, err = spiffewl.FetchX509Bundles(t.Context(), spiffewl.WithAddr(w.addr))
		return err == nil
	})
	b, err := set.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	return b.X509Authorities()
}

// jwtKeys are the trust domain's JWT authorities as the Workload API
// serves them, once it has them.
func (w *workloadAPI) jwtKeys(t testing.TB) map[string]crypto.PublicKey {
	t.Helper()
	var set *jwtbundle.Set
	var err error
	eventually(t, "the JWT bundles", func() bool {
		set, err = spiffewl.FetchJWTBundles(t.Context(), spiffewl.WithAddr(w.addr))
		return err == nil
	})
	b, err := set.GetJWTBundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	return b.JWTAuthorities()
}
