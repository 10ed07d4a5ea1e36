package workloadapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"
)

var partnerTD = spiffeid.RequireTrustDomainFromString("partner.example")

func TestFetchX509ContextGivesTheAttestedIDsSVID(t *testing.T) {
	e := start(t, nil)
	x509Ctx, err := e.client(t).FetchX509Context(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(x509Ctx.SVIDs) != 1 {
		t.Fatalf("got %d SVIDs, want 1", len(x509Ctx.SVIDs))
	}
	svid := x509Ctx.DefaultSVID()
	if svid.ID != webID {
		t.Fatalf("SVID for %s, want %s", svid.ID, webID)
	}
	id, _, err := x509svid.Verify(svid.Certificates, x509Ctx.Bundles, x509svid.WithTime(e.clock.Now()))
	if err != nil || id != webID {
		t.Fatalf("x509svid.Verify against the served bundle: %s, %v", id, err)
	}
	key, ok := svid.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Fatalf("private key %T, want ECDSA P-256", svid.PrivateKey)
	}
	want, err := e.ca.Bundle().X509Bundle().GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	got, err := x509Ctx.Bundles.GetX509BundleForTrustDomain(td)
	if err != nil || !got.Equal(want) {
		t.Fatalf("served bundle differs from the CA's: %v", err)
	}
	if n := x509Ctx.Bundles.Len(); n != 1 {
		t.Fatalf("%d bundles, want the trust domain's only", n)
	}
}

// watcher collects what go-spiffe's watch gives.
type watcher struct {
	updates chan *spiffewl.X509Context
	errs    chan error
}

func (w *watcher) OnX509ContextUpdate(c *spiffewl.X509Context) { w.updates <- c }
func (w *watcher) OnX509ContextWatchError(err error)           { w.errs <- err }

func TestWatchX509ContextGetsRotationsAndBundleChangesOnOneStream(t *testing.T) {
	e := start(t, nil)
	client := e.client(t)
	w := &watcher{updates: make(chan *spiffewl.X509Context, 10), errs: make(chan error, 10)}
	ctx, cancel := context.WithCancel(t.Context())
	watched := make(chan error, 1)
	go func() { watched <- client.WatchX509Context(ctx, w) }()

	first := within(t, w.updates, "first X.509 context")
	// Past half life, the cache renews the SVID and pushes it.
	e.clock.Add(31 * time.Minute)
	second := within(t, w.updates, "rotated X.509 context")
	s1, s2 := first.DefaultSVID(), second.DefaultSVID()
	if s1.Certificates[0].SerialNumber.Cmp(s2.Certificates[0].SerialNumber) == 0 {
		t.Fatal("the pushed SVID is the first one again")
	}
	if s1.PrivateKey.(*ecdsa.PrivateKey).Equal(s2.PrivateKey) {
		t.Fatal("the renewed SVID has the old key")
	}
	if !s2.Certificates[0].NotBefore.After(s1.Certificates[0].NotBefore) {
		t.Fatalf("renewed NotBefore %s is not after %s", s2.Certificates[0].NotBefore, s1.Certificates[0].NotBefore)
	}
	if _, _, err := x509svid.Verify(s2.Certificates, second.Bundles, x509svid.WithTime(e.clock.Now())); err != nil {
		t.Fatalf("rotated SVID: %v", err)
	}

	// A federated bundle arrives, with the same SVID.
	partner := newCA(t, partnerTD, e.clock.Now)
	if err := e.bundles.Set(e.ca.Bundle(), partner.Bundle()); err != nil {
		t.Fatal(err)
	}
	third := within(t, w.updates, "X.509 context with the federated bundle")
	if !third.DefaultSVID().Certificates[0].Equal(s2.Certificates[0]) {
		t.Fatal("a bundle change changed the SVID")
	}
	if !third.Bundles.Has(partnerTD) || !third.Bundles.Has(td) {
		t.Fatalf("bundles after the change: %v, want %s and %s", bundleNames(third.Bundles), td, partnerTD)
	}

	// It goes again: the client must drop it.
	if err := e.bundles.Set(e.ca.Bundle()); err != nil {
		t.Fatal(err)
	}
	fourth := within(t, w.updates, "X.509 context without the federated bundle")
	if fourth.Bundles.Has(partnerTD) {
		t.Fatal("the federated bundle is still served")
	}

	select {
	case err := <-w.errs:
		t.Fatalf("the stream broke (the client would reconnect): %v", err)
	default:
	}
	if n := e.signer.x509.Load(); n != 2 {
		t.Fatalf("%d signatures, want 2 (the first and the renewal)", n)
	}
	cancel()
	<-watched
}

