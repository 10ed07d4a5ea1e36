package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/agentapi"
	"kzero.dev/kzero/internal/workloadapi"
)

// Run attests, attests again at half life of each SVID, and fetches the
// bundle into Bundles right after every attestation and every
// BundleRefresh, until ctx ends; then it returns ctx.Err(). A failed
// attestation is logged and tried again after MinBackoff, doubling up to
// MaxBackoff, for ever: an agent whose SVID expired while the authority
// was down attests again by itself once it is back. The agent attests at
// once, too, when the authority refuses its SVID (a 401, or a TLS alert at
// the handshake). A failed fetch of the bundle is logged and the last one
// kept. Run must be called once.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("agent: Client.Run was called twice: make a new Client")
	}
	backoff := MinBackoff
	var nextBundle time.Time // zero: fetch at once
	for {
		if c.due() {
			if err := c.Attest(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				c.attestFailed(err, backoff)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-c.cfg.After(backoff):
				}
				backoff = min(2*backoff, MaxBackoff)
				continue
			}
			backoff = MinBackoff
			nextBundle = time.Time{}
		}
		if !c.cfg.Now().Before(nextBundle) {
			if err := c.syncBundle(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				c.cfg.Log.Warn("fetching the trust bundle from the authority failed; keeping the last one", "error", err,
					"retryIn", c.cfg.BundleRefresh)
			}
			nextBundle = c.cfg.Now().Add(c.cfg.BundleRefresh)
		}
		now := c.cfg.Now()
		wait := nextBundle.Sub(now)
		if renew, ok := c.renewAt(); ok {
			wait = min(wait, renew.Sub(now))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.cfg.After(max(wait, 0)):
		case <-c.wake:
		}
	}
}

// due reports whether the agent must attest now: it has no SVID, the
// authority refused it, or it is past half its life.
func (c *Client) due() bool {
	renew, ok := c.renewAt()
	c.mu.Lock()
	stale := c.stale
	c.mu.Unlock()
	return !ok || stale || !c.cfg.Now().Before(renew)
}

// renewAt is when the agent's SVID is renewed (workloadapi.RenewAt: half
// way through the time the agent has it); false when there is none.
func (c *Client) renewAt() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.svid == nil {
		return time.Time{}, false
	}
	return c.renew, true
}

// attestFailed logs a failed attestation, saying what the workloads lose.
func (c *Client) attestFailed(err error, retry time.Duration) {
	leaf := c.Chain()
	switch {
	case leaf == nil:
		c.cfg.Log.Warn("attestation to the authority failed; retrying by itself: until it works, workloads get no SVID",
			"error", err, "retryIn", retry)
	case !c.cfg.Now().Before(leaf[0].NotAfter):
		c.cfg.Log.Error("attestation to the authority failed and the agent's SVID has expired; retrying by itself: until it works, workloads get no new SVID",
			"error", err, "retryIn", retry, "expired", leaf[0].NotAfter)
	default:
		c.cfg.Log.Warn("attestation to the authority failed; retrying by itself, with the current SVID until it expires",
			"error", err, "retryIn", retry, "notAfter", leaf[0].NotAfter)
	}
}

// refused tells Run that the authority refused the agent's SVID: it
// attests again at once.
func (c *Client) refused() {
	c.mu.Lock()
	c.stale = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Attest proves the agent to the authority once: it reads the token file,
// makes a new P-256 key and a CSR for it, and posts them to
// agentapi.AttestPath without a client certificate; the X.509-SVID it
// gets must be for the agent's ID and verify against the trust domain's
// X.509 authorities. It then becomes the SVID of every other call. Run
// calls it; an error leaves the previous SVID in place.
func (c *Client) Attest(ctx context.Context) error {
	raw, err := readFile(c.cfg.TokenFile, maxTokenFile)
	if err != nil {
		return fmt.Errorf("agent: read the service account token: %w: it is the projected token of audience %s kubelet writes", err, agentapi.TokenAudience)
	}
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return fmt.Errorf("agent: the service account token file %s is empty: it is the projected token of audience %s kubelet writes", c.cfg.TokenFile, agentapi.TokenAudience)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("agent: make a key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return fmt.Errorf("agent: make a CSR: %w", err)
	}
	var resp agentapi.AttestResponse
	if err := c.call(ctx, c.tls, agentapi.AttestPath, agentapi.AttestRequest{Token: token, CSR: csr}, &resp); err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("agent: encode the key: %w", err)
	}
	svid, err := x509svid.ParseRaw(bytes.Join(resp.Chain, nil), keyDER)
	if err != nil {
		return fmt.Errorf("agent: the authority's answer is not an X.509-SVID for the agent's key: %w", err)
	}
	if svid.ID != c.id {
		return fmt.Errorf("agent: the authority issued an X.509-SVID for %s, not for this agent, %s", svid.ID, c.id)
	}
	now := c.cfg.Now()
	if _, _, err := x509svid.Verify(svid.Certificates, bundleSource{c}, x509svid.WithTime(now)); err != nil {
		return fmt.Errorf("agent: the X.509-SVID the authority issued does not verify against the trust domain's authorities: %w", err)
	}
	renew := workloadapi.RenewAt(svid.Certificates[0], now)
	c.mu.Lock()
	c.svid, c.stale, c.renew = svid, false, renew
	c.mu.Unlock()
	// Connections made with the previous SVID go; new ones present this.
	c.mtlsTrans.CloseIdleConnections()
	leaf := svid.Certificates[0]
	c.cfg.Log.Info("attested to the authority", "spiffeID", svid.ID.String(), "serial", leaf.SerialNumber.Text(16),
		"notAfter", leaf.NotAfter, "renewAt", renew)
	return nil
}

// syncBundle fetches the trust domain's bundle from the authority, keeps
// its X.509 authorities to verify the authority with, and sets it into
// Bundles.
func (c *Client) syncBundle(ctx context.Context) error {
	if err := c.ready(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.JoinPath(agentapi.BundlePath).String(), nil)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	resp, err := c.mtls.Do(req)
	if err != nil {
		c.checkRefusal(err)
		return fmt.Errorf("agent: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := readAnswer(resp.Body, agentapi.BundlePath)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return c.answerError(agentapi.BundlePath, resp.StatusCode, body, true)
	}
	b, err := spiffebundle.Parse(c.cfg.TrustDomain, body)
	if err != nil {
		return fmt.Errorf("agent: the authority's bundle: %w", err)
	}
	if len(b.X509Authorities()) == 0 {
		return fmt.Errorf("agent: the authority's bundle of %s has no X.509 authority: keeping the last one", c.cfg.TrustDomain.Name())
	}
	if err := c.cfg.Bundles.Set(b); err != nil {
		return fmt.Errorf("agent: the authority's bundle: %w", err)
	}
	c.mu.Lock()
	c.fetched = b.X509Bundle()
	c.mu.Unlock()
	return nil
}

// readFile reads the file at path through a limit: at most max bytes,
// whatever its size says.
func readFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // the agent's own configured file
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over %d KiB", path, max>>10)
	}
	return b, nil
}
