package agent_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/agent"
	"kzero.dev/kzero/internal/agentapi"
	"kzero.dev/kzero/internal/ca/catest"
	"kzero.dev/kzero/internal/workloadapi"
)

// The agent attests with the token of the moment, gets the SVID of its
// node, fetches the bundle, and attests again at half life, reading the
// token kubelet has rotated meanwhile.
func TestAttestsAndRenewsAtHalfLife(t *testing.T) {
	s := newStandin(t, standinConfig{svidTTL: time.Hour})
	files := newAgentFiles(t, s)
	c := newClient(t, s, files, nil)
	run(t, c.Run)

	s.clock.blocked(t)
	if got := s.attestations(); !slices.Equal(got, []string{"token-1"}) {
		t.Fatalf("attestations with tokens %q, want token-1", got)
	}
	if n := s.bundleFetches(); n != 1 {
		t.Errorf("%d bundle fetches after the attestation, want 1", n)
	}
	first := c.Chain()
	if len(first) == 0 {
		t.Fatal("no SVID after the attestation")
	}
	if id, err := x509svid.IDFromCert(first[0]); err != nil || id != agentID {
		t.Errorf("the agent's SVID is for %v (%v), want %s", id, err, agentID)
	}
	if c.ID() != agentID {
		t.Errorf("ID() = %s, want %s", c.ID(), agentID)
	}
	// Half way through the time the agent has it (workloadapi.RenewAt).
	halfLife := workloadapi.RenewAt(first[0], s.clock.Now())

	files.setToken(t, "token-2") // kubelet rotated it
	// Until half life: only bundle fetches, every 30 s.
	for {
		d := s.clock.blocked(t)
		if !s.clock.Now().Add(d).Before(halfLife) {
			break
		}
		if d != agent.DefaultBundleRefresh {
			t.Fatalf("the client waits %s before half life, want %s until the next bundle fetch", d, agent.DefaultBundleRefresh)
		}
		s.clock.Advance(d)
	}
	if got := s.attestations(); len(got) != 1 {
		t.Fatalf("attested again before half life: %q", got)
	}
	if n := s.bundleFetches(); n < 55 {
		t.Errorf("%d bundle fetches in half an hour, want one every 30 s", n)
	}
	s.clock.Advance(halfLife.Sub(s.clock.Now()))
	s.clock.blocked(t)
	if got := s.attestations(); !slices.Equal(got, []string{"token-1", "token-2"}) {
		t.Fatalf("attestations with tokens %q, want token-1 then the rotated token-2", got)
	}
	second := c.Chain()
	if second[0].SerialNumber.Cmp(first[0].SerialNumber) == 0 || !second[0].NotAfter.After(first[0].NotAfter) {
		t.Errorf("the renewed SVID is the first one again (serial %x, not after %s)", second[0].SerialNumber, second[0].NotAfter)
	}
	if bytes.Equal(second[0].RawSubjectPublicKeyInfo, first[0].RawSubjectPublicKeyInfo) {
		t.Error("the renewed SVID certifies the same key: every attestation makes a new one")
	}
}

