package authority_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

var (
	td         = spiffeid.RequireTrustDomainFromString("cluster.local")
	endpointID = spiffeid.RequireFromString("spiffe://cluster.local/ns/kzero-system/sa/kzero-authority")
)

// loaded holds the CA a replica has loaded, or none, as Replica.CA does.
type loaded struct{ p atomic.Pointer[ca.CA] }

func (l *loaded) CA() authority.BundleCA {
	if c := l.p.Load(); c != nil {
		return c
	}
	return nil
}

func newCA(t *testing.T, d spiffeid.TrustDomain, now func() time.Time) *ca.CA {
	t.Helper()
	c, err := ca.New(t.Context(), ca.Config{TrustDomain: d, Store: catest.NewMemStore(nil), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serve runs a bundle endpoint on loopback until the test ends, and
// returns its URL.
func serve(t *testing.T, cfg authority.BundleEndpointConfig) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener, cfg.TrustDomain = ln, td
	if cfg.ID.IsZero() {
		cfg.Namespace = "kzero-system"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	e, err := authority.NewBundleEndpoint(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, e.Run)
	return "https://" + ln.Addr().String() + "/"
}

// fetch is a federating peer's fetch: a new connection each time, so that
// each sees the SVID the endpoint serves then.
func fetch(t *testing.T, url string, trusted x509bundle.Source, id spiffeid.ID) (*spiffebundle.Bundle, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return federation.FetchBundle(ctx, td, url, federation.WithSPIFFEAuth(trusted, id))
}

// TestBundleEndpointFederation: a peer configured with the endpoint's URL,
// its SPIFFE ID and the trust domain's bundle (https_spiffe) fetches the
// CA's bundle, whole; a peer that expects another ID, or trusts another CA
// or trust domain, refuses the endpoint.
func TestBundleEndpointFederation(t *testing.T) {
	c := newCA(t, td, nil)
	var l loaded
	l.p.Store(c)
	url := serve(t, authority.BundleEndpointConfig{CA: l.CA})
	get := `federation: could not GET bundle: Get "` + url + `": `
	for _, tc := range []struct {
		name    string
		trusted x509bundle.Source
		id      spiffeid.ID
		want    string
	}{
		{name: "the trust domain's bundle and the endpoint's ID", trusted: c.Bundle(), id: endpointID},
		{name: "another ID", trusted: c.Bundle(), id: spiffeid.RequireFromString("spiffe://cluster.local/spire/server"),
			want: get + `unexpected ID "spiffe://cluster.local/ns/kzero-system/sa/kzero-authority"`},
		{name: "another CA of the trust domain", trusted: newCA(t, td, nil).Bundle(), id: endpointID,
			want: get + "x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority"},
		{name: "another trust domain's bundle", trusted: newCA(t, spiffeid.RequireTrustDomainFromString("example.org"), nil).Bundle(), id: endpointID,
			want: get + `x509svid: could not get X509 bundle: spiffebundle: no X.509 bundle for trust domain "cluster.local"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fetch(t, url, tc.trusted, tc.id)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("err = %v\nwant  %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := c.Bundle()
			if !got.Equal(want) {
				t.Errorf("fetched bundle differs from the CA's")
			}
			seq, ok := got.SequenceNumber()
			wantSeq, _ := want.SequenceNumber()
			if !ok || seq != wantSeq {
				t.Errorf("spiffe_sequence = %d (set %t), want %d", seq, ok, wantSeq)
			}
			hint, ok := got.RefreshHint()
			if !ok || hint != ca.DefaultRefreshHint {
				t.Errorf("spiffe_refresh_hint = %s (set %t), want %s", hint, ok, ca.DefaultRefreshHint)
			}
			if n := len(got.X509Authorities()); n != len(want.X509Authorities()) || n == 0 {
				t.Errorf("%d X.509 authorities, want %d", n, len(want.X509Authorities()))
			}
			if n := len(got.JWTAuthorities()); n != len(want.JWTAuthorities()) || n == 0 {
				t.Errorf("%d JWT authorities, want %d", n, len(want.JWTAuthorities()))
			}
		})
	}
}

// TestBundleEndpointHTTP: GET / only, the bundle as JSON; anything else is
// refused with the status that says why.
func TestBundleEndpointHTTP(t *testing.T) {
	c := newCA(t, td, nil)
	var l loaded
	l.p.Store(c)
	url := serve(t, authority.BundleEndpointConfig{CA: l.CA})
	client := peer(t, c.Bundle())
	wantBundle, err := c.Bundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path string
		status             int
		header             map[string]string
		body               string
	}{
		{"get", http.MethodGet, "", http.StatusOK, map[string]string{"Content-Type": "application/json"}, string(wantBundle)},
		{"post", http.MethodPost, "", http.StatusMethodNotAllowed, map[string]string{"Allow": "GET"},
			"method not allowed: the SPIFFE bundle endpoint answers GET only\n"},
		{"head", http.MethodHead, "", http.StatusMethodNotAllowed, map[string]string{"Allow": "GET"}, ""},
		{"another path", http.MethodGet, "bundle.json", http.StatusNotFound, nil, "not found: the SPIFFE bundle is served at /\n"},
		{"post to another path", http.MethodPost, "x", http.StatusNotFound, nil, "not found: the SPIFFE bundle is served at /\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, header, body := do(t, client, tc.method, url+tc.path)
			if status != tc.status || body != tc.body {
				t.Errorf("%s %s: %d %q\nwant %d %q", tc.method, tc.path, status, body, tc.status, tc.body)
			}
			for k, v := range tc.header {
				if got := header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestBundleEndpointNoCA: with no CA loaded there is no SVID, so the
// handshake fails; once the endpoint has one, a request while the CA is
// gone gets 503 and a message saying so.
func TestBundleEndpointNoCA(t *testing.T) {
	c := newCA(t, td, nil)
	var l loaded
	url := serve(t, authority.BundleEndpointConfig{CA: l.CA})

	_, err := fetch(t, url, c.Bundle(), endpointID)
	want := `federation: could not GET bundle: Get "` + url + `": remote error: tls: internal error`
	if err == nil || err.Error() != want {
		t.Fatalf("no CA: err = %v\nwant  %s", err, want)
	}

	l.p.Store(c)
	if _, err := fetch(t, url, c.Bundle(), endpointID); err != nil {
		t.Fatalf("CA loaded: %v", err)
	}
	l.p.Store(nil)
	status, header, body := do(t, peer(t, c.Bundle()), http.MethodGet, url)
	const wantBody = "service unavailable: this authority replica has not loaded the CA yet; try again shortly\n"
	if status != http.StatusServiceUnavailable || body != wantBody || header.Get("Retry-After") != "30" {
		t.Errorf("CA gone: %d %q (Retry-After %q)\nwant %d %q (Retry-After 30)", status, body, header.Get("Retry-After"), http.StatusServiceUnavailable, wantBody)
	}
}

// TestBundleEndpointRotation: after the CA rotates, the endpoint serves the
// new bundle, and a peer that trusts the bundle it fetched last still
// authenticates the endpoint (the self-serving https_spiffe relationship).
func TestBundleEndpointRotation(t *testing.T) {
	clk := catest.NewClock(time.Now())
	c := newCA(t, td, clk.Now)
	var l loaded
	l.p.Store(c)
	url := serve(t, authority.BundleEndpointConfig{CA: l.CA})

	first, err := fetch(t, url, c.Bundle(), endpointID)
	if err != nil {
		t.Fatal(err)
	}
	// Six days on, the next issuing CA and JWT key are due in the bundle
	// (ca.DefaultIssuerTTL less ca.DefaultPublishLead).
	clk.Add(ca.DefaultIssuerTTL - ca.DefaultPublishLead)
	rep, err := c.Rotate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	seq1, _ := first.SequenceNumber()
	if len(rep.Steps) == 0 || rep.Sequence <= seq1 {
		t.Fatalf("the CA did not rotate: %+v (sequence was %d)", rep, seq1)
	}
	second, err := fetch(t, url, first, endpointID)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Equal(c.Bundle()) {
		t.Error("after the rotation, the fetched bundle differs from the CA's")
	}
	if seq, _ := second.SequenceNumber(); seq != rep.Sequence {
		t.Errorf("spiffe_sequence = %d, want %d", seq, rep.Sequence)
	}
	if len(second.X509Authorities()) <= len(first.X509Authorities()) {
		t.Errorf("%d X.509 authorities after the rotation, %d before: want the new issuing CA added", len(second.X509Authorities()), len(first.X509Authorities()))
	}
}

// TestBundleEndpointSVID: the endpoint serves an X.509-SVID for its ID,
// keeps it until half its life, then serves a new one.
func TestBundleEndpointSVID(t *testing.T) {
	c := newCA(t, td, nil)
	var l loaded
	l.p.Store(c)
	clk := catest.NewClock(time.Now())
	var logs bytes.Buffer
	url := serve(t, authority.BundleEndpointConfig{CA: l.CA, Now: clk.Now, Log: slog.New(slog.NewTextHandler(&logs, nil))})

	leaf := func() *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, http.NoBody)
		if err != nil {
			t.Fatal(err)
		}
		res, err := peer(t, c.Bundle()).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		return res
	}
	res := leaf()
	first := res.TLS.PeerCertificates[0]
	id, _, err := x509svid.ParseAndVerify(rawChain(res), c.Bundle())
	if err != nil || id != endpointID {
		t.Fatalf("the endpoint's certificate: %v, %v; want an X.509-SVID for %s", id, err, endpointID)
	}
	if got := first.NotAfter.Sub(first.NotBefore); got != ca.DefaultX509SVIDTTL+ca.DefaultBackdate {
		t.Errorf("lifetime %s, want the CA's default %s (and its backdate)", got, ca.DefaultX509SVIDTTL)
	}
	half := first.NotBefore.Add(first.NotAfter.Sub(first.NotBefore) / 2)

	clk.Add(half.Sub(clk.Now()) - time.Second)
	if got := leaf().TLS.PeerCertificates[0]; !got.Equal(first) {
		t.Errorf("renewed before half life: serial %s, was %s", got.SerialNumber, first.SerialNumber)
	}
	clk.Add(time.Second)
	if got := leaf().TLS.PeerCertificates[0]; got.Equal(first) {
		t.Error("not renewed at half life")
	}
	if n := strings.Count(logs.String(), "issued the bundle endpoint's X.509-SVID"); n != 2 {
		t.Errorf("%d issuances logged, want 2:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Errorf("key material in the logs:\n%s", logs.String())
	}
}

// TestNewBundleEndpoint: a bad configuration is refused with every problem.
func TestNewBundleEndpoint(t *testing.T) {
	var l loaded
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name   string
		cfg    authority.BundleEndpointConfig
		want   string
		wantID string
	}{
		{name: "empty", cfg: authority.BundleEndpointConfig{},
			want: "authority: invalid bundle endpoint config: trustDomain: required\nid: required, or namespace for the default\nca: required\nlog: required"},
		{name: "default ID", cfg: authority.BundleEndpointConfig{TrustDomain: td, Namespace: "kzero-system", CA: l.CA, Log: log},
			wantID: "spiffe://cluster.local/ns/kzero-system/sa/kzero-authority"},
		{name: "ID given", cfg: authority.BundleEndpointConfig{TrustDomain: td, ID: spiffeid.RequireFromString("spiffe://cluster.local/bundle"), Namespace: "x", CA: l.CA, Log: log},
			wantID: "spiffe://cluster.local/bundle"},
		{name: "bad namespace", cfg: authority.BundleEndpointConfig{TrustDomain: td, Namespace: "a/b", CA: l.CA, Log: log},
			want: `authority: invalid bundle endpoint config: namespace: "a/b" does not make the default ID: path segment characters are limited to letters, numbers, dots, dashes, and underscores`},
		{name: "ID without a path", cfg: authority.BundleEndpointConfig{TrustDomain: td, ID: spiffeid.RequireFromString("spiffe://cluster.local"), CA: l.CA, Log: log},
			want: "authority: invalid bundle endpoint config: id: spiffe://cluster.local has no path: name the endpoint, such as spiffe://cluster.local/ns/<namespace>/sa/kzero-authority"},
		{name: "ID in another trust domain", cfg: authority.BundleEndpointConfig{TrustDomain: td, ID: spiffeid.RequireFromString("spiffe://example.org/bundle"), CA: l.CA, Log: log},
			want: "authority: invalid bundle endpoint config: id: spiffe://example.org/bundle is not in trust domain cluster.local: the CA issues SVIDs only in its own"},
		{name: "negative lifetime", cfg: authority.BundleEndpointConfig{TrustDomain: td, ID: endpointID, CA: l.CA, Log: log, Lifetime: -time.Minute},
			want: "authority: invalid bundle endpoint config: lifetime: -1m0s is negative: give a positive lifetime, or zero for the CA's default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := authority.NewBundleEndpoint(tc.cfg)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Errorf("err = %v\nwant  %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.ID().String() != tc.wantID {
				t.Errorf("ID %s, want %s", e.ID(), tc.wantID)
			}
		})
	}
}

// peer is an HTTPS client that authenticates the endpoint as a federating
// peer does, on a new connection for each request.
func peer(t *testing.T, trusted x509bundle.Source) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: tlsconfig.TLSClientConfig(trusted, tlsconfig.AuthorizeID(endpointID)), DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func do(t *testing.T, client *http.Client, method, url string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, string(body)
}

func rawChain(res *http.Response) [][]byte {
	var raw [][]byte
	for _, c := range res.TLS.PeerCertificates {
		raw = append(raw, c.Raw)
	}
	return raw
}
