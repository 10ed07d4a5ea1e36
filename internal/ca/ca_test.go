package ca_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
	"kzero.dev/kzero/internal/filestore"
)

func TestBundleIsASPIFFEBundle(t *testing.T) {
	c := newCA(t, ca.Config{RefreshHint: 2 * time.Minute, PublishLead: 2 * time.Hour})
	doc, err := c.Bundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct {
		Keys []struct {
			Use string   `json:"use"`
			Kid string   `json:"kid"`
			Kty string   `json:"kty"`
			Crv string   `json:"crv"`
			X5c []string `json:"x5c"`
		} `json:"keys"`
		Sequence    *uint64 `json:"spiffe_sequence"`
		RefreshHint *int64  `json:"spiffe_refresh_hint"`
	}
	if err := json.Unmarshal(doc, &jwks); err != nil {
		t.Fatal(err)
	}
	if jwks.Sequence == nil || *jwks.Sequence != 1 {
		t.Errorf("spiffe_sequence = %v, want 1 after the first start", jwks.Sequence)
	}
	if jwks.RefreshHint == nil || *jwks.RefreshHint != 120 {
		t.Errorf("spiffe_refresh_hint = %v, want 120 (seconds)", jwks.RefreshHint)
	}
	uses := map[string]int{}
	for _, k := range jwks.Keys {
		uses[k.Use]++
		switch k.Use {
		case "x509-svid":
			if len(k.X5c) != 1 || k.Kid != "" {
				t.Errorf("x509-svid entry: %d certificates and kid %q, want exactly one and none", len(k.X5c), k.Kid)
			}
		case "jwt-svid":
			if k.Kid == "" || k.Kty != "EC" || k.Crv != "P-256" {
				t.Errorf("jwt-svid entry: kid %q kty %q crv %q, want a kid and an EC P-256 key", k.Kid, k.Kty, k.Crv)
			}
		default:
			t.Errorf("entry with use %q", k.Use)
		}
	}
	// One root and one issuing CA; one JWT key.
	if uses["x509-svid"] != 2 || uses["jwt-svid"] != 1 {
		t.Errorf("entries by use = %v, want 2 x509-svid and 1 jwt-svid", uses)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca", "state.json")
	st, err := filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	first := newCA(t, ca.Config{Store: st})
	before, _ := first.Bundle().Marshal()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode = %04o, want 0600", fi.Mode().Perm())
	}

	st, err = filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	second := newCA(t, ca.Config{Store: st})
	if !first.Bundle().Equal(second.Bundle()) {
		after, _ := second.Bundle().Marshal()
		t.Fatalf("bundle changed across a restart:\n%s\n%s", before, after)
	}
	// The restarted CA issues under the same bundle.
	svid, err := second.IssueX509SVID(ca.X509Request{ID: mustID(t, "spiffe://cluster.local/a"), CSR: csrFor(t, p256(t), nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svid.Certificates[0].Verify(verifyOpts(first, time.Now())); err != nil {
		t.Errorf("leaf from the restarted CA does not verify with the first CA's roots: %v", err)
	}
}

func TestNewRefusesBadStore(t *testing.T) {
	good := catest.NewMemStore(nil)
	newCA(t, ca.Config{Store: good})
	doc := string(good.Doc())

	for _, tc := range []struct {
		name    string
		store   ca.Store
		td      spiffeid.TrustDomain
		wantErr string
	}{
		{"unreadable", &failingStore{err: os.ErrPermission}, td,
			"ca: cannot read the CA's store, refusing to start: permission denied"},
		{"not JSON", catest.NewMemStore([]byte("{")), td,
			"ca: stored state does not parse: unexpected EOF"},
		{"unknown field", catest.NewMemStore([]byte(strings.Replace(doc, `"version"`, `"versoin"`, 1))), td, //nolint:misspell // a deliberate typo
			`ca: stored state does not parse: json: unknown field "versoin"`}, //nolint:misspell // a deliberate typo
		{"empty record", catest.NewMemStore([]byte(`{"version": 1, "trustDomain": "cluster.local", "roots": [null]}`)), td,
			"ca: stored state: roots[0]: empty record"},
		{"future version", catest.NewMemStore([]byte(strings.Replace(doc, `"version": 1`, `"version": 2`, 1))), td,
			"ca: stored state has version 2; this kzero reads version 1"},
		{"other trust domain", catest.NewMemStore([]byte(doc)), spiffeid.RequireTrustDomainFromString("prod.example"),
			`ca: stored state is for trust domain "cluster.local", not "prod.example": point the CA at the right store or trust domain`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.New(context.Background(), ca.Config{TrustDomain: tc.td, Store: tc.store})
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("error =\n  %v\nwant\n  %s", err, tc.wantErr)
			}
		})
	}
}

func TestRotateKeepsOldStateWhenSaveFails(t *testing.T) {
	clk := newClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	store := catest.NewMemStore(nil)
	c := newCA(t, ca.Config{Store: store, Now: clk.Now})
	before := c.Bundle()
	saved := string(store.Doc())
	store.FailWith(errors.New("disk full"))
	clk.Add(ca.DefaultIssuerTTL) // everything is due
	if _, err := c.Rotate(context.Background()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Rotate error = %v, want the save error", err)
	}
	if !c.Bundle().Equal(before) {
		t.Error("the bundle changed although the new state was not saved")
	}
	if string(store.Doc()) != saved {
		t.Error("stored state changed")
	}
	store.FailWith(nil)
	rep, err := c.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Steps) == 0 || c.Bundle().Equal(before) {
		t.Errorf("after the store recovered, Rotate did nothing: %+v", rep)
	}
}

func TestRecoversAfterLongOutage(t *testing.T) {
	clk := newClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	store := catest.NewMemStore(nil)
	newCA(t, ca.Config{Store: store, Now: clk.Now})
	// The CA was down for longer than its issuing CA lived.
	clk.Add(2 * ca.DefaultIssuerTTL)
	c := newCA(t, ca.Config{Store: store, Now: clk.Now})
	svid, err := c.IssueX509SVID(ca.X509Request{ID: mustID(t, "spiffe://cluster.local/a"), CSR: csrFor(t, p256(t), nil)})
	if err != nil {
		t.Fatalf("IssueX509SVID after the outage: %v", err)
	}
	if _, err := svid.Certificates[0].Verify(verifyOpts(c, clk.Now())); err != nil {
		t.Errorf("leaf does not verify: %v", err)
	}
	if _, err := c.IssueJWTSVID(ca.JWTRequest{ID: svid.ID, Audience: []string{"x"}}); err != nil {
		t.Errorf("IssueJWTSVID after the outage: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	_, err := ca.New(context.Background(), ca.Config{
		KeyAlgorithm: "RSA1024",
		IssuerTTL:    time.Hour, PublishLead: 2 * time.Minute, RefreshHint: 5 * time.Minute,
		X509SVIDTTL: 2 * time.Hour,
	})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	wantLines := []string{
		"ca: invalid config: trustDomain: required",
		"store: required",
		`keyAlgorithm: "RSA1024" is not one of ECDSAP256, ECDSAP384`,
		"publishLead: 2m0s is shorter than refreshHint 5m0s: peers would not see a new CA before it signs",
		"issuerTTL: 1h0m0s leaves no signing time: it must exceed publishLead + x509SVIDMaxTTL = 24h2m0s",
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("error =\n%s\nwant\n%s", err, strings.Join(wantLines, "\n"))
	}
}

type failingStore struct{ err error }

func (f *failingStore) Load(context.Context) ([]byte, error) { return nil, f.err }
func (f *failingStore) Save(context.Context, []byte) error   { return f.err }