// The authority down for longer than the agent's SVID lives: the agent
// keeps trying, with backoff, and once the authority is back it attests
// again by itself and signs again.
func TestRecoversByItselfAfterTheAuthorityWasDownPastItsSVIDsExpiry(t *testing.T) {
	s := newStandin(t, standinConfig{svidTTL: time.Hour})
	c := newClient(t, s, newAgentFiles(t, s), nil)
	run(t, c.Run)
	s.clock.blocked(t)
	_, csr := catest.NewCSR(t)
	if _, err := c.SignX509SVID(t.Context(), webID, csr); err != nil {
		t.Fatal(err)
	}
	expiry := c.Chain()[0].NotAfter

	s.setDown(true)
	var waits []time.Duration
	for !s.clock.Now().After(expiry.Add(5 * time.Minute)) {
		d := s.clock.blocked(t)
		waits = append(waits, d)
		s.clock.Advance(d)
	}
	if _, err := c.SignX509SVID(t.Context(), webID, csr); !errors.Is(err, agent.ErrNotAttested) {
		t.Errorf("SignX509SVID with the agent's SVID expired: %v, want ErrNotAttested", err)
	}
	// After half life, the waits are the backoff: 1 s doubling to a
	// minute (bundle fetches fail in between without waiting).
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	if i := slices.Index(waits, time.Second); i < 0 || len(waits) < i+len(want) || !slices.Equal(waits[i:i+len(want)], want) {
		t.Errorf("waits while the authority is down: %v; want the backoff %v", waits, want)
	}
	if n := len(s.attestations()); n != 1 {
		t.Fatalf("%d attestations while down", n)
	}

	s.setDown(false)
	s.clock.Advance(s.clock.blocked(t))
	s.clock.blocked(t)
	if n := len(s.attestations()); n != 2 {
		t.Fatalf("%d attestations once the authority is back, want 2", n)
	}
	if leaf := c.Chain()[0]; !leaf.NotAfter.After(s.clock.Now()) {
		t.Errorf("the agent's SVID expires at %s, before now (%s)", leaf.NotAfter, s.clock.Now())
	}
	if _, err := c.SignX509SVID(t.Context(), webID, csr); err != nil {
		t.Errorf("SignX509SVID after recovering: %v", err)
	}
	if _, err := c.SignJWTSVID(t.Context(), webID, []string{"api"}); err != nil {
		t.Errorf("SignJWTSVID after recovering: %v", err)
	}
}

// When the authority no longer accepts the agent's SVID (a 401, or an
// alert at the TLS handshake), the agent attests again at once rather than
// at half life.
func TestAttestsAgainWhenTheAuthorityRefusesItsSVID(t *testing.T) {
	for _, tc := range []struct {
		name   string
		refuse func(s *standin)
		check  func(t *testing.T, err error)
	}{
		{"401", func(s *standin) { s.reject = 1 }, func(t *testing.T, err error) {
			if ae, ok := errors.AsType[*agent.AuthorityError](err); !ok || ae.Status != 401 {
				t.Fatalf("SignX509SVID refused: %v, want an *AuthorityError of 401", err)
			}
		}},
		{"TLS alert", func(s *standin) { s.rejectTLS = 1 }, func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "remote error: tls: bad certificate") {
				t.Fatalf("SignX509SVID refused: %v, want the server's TLS alert", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStandin(t, standinConfig{})
			c := newClient(t, s, newAgentFiles(t, s), nil)
			run(t, c.Run)
			s.clock.blocked(t)
			s.mu.Lock()
			tc.refuse(s)
			s.mu.Unlock()
			_, csr := catest.NewCSR(t)
			_, err := c.SignX509SVID(t.Context(), webID, csr)
			tc.check(t, err)
			eventually(t, "a new attestation", func() bool { return len(s.attestations()) == 2 })
			if _, err := c.SignX509SVID(t.Context(), webID, csr); err != nil {
				t.Errorf("SignX509SVID after attesting again: %v", err)
			}
		})
	}
}

