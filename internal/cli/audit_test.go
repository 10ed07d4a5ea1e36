package cli_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
	"kzero.dev/kzero/internal/cli"
)

type svidSource struct{ svid *x509svid.SVID }

func (s svidSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }

// auditFixture writes, in dir, a chained log of 5 events signed by an
// agent's SVID from a real kzero CA, that CA's bundle (SPIFFE JSON and
// PEM), and the bundle of another CA.
func auditFixture(t *testing.T) (dir string, log []byte) {
	t.Helper()
	dir = t.TempDir()
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	newCA := func() *ca.CA {
		c, err := ca.New(context.Background(), ca.Config{TrustDomain: td, Store: catest.NewMemStore(nil)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c, other := newCA(), newCA()
	key, csr := catest.NewCSR(t)
	s, err := c.IssueX509SVID(ca.X509Request{ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/kzero-system/sa/agent"), CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	chain, _ := audit.NewChain(&file, audit.ChainConfig{Component: audit.ComponentAgent,
		SVIDs: svidSource{&x509svid.SVID{ID: s.ID, Certificates: s.Certificates, PrivateKey: key}}, Every: 3})
	rec, _ := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Out: &bytes.Buffer{}, Chain: chain})
	for i := range 5 {
		err := rec.Record(audit.Event{Kind: audit.KindIssuance, Outcome: audit.OutcomeSuccess, Reason: fmt.Sprintf("issued %d", i),
			Issuance: &audit.Issuance{SPIFFEID: s.ID, Type: audit.SVIDTypeX509, Requester: "node/worker-1"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	doc, _ := c.Bundle().Marshal()
	write("bundle.json", doc)
	var pems []byte
	for _, a := range c.Bundle().X509Authorities() {
		pems = append(pems, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Raw})...)
	}
	write("bundle.pem", pems)
	doc, _ = other.Bundle().Marshal()
	write("other.json", doc)
	write("audit.log", file.Bytes())
	write("empty.log", nil)
	write("text.log", []byte("not an audit log\n"))
	lines := bytes.SplitAfter(file.Bytes(), []byte("\n"))
	lines[1], lines[2] = lines[2], lines[1]
	write("swapped.log", bytes.Join(lines, nil))
	changed := bytes.Clone(file.Bytes())
	i := bytes.Index(changed, []byte("issued 3"))
	changed[i+len("issued ")] = '4'
	write("changed.log", changed)
	return dir, file.Bytes()
}

func TestAuditVerify(t *testing.T) {
	dir, _ := auditFixture(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	head := regexp.MustCompile(`head 7:[0-9a-f]{64}`)
	good := fmt.Sprintf(`%s: verified: 5 records, 2 checkpoints (sequence 1 to 7)
  signed by spiffe://cluster.local/ns/kzero-system/sa/agent
  signers %%s
  ends with a checkpoint (head 7:H)
`, p("audit.log"))
	unchecked := fmt.Sprintf(good, "not checked against a trust bundle: pass --bundle to check they are kzero SVIDs")
	tests := []struct {
		name    string
		args    []string
		out     string
		wantErr string
	}{
		{"good", []string{p("audit.log")}, unchecked, ""},
		{"good, SPIFFE bundle", []string{p("audit.log"), "--bundle", p("bundle.json")}, fmt.Sprintf(good, "verified against "+p("bundle.json")), ""},
		{"good, PEM bundle", []string{p("audit.log"), "--bundle", p("bundle.pem")}, fmt.Sprintf(good, "verified against "+p("bundle.pem")), ""},
		{"another CA's bundle", []string{p("audit.log"), "--bundle", p("other.json")}, "",
			p("audit.log") + ": audit: record 4 (line 4): checkpoint signed by spiffe://cluster.local/ns/kzero-system/sa/agent, whose certificate does not verify against the bundle at "},
		{"another trust domain", []string{p("audit.log"), "--trust-domain", "example.org"}, "",
			p("audit.log") + ": audit: record 4 (line 4): checkpoint signed by spiffe://cluster.local/ns/kzero-system/sa/agent, outside the trust domain example.org"},
		{"swapped", []string{p("swapped.log")}, "",
			p("swapped.log") + ": audit: record 2 (line 2): sequence number 3 where 2 was expected: records before it were removed, or records were inserted or reordered"},
		{"changed", []string{p("changed.log")}, "",
			p("changed.log") + ": audit: record 5 (line 5): its content does not match its hash: the record was changed after it was written"},
		{"missing", []string{p("missing.log")}, "", "audit verify: open " + p("missing.log") + ": no such file or directory"},
		{"empty", []string{p("empty.log")}, "", p("empty.log") + ": audit: empty log: no records to verify"},
		{"not JSON", []string{p("text.log")}, "",
			p("text.log") + ": audit: record 1 (line 1): is not a JSON object (invalid character 'o' in literal null (expecting 'u')): the file is damaged or is not a kzero audit log"},
		{"bad bundle", []string{p("audit.log"), "--bundle", p("text.log")}, "", "--bundle " + p("text.log") + ": not a SPIFFE bundle: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			root := cli.New(&out, &errOut)
			root.SetArgs(append([]string{"audit", "verify"}, tt.args...))
			err := root.Execute()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("error: %v", err)
				}
				if got := head.ReplaceAllString(out.String(), "head 7:H"); got != tt.out {
					t.Errorf("output:\n%s\nwant:\n%s", got, tt.out)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("error:\n got %v\nwant %s", err, tt.wantErr)
			}
		})
	}
}

// TestAuditVerifySeveralFiles: a log split in two verifies as one chain,
// and the second alone only with --continues.
func TestAuditVerifySeveralFiles(t *testing.T) {
	dir, log := auditFixture(t)
	lines := bytes.SplitAfter(log, []byte("\n"))
	first, second := filepath.Join(dir, "1.log"), filepath.Join(dir, "2.log")
	_ = os.WriteFile(first, bytes.Join(lines[:4], nil), 0o600)
	_ = os.WriteFile(second, bytes.Join(lines[4:], nil), 0o600)
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		root := cli.New(&out, &out)
		root.SetArgs(append([]string{"audit", "verify"}, args...))
		err := root.Execute()
		return out.String(), err
	}
	if out, err := run(first, second); err != nil || strings.Count(out, ": verified: ") != 2 {
		t.Errorf("both files: %v\n%s", err, out)
	}
	if _, err := run(second); err == nil || !strings.Contains(err.Error(), "the log starts at record 5, not 1") {
		t.Errorf("second alone: %v", err)
	}
	if out, err := run(second, "--continues"); err != nil || !strings.Contains(out, "(sequence 5 to 7)") {
		t.Errorf("second with --continues: %v\n%s", err, out)
	}
	if _, err := run(second, first); !errors.Is(err, audit.ErrSequence) {
		t.Errorf("files out of order: %v", err)
	}
}