func bundleNames(s *x509bundle.Set) []string {
	var out []string
	for _, b := range s.Bundles() {
		out = append(out, b.TrustDomain().Name())
	}
	slices.Sort(out)
	return out
}

func TestFetchX509BundlesStreamsEveryChange(t *testing.T) {
	e := start(t, nil)
	stream, err := e.raw(t).FetchX509Bundles(withHeader(t.Context()), &workload.X509BundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	partner := newCA(t, partnerTD, e.clock.Now)
	for i, set := range [][]string{{td.IDString()}, {td.IDString(), partnerTD.IDString()}, {td.IDString()}} {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		var got []string
		for id, der := range resp.GetBundles() {
			b, err := x509bundle.ParseRaw(spiffeid.RequireTrustDomainFromString(id), der)
			if err != nil || b.Empty() {
				t.Fatalf("message %d: bundle of %s: %v", i, id, err)
			}
			got = append(got, id)
		}
		slices.Sort(got)
		if !slices.Equal(got, set) {
			t.Fatalf("message %d: bundles of %v, want %v", i, got, set)
		}
		switch i {
		case 0:
			err = e.bundles.Set(e.ca.Bundle(), partner.Bundle())
		case 1:
			err = e.bundles.Set(e.ca.Bundle())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestBurstOfCallersCostsOneSignature(t *testing.T) {
	const callers = 50
	gate := make(chan struct{})
	var attested atomic.Int64
	e := start(t, func(c *Config) {
		c.MaxConnsPerProcess = callers // this test's process is them all
		// The signature waits until every caller has been attested, so
		// that all of them ask while it is under way.
		c.Attestor = AttestorFunc(func(ctx context.Context, cl Caller) (spiffeid.ID, error) {
			if attested.Add(1) == callers {
				close(gate)
			}
			return selfAttestor(ctx, cl)
		})
	})
	e.signer.gate = gate
	clients := make([]*spiffewl.Client, callers)
	for i := range clients {
		clients[i] = e.client(t)
	}
	svids := make([]*x509svid.SVID, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() { svids[i], errs[i] = c.FetchX509SVID(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		if !svids[i].Certificates[0].Equal(svids[0].Certificates[0]) {
			t.Fatalf("caller %d got another SVID", i)
		}
	}
	if n := e.signer.x509.Load(); n != 1 {
		t.Fatalf("%d callers cost %d signatures, want 1", callers, n)
	}
}

func TestServerSeesTheCallersCredentials(t *testing.T) {
	seen := make(chan Caller, 1)
	e := start(t, func(c *Config) {
		c.Attestor = AttestorFunc(func(ctx context.Context, cl Caller) (spiffeid.ID, error) {
			select {
			case seen <- cl:
			default:
			}
			return selfAttestor(ctx, cl)
		})
	})
	if _, err := e.client(t).FetchX509SVID(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := within(t, seen, "caller")
	want := Caller{PID: int32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	if got != want {
		t.Fatalf("caller %+v, want this process %+v", got, want)
	}
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPrivateKeysAreNeverLogged(t *testing.T) {
	logs := &lockedBuffer{}
	e := start(t, func(c *Config) {
		c.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	c := e.client(t)
	first, err := c.FetchX509SVID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(31 * time.Minute)
	second := first
	for deadline := time.Now().Add(10 * time.Second); second.Certificates[0].Equal(first.Certificates[0]); {
		if time.Now().After(deadline) {
			t.Fatal("not renewed after 10 s")
		}
		if second, err = c.FetchX509SVID(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"X.509-SVID signed"`) || !strings.Contains(out, webID.String()) {
		t.Fatalf("the signatures were not logged:\n%s", out)
	}
	for _, s := range []*x509svid.SVID{first, second} {
		der, err := x509.MarshalPKCS8PrivateKey(s.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, enc := range []string{base64.StdEncoding.EncodeToString(der), hex.EncodeToString(der), string(der)} {
			if strings.Contains(out, enc[:40]) {
				t.Fatalf("a private key is in the log:\n%s", out)
			}
		}
	}
}