// The agent attests the authority: a server that presents another SPIFFE
// ID, or a certificate the trust domain's authorities do not verify, gets
// no token.
func TestRefusesAServerThatIsNotTheAuthority(t *testing.T) {
	impostor := spiffeid.RequireFromString("spiffe://cluster.local/ns/kzero-system/sa/impostor")
	for _, tc := range []struct {
		name string
		// setup returns the stand-in to call and the bundle file to trust.
		setup func(t *testing.T) (*standin, agentFiles)
		want  func(s *standin, f agentFiles) string
	}{
		{
			name: "another SPIFFE ID",
			setup: func(t *testing.T) (*standin, agentFiles) {
				s := newStandin(t, standinConfig{id: impostor})
				return s, newAgentFiles(t, s)
			},
			want: func(s *standin, _ agentFiles) string {
				return `agent: Post "` + s.url + agentapi.AttestPath + `": agent: the server is not the authority: it presents ` + impostor.String() +
					", not " + authorityID.String() + ": check the authority's URL and SPIFFE ID"
			},
		},
		{
			name: "a CA the bundle file does not hold",
			setup: func(t *testing.T) (*standin, agentFiles) {
				s := newStandin(t, standinConfig{})
				other := newStandin(t, standinConfig{})
				return s, newAgentFiles(t, other)
			},
			want: func(s *standin, _ agentFiles) string {
				return `agent: Post "` + s.url + agentapi.AttestPath + `": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority`
			},
		},
		{
			name: "no bundle file",
			setup: func(t *testing.T) (*standin, agentFiles) {
				s := newStandin(t, standinConfig{})
				f := newAgentFiles(t, s)
				f.bundle += ".missing"
				return s, f
			},
			want: func(s *standin, f agentFiles) string {
				return `agent: Post "` + s.url + agentapi.AttestPath + `": x509svid: could not get X509 bundle: agent: no X.509 authority of cluster.local to verify the authority with: ` +
					`the bundle file does not load (open ` + f.bundle + `: no such file or directory) and no bundle has been fetched yet`
			},
		},
		{
			name: "a bundle file with no end",
			setup: func(t *testing.T) (*standin, agentFiles) {
				s := newStandin(t, standinConfig{})
				f := newAgentFiles(t, s)
				f.bundle = "/dev/zero"
				return s, f
			},
			want: func(s *standin, _ agentFiles) string {
				return `agent: Post "` + s.url + agentapi.AttestPath + `": x509svid: could not get X509 bundle: agent: no X.509 authority of cluster.local to verify the authority with: ` +
					`the bundle file does not load (/dev/zero is over 2048 KiB) and no bundle has been fetched yet`
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, files := tc.setup(t)
			c := newClient(t, s, files, nil)
			err := c.Attest(t.Context())
			if err == nil {
				t.Fatal("attested to a server that is not the authority")
			}
			t.Logf("refused: %v", err)
			if tc.name == "another SPIFFE ID" && !errors.Is(err, agent.ErrWrongAuthority) {
				t.Errorf("error %v is not ErrWrongAuthority", err)
			}
			if want := tc.want(s, files); err.Error() != want {
				t.Errorf("error\n%v\nwant\n%s", err, want)
			}
			if got := s.attestations(); len(got) != 0 {
				t.Errorf("the server got the token: %q", got)
			}
			if c.Chain() != nil {
				t.Error("the client keeps an SVID")
			}
		})
	}
}

