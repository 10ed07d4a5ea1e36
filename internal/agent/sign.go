package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/agentapi"
)

// ErrNotAttested is returned by the calls that need the agent's SVID while
// it has none that is valid now: before the first attestation, or once it
// expired with the authority unreachable. Run attests again by itself.
var ErrNotAttested = errors.New("agent: not attested to the authority (no valid agent SVID yet, or it expired): the agent is retrying by itself")

// AuthorityError is the authority answering a call with a status other
// than 200 OK. Message is the authority's agentapi.Error, what was wrong
// and what to do; empty when the answer had none.
type AuthorityError struct {
	// Path is the call's, one of agentapi's.
	Path string
	// Status is the HTTP status code.
	Status int
	// Message is the authority's message.
	Message string
}

func (e *AuthorityError) Error() string {
	s := fmt.Sprintf("agent: the authority answered %s with %d %s", e.Path, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// SignX509SVID asks the authority to certify the key of csrDER as an
// X.509-SVID for id, a workload of the agent's node; it implements
// workloadapi.Signer. It returns ErrNotAttested without asking while the
// agent has no valid SVID, and an *AuthorityError when the authority
// refuses.
func (c *Client) SignX509SVID(ctx context.Context, id spiffeid.ID, csrDER []byte) ([][]byte, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	var resp agentapi.X509SVIDResponse
	if err := c.call(ctx, c.mtls, agentapi.X509SVIDPath, agentapi.X509SVIDRequest{ID: id.String(), CSR: csrDER}, &resp); err != nil {
		return nil, err
	}
	if len(resp.Chain) == 0 {
		return nil, fmt.Errorf("agent: the authority answered %s with no certificate for %s", agentapi.X509SVIDPath, id)
	}
	return resp.Chain, nil
}

// SignJWTSVID asks the authority for a JWT-SVID for id, a workload of the
// agent's node, and audience; it implements workloadapi.Signer. Its errors
// are those of SignX509SVID.
func (c *Client) SignJWTSVID(ctx context.Context, id spiffeid.ID, audience []string) (string, error) {
	if err := c.ready(); err != nil {
		return "", err
	}
	var resp agentapi.JWTSVIDResponse
	if err := c.call(ctx, c.mtls, agentapi.JWTSVIDPath, agentapi.JWTSVIDRequest{ID: id.String(), Audience: audience}, &resp); err != nil {
		return "", err
	}
	if resp.Token == "" {
		return "", fmt.Errorf("agent: the authority answered %s with no token for %s", agentapi.JWTSVIDPath, id)
	}
	return resp.Token, nil
}

// ready returns ErrNotAttested unless the agent's SVID is valid now.
func (c *Client) ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.svid == nil || !c.cfg.Now().Before(c.svid.Certificates[0].NotAfter) {
		return ErrNotAttested
	}
	return nil
}

// call posts in as JSON to path over hc and decodes a 200 answer into out.
// Any other answer is an *AuthorityError.
func (c *Client) call(ctx context.Context, hc *http.Client, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("agent: encode the request to %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath(path).String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		if hc == c.mtls {
			c.checkRefusal(err)
		}
		return fmt.Errorf("agent: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer, err := readAnswer(resp.Body, path)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return c.answerError(path, resp.StatusCode, answer, hc == c.mtls)
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("agent: the authority's answer to %s is not what agentapi says: %w", path, err)
	}
	return nil
}

// readAnswer reads the body of the answer to path, of at most maxAnswer
// bytes.
func readAnswer(body io.Reader, path string) ([]byte, error) {
	answer, err := io.ReadAll(io.LimitReader(body, maxAnswer+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("agent: read the answer to %s: %w", path, err)
	case len(answer) > maxAnswer:
		return nil, fmt.Errorf("agent: the authority's answer to %s is over %d KiB: it is not what agentapi says (is the URL the authority's agent API?)", path, maxAnswer>>10)
	}
	return answer, nil
}

// answerError is the *AuthorityError of an answer that is not 200. A 401
// to a call made with the agent's SVID (mtls) means the authority no
// longer accepts it: the agent attests again at once.
func (c *Client) answerError(path string, status int, body []byte, mtls bool) error {
	e := &AuthorityError{Path: path, Status: status}
	var msg agentapi.Error
	if json.Unmarshal(body, &msg) == nil {
		e.Message = msg.Error
	}
	if mtls && status == http.StatusUnauthorized {
		c.refused()
	}
	return e
}

// checkRefusal has the agent attest again when the authority ended the
// TLS handshake with an alert: it did not accept the agent's SVID.
func (c *Client) checkRefusal(err error) {
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" {
		c.refused()
	}
}