// The client is the Workload API's Signer: an X.509-SVID for a workload's
// CSR, a JWT-SVID, both with the agent's SVID as the client certificate,
// and the authority's refusals with its message.
func TestSignerRoundTrips(t *testing.T) {
	s := newStandin(t, standinConfig{})
	c := newClient(t, s, newAgentFiles(t, s), nil)
	key, csr := catest.NewCSR(t)
	if _, err := c.SignX509SVID(t.Context(), webID, csr); !errors.Is(err, agent.ErrNotAttested) {
		t.Fatalf("SignX509SVID before attesting: %v, want ErrNotAttested", err)
	}
	if _, err := c.SignJWTSVID(t.Context(), webID, []string{"api"}); !errors.Is(err, agent.ErrNotAttested) {
		t.Fatalf("SignJWTSVID before attesting: %v, want ErrNotAttested", err)
	}
	if err := c.Attest(t.Context()); err != nil {
		t.Fatal(err)
	}

	chain, err := c.SignX509SVID(t.Context(), webID, csr)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := x509svid.ParseRaw(bytes.Join(chain, nil), keyDER)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, s.ca.Bundle(), x509svid.WithTime(s.clock.Now())); err != nil || svid.ID != webID {
		t.Errorf("the workload's SVID is for %s and verifies with %v; want %s, verified", svid.ID, err, webID)
	}

	token, err := c.SignJWTSVID(t.Context(), webID, []string{"api", "db"})
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := jwtsvid.ParseAndValidate(token, s.ca.Bundle(), []string{"db"})
	if err != nil || jwt.ID != webID || !slices.Equal(jwt.Audience, []string{"api", "db"}) {
		t.Errorf("the JWT-SVID: %v, %v", jwt, err)
	}
	want := []string{
		agentID.String() + " " + agentapi.X509SVIDPath + " " + webID.String(),
		agentID.String() + " " + agentapi.JWTSVIDPath + " " + webID.String(),
	}
	if got := s.calls(); !slices.Equal(got, want) {
		t.Errorf("the authority was asked\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	other := spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/other")
	s.mu.Lock()
	s.refuse[other.String()] = "no running pod of node node-a runs as service account shop/other"
	s.mu.Unlock()
	for name, call := range map[string]func() error{
		"x509": func() error { _, err := c.SignX509SVID(t.Context(), other, csr); return err },
		"jwt":  func() error { _, err := c.SignJWTSVID(t.Context(), other, []string{"api"}); return err },
	} {
		err := call()
		ae, ok := errors.AsType[*agent.AuthorityError](err)
		if !ok || ae.Status != 403 || ae.Message != "no running pod of node node-a runs as service account shop/other" {
			t.Errorf("%s: refused with %#v, want an *AuthorityError 403 with the authority's message", name, err)
			continue
		}
		path := agentapi.X509SVIDPath
		if name == "jwt" {
			path = agentapi.JWTSVIDPath
		}
		if want := "agent: the authority answered " + path + " with 403 Forbidden: no running pod of node node-a runs as service account shop/other"; err.Error() != want {
			t.Errorf("%s: error %q, want %q", name, err, want)
		}
	}
}

// Run keeps the Workload API's bundles equal to the authority's, fetched
// every 30 s.
func TestBundleSyncSetsTheWorkloadAPIsBundles(t *testing.T) {
	s := newStandin(t, standinConfig{})
	bundles := &workloadapi.Bundles{}
	c := newClient(t, s, newAgentFiles(t, s), bundles)
	run(t, c.Run)
	s.clock.blocked(t)
	w := serveWorkloadAPI(t, c, bundles, s.clock.Now)

	got := w.x509Bundle(t)
	if want := s.ca.Bundle().X509Authorities(); !sameCerts(got, want) {
		t.Errorf("the Workload API serves %d X.509 authorities, not the authority's %d", len(got), len(want))
	}
	if keys := w.jwtKeys(t); len(keys) != len(s.ca.Bundle().JWTAuthorities()) || len(keys) == 0 {
		t.Errorf("the Workload API serves %d JWT authorities, want the authority's %d", len(keys), len(s.ca.Bundle().JWTAuthorities()))
	}

	// The authority's bundle changes; 30 s later the Workload API has it.
	extra := newStandin(t, standinConfig{}).ca.Bundle().X509Authorities()[0]
	s.mu.Lock()
	s.extraCAs = append(s.extraCAs, extra)
	s.mu.Unlock()
	if d := s.clock.blocked(t); d != agent.DefaultBundleRefresh {
		t.Errorf("the client waits %s for the next fetch, want %s", d, agent.DefaultBundleRefresh)
	}
	s.clock.Advance(agent.DefaultBundleRefresh)
	s.clock.blocked(t)
	got = w.x509Bundle(t)
	if !slices.ContainsFunc(got, extra.Equal) {
		t.Errorf("the Workload API's bundle lacks the authority's new X.509 authority after a refresh")
	}
}

func sameCerts(a, b []*x509.Certificate) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(c *x509.Certificate) bool { return !slices.ContainsFunc(b, c.Equal) })
}

// The bundle file is read again for every connection: once kubelet has
// written it, the agent trusts what it holds, with no restart.
func TestReadsTheBundleFileForEveryConnection(t *testing.T) {
	s := newStandin(t, standinConfig{})
	files := newAgentFiles(t, s)
	pemBytes, err := os.ReadFile(files.bundle)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.bundle, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s, files, nil)
	if err := c.Attest(t.Context()); err == nil || !strings.Contains(err.Error(), "no X.509 authority of cluster.local to verify the authority with") {
		t.Fatalf("Attest with an empty bundle file: %v", err)
	}
	if err := os.WriteFile(files.bundle, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Attest(t.Context()); err != nil {
		t.Fatalf("Attest once the bundle file holds the authorities: %v", err)
	}
}

func TestNewClientChecksTheConfig(t *testing.T) {
	ok := agent.ClientConfig{
		URL: "https://10.96.0.7:8445", TrustDomain: td, NodeName: node, AuthorityID: authorityID,
		BundleFile: "/b", TokenFile: "/t", Bundles: &workloadapi.Bundles{}, Log: testLog(t),
	}
	for _, tc := range []struct {
		name   string
		change func(*agent.ClientConfig)
		want   string
	}{
		{"valid", func(*agent.ClientConfig) {}, ""},
		{"empty", func(c *agent.ClientConfig) { *c = agent.ClientConfig{} }, "agent: invalid client config: url: required\n" +
			"trustDomain: required\nnodeName: required\nauthorityID: required\nbundleFile: required\ntokenFile: required\nbundles: required\nlog: required"},
		{"http", func(c *agent.ClientConfig) { c.URL = "http://10.96.0.7:8445" },
			`agent: invalid client config: url: "http://10.96.0.7:8445": want https://host:port and nothing more`},
		{"a path", func(c *agent.ClientConfig) { c.URL = "https://authority/v1" },
			`agent: invalid client config: url: "https://authority/v1": want https://host:port and nothing more`},
		{"a node name with a slash", func(c *agent.ClientConfig) { c.NodeName = "a/b" },
			`agent: invalid client config: nodeName: "a/b" is not a node name: it has a slash`},
		{"a node name that makes no SPIFFE ID", func(c *agent.ClientConfig) { c.NodeName = ".." },
			`agent: invalid client config: nodeName: ".." makes no SPIFFE ID: path cannot contain dot segments`},
		{"an authority of another trust domain", func(c *agent.ClientConfig) {
			c.AuthorityID = spiffeid.RequireFromString("spiffe://example.org/authority")
		},
			"agent: invalid client config: authorityID: spiffe://example.org/authority is not in trust domain cluster.local"},
		{"negative refresh", func(c *agent.ClientConfig) { c.BundleRefresh = -time.Second },
			"agent: invalid client config: bundleRefresh: must not be negative, got -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.change(&cfg)
			_, err := agent.NewClient(cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("NewClient: %v\nwant %s", err, tc.want)
			}
		})
	}
}

// The files the agent reads and the authority's answers are read through
// limits: a token file or an answer with no end is refused, in bounded
// memory, saying what it should have been.
func TestReadsThroughLimits(t *testing.T) {
	s := newStandin(t, standinConfig{})
	files := newAgentFiles(t, s)
	noEnd := files
	noEnd.token = "/dev/zero"
	want := "agent: read the service account token: /dev/zero is over 64 KiB: it is the projected token of audience kzero kubelet writes"
	if err := newClient(t, s, noEnd, nil).Attest(t.Context()); err == nil || err.Error() != want {
		t.Errorf("Attest with the token file /dev/zero: %v\nwant %s", err, want)
	}

	c := newClient(t, s, files, nil)
	if err := c.Attest(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.padAnswers = true
	s.mu.Unlock()
	want = "agent: the authority's answer to /v1/agent/jwtsvid is over 1024 KiB: it is not what agentapi says (is the URL the authority's agent API?)"
	if _, err := c.SignJWTSVID(t.Context(), webID, []string{"db"}); err == nil || err.Error() != want {
		t.Errorf("an answer of 2 MiB: %v\nwant %s", err, want)
	}
}
