package cli_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
	"kzero.dev/kzero/internal/cli"
)

type svidSource struct{ svid *x509svid.SVID }

func (s svidSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }

var (
	tdLocal     = spiffeid.RequireTrustDomainFromString("cluster.local")
	authorityID = spiffeid.RequireFromString("spiffe://cluster.local/ns/kzero-system/sa/kzero-authority")
	webID       = spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web")
)

func newCA(t *testing.T) *ca.CA {
	t.Helper()
	c, err := ca.New(context.Background(), ca.Config{TrustDomain: tdLocal, Store: catest.NewMemStore(nil)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issue is a real X.509-SVID of c for id.
func issue(t *testing.T, c *ca.CA, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	key, csr := catest.NewCSR(t)
	s, err := c.IssueX509SVID(ca.X509Request{ID: id, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: s.ID, Certificates: s.Certificates, PrivateKey: key}
}

// steps is a clock that moves a millisecond at each reading, and can be
// set.
type steps struct {
	mu  sync.Mutex
	now time.Time
}

func (s *steps) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = s.now.Add(time.Millisecond)
	return s.now
}

func (s *steps) set(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = t
}

// logSpec is a log to write: n issuance events chained with a checkpoint
// every `every` records by svid, closed (a last checkpoint) or not; with
// stderr, the component's slog lines between them, as kubectl logs shows
// them; at, if set, runs before event i (to turn the clock).
type logSpec struct {
	svid   *x509svid.SVID
	n      int
	every  int
	closed bool
	stderr bool
	clock  *steps
	at     func(i int)
}

func (s logSpec) write(t *testing.T, w *bytes.Buffer) {
	t.Helper()
	if s.clock == nil {
		s.clock = &steps{now: time.Now()}
	}
	chain, err := audit.NewChain(w, audit.ChainConfig{Component: audit.ComponentAuthority, SVIDs: svidSource{s.svid},
		Every: s.every, Interval: time.Hour, Now: s.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAuthority, Chains: []*audit.Chain{chain}, Now: s.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if s.stderr {
		log = slog.New(slog.NewJSONHandler(w, nil))
	}
	log.Info("starting", "trustDomain", "cluster.local")
	for i := range s.n {
		if s.at != nil {
			s.at(i)
		}
		log.Info("signing", "request", i)
		err := rec.Record(audit.Event{Kind: audit.KindIssuance, Outcome: audit.OutcomeSuccess, Reason: fmt.Sprintf("issued %d", i),
			Issuance: &audit.Issuance{SPIFFEID: webID, Type: audit.SVIDTypeX509, Requester: "node/worker-1"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.closed {
		log.Info("stopped")
		if err := rec.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func (s logSpec) bytes(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	s.write(t, &b)
	return b.Bytes()
}

// auditFixture writes, in dir, chained logs of 5 events (the authority's,
// a checkpoint every 3 records and one at the end: e e e C e e C) signed
// by SVIDs from a real kzero CA: a good file, and files tampered with; the
// same as streams, between the authority's log lines; that CA's bundle
// (SPIFFE JSON and PEM), and the bundle of another CA.
func auditFixture(t *testing.T) (dir string, log []byte) {
	t.Helper()
	dir = t.TempDir()
	c, other := newCA(t), newCA(t)
	authority := issue(t, c, authorityID)
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

	log = logSpec{svid: authority, n: 5, every: 3, closed: true}.bytes(t)
	write("audit.log", log)
	write("empty.log", nil)
	write("text.log", []byte("not an audit log\n"))
	lines := bytes.SplitAfter(log, []byte("\n"))
	swapped := bytes.SplitAfter(log, []byte("\n"))
	swapped[1], swapped[2] = swapped[2], swapped[1]
	write("swapped.log", bytes.Join(swapped, nil))
	changed := bytes.Clone(log)
	i := bytes.Index(changed, []byte("issued 3"))
	changed[i+len("issued ")] = '4'
	write("changed.log", changed)
	// (a) no checkpoint; (b) signed by another workload of the trust
	// domain; (c) a checkpoint dated before the one before it.
	write("unsigned.log", logSpec{svid: authority, n: 3, every: 100}.bytes(t))
	write("forged.log", logSpec{svid: issue(t, c, webID), n: 5, every: 3, closed: true}.bytes(t))
	clk := &steps{now: time.Now()}
	back := clk.now.Add(-10 * time.Second)
	write("backdated.log", logSpec{svid: authority, n: 5, every: 3, closed: true, clock: clk, at: func(i int) {
		if i == 4 {
			clk.set(back)
		}
	}}.bytes(t))
	write("split-1.log", bytes.Join(lines[:4], nil))
	write("split-2.log", bytes.Join(lines[4:], nil))

	// (d) streams: good, with the authority's log lines between records;
	// two runs; a record removed, two reordered, one edited.
	clk = &steps{now: time.Now()}
	stream := logSpec{svid: authority, n: 5, every: 3, closed: true, stderr: true, clock: clk}.bytes(t)
	write("stream.log", stream)
	write("two-runs.log", append(bytes.Clone(stream), logSpec{svid: authority, n: 2, every: 3, closed: true, stderr: true, clock: clk}.bytes(t)...))
	sl := bytes.SplitAfter(stream, []byte("\n"))
	var rl []int // the lines that are records, from 0
	for i, l := range sl {
		if bytes.HasPrefix(l, []byte(`{"schema":`)) {
			rl = append(rl, i)
		}
	}
	cat := func(ls [][]byte) []byte { return bytes.Join(ls, nil) }
	removed := append(append([][]byte{}, sl[:rl[1]]...), sl[rl[1]+1:]...)
	write("stream-removed.log", cat(removed))
	reordered := append([][]byte{}, sl...)
	reordered[rl[2]], reordered[rl[3]] = reordered[rl[3]], reordered[rl[2]]
	write("stream-reordered.log", cat(reordered))
	edited := bytes.Clone(stream)
	i = bytes.Index(edited, []byte("issued 1"))
	edited[i+len("issued ")] = '9'
	write("stream-edited.log", edited)
	return dir, log
}

func TestAuditVerify(t *testing.T) {
	dir, _ := auditFixture(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	head := regexp.MustCompile(`head (\d+):[0-9a-f]{64}`)
	good := func(file, signed string) string {
		return fmt.Sprintf(`%s: verified: 5 records, 2 checkpoints (sequence 1 to 7)
  signed by spiffe://cluster.local/ns/kzero-system/sa/kzero-authority
  signers %s
  ends with a checkpoint (head 7:H)
`, p(file), signed)
	}
	verified := func(bundle string) string { return "verified against " + p(bundle) }
	const unchecked = "not checked against a trust bundle: anyone could have made their certificates (--allow-unsigned)"
	forged := ": audit: record 4 (line 4): checkpoint signed by spiffe://cluster.local/ns/shop/sa/web, not by spiffe://cluster.local/ns/kzero-system/sa/kzero-authority: " +
		"another workload signed it, and may have written every record before it (if that signer is expected, name it with --signer)"
	bundle := []string{"--bundle", p("bundle.pem")}
	tests := []struct {
		name    string
		args    []string
		out     string
		wantErr string
	}{
		{"good, SPIFFE bundle", []string{p("audit.log"), "--bundle", p("bundle.json")}, good("audit.log", verified("bundle.json")), ""},
		{"good, PEM bundle", []string{p("audit.log"), "--bundle", p("bundle.pem")}, good("audit.log", verified("bundle.pem")), ""},
		{"good, no bundle, allowed", []string{p("audit.log"), "--allow-unsigned"}, good("audit.log", unchecked), ""},
		{"good, the signer named", []string{p("audit.log"), "--signer", authorityID.String(), "--signer", webID.String(), "--bundle", p("bundle.pem")},
			good("audit.log", verified("bundle.pem")), ""},
		{"no bundle", []string{p("audit.log")}, "",
			"--bundle: required: without the trust bundle a checkpoint's certificate proves nothing, as anyone can make one naming spiffe://cluster.local/ns/kzero-system/sa/kzero-authority; " +
				"give the bundle (kubectl get clustertrustbundle kzero.dev:identity:cluster.local -o jsonpath='{.spec.trustBundle}' > bundle.pem), or --allow-unsigned to check the records' chain alone"},
		{"(a) no checkpoint", append([]string{p("unsigned.log")}, bundle...), "",
			p("unsigned.log") + ": audit: record 3 (line 3): ends a chain of 3 records (lines 1 to 3) that no checkpoint signs: nothing proves who wrote them, " +
				"since anyone can compute a chain's hashes (a component signs one at least every minute and when it stops; accept an unsigned chain with --allow-unsigned)"},
		{"(a) no checkpoint, allowed", []string{p("unsigned.log"), "--allow-unsigned"}, p("unsigned.log") + `: verified: 3 records, 0 checkpoints (sequence 1 to 3)
  no checkpoint: the records were checked against each other only, and anyone could have written them (--allow-unsigned)
  unsigned tail: 3 records after the last checkpoint, protected by the chain only (head 3:H)
`, ""},
		{"(b) signed by another workload", append([]string{p("forged.log")}, bundle...), "", p("forged.log") + forged},
		{"(b) signed by another workload, unsigned allowed", []string{p("forged.log"), "--allow-unsigned"}, "", p("forged.log") + forged},
		{"(b) signed by that workload, named", []string{p("forged.log"), "--signer", webID.String(), "--bundle", p("bundle.pem")},
			strings.ReplaceAll(good("forged.log", verified("bundle.pem")), authorityID.String(), webID.String()), ""},
		{"(c) a checkpoint older than the one before it", append([]string{p("backdated.log")}, bundle...), "",
			p("backdated.log") + ": audit: record 7 (line 7): checkpoint dated "},
		{"another CA's bundle", []string{p("audit.log"), "--bundle", p("other.json")}, "",
			p("audit.log") + ": audit: record 4 (line 4): checkpoint signed by spiffe://cluster.local/ns/kzero-system/sa/kzero-authority, whose certificate does not verify against the bundle at "},
		{"another trust domain", []string{p("audit.log"), "--trust-domain", "example.org", "--signer", "spiffe://example.org/ns/kzero-system/sa/kzero-authority", "--allow-unsigned"}, "",
			p("audit.log") + ": audit: record 4 (line 4): checkpoint signed by spiffe://cluster.local/ns/kzero-system/sa/kzero-authority, outside the trust domain example.org"},
		{"a signer of another trust domain", []string{p("audit.log"), "--signer", "spiffe://example.org/ns/kzero-system/sa/kzero-authority"}, "",
			`--signer "spiffe://example.org/ns/kzero-system/sa/kzero-authority": not in --trust-domain cluster.local: give the trust domain too`},
		{"a signer that is not a SPIFFE ID", []string{p("audit.log"), "--signer", "kzero-authority"}, "",
			`--signer "kzero-authority": scheme is missing or invalid`},
		{"swapped", append([]string{p("swapped.log")}, bundle...), "",
			p("swapped.log") + ": audit: record 2 (line 2): sequence number 3 where 2 was expected: records before it were removed, or records were inserted or reordered"},
		{"changed", append([]string{p("changed.log")}, bundle...), "",
			p("changed.log") + ": audit: record 5 (line 5): its content does not match its hash: the record was changed after it was written"},
		{"missing", append([]string{p("missing.log")}, bundle...), "", "audit verify: open " + p("missing.log") + ": no such file or directory"},
		{"empty", append([]string{p("empty.log")}, bundle...), "", p("empty.log") + ": audit: empty log: no records to verify"},
		{"not a record", append([]string{p("text.log")}, bundle...), "",
			p("text.log") + `: audit: record 1 (line 1): does not start as a record does ({"schema":"kzero.dev/audit/...): the file is damaged or is not a chained audit file; a log stream with other lines in it, such as kubectl logs output, verifies with --stream`},
		{"bad bundle", []string{p("audit.log"), "--bundle", p("text.log")}, "", "--bundle " + p("text.log") + ": not a SPIFFE bundle: "},
		{"an endless bundle", []string{p("audit.log"), "--bundle", "/dev/zero"}, "", "--bundle: /dev/zero is over 2048 KiB: it is not a trust bundle"},

		{"(d) stream", append([]string{"--stream", p("stream.log")}, bundle...), p("stream.log") + `: verified: 5 records, 2 checkpoints (sequence 1 to 7)
  7 other lines skipped (not audit records)
  signed by spiffe://cluster.local/ns/kzero-system/sa/kzero-authority
  signers verified against ` + p("bundle.pem") + `
  ends with a checkpoint (head 7:H)
`, ""},
		{"(d) stream of two runs", append([]string{"--stream", p("two-runs.log")}, bundle...), p("two-runs.log") + `: verified: 7 records, 3 checkpoints, in 2 chains (one for each start of the component)
  chain 1, lines 3 to 14: sequence 1 to 7, ends with a checkpoint
  chain 2, lines 17 to 21: sequence 1 to 3, ends with a checkpoint
  11 other lines skipped (not audit records)
  signed by spiffe://cluster.local/ns/kzero-system/sa/kzero-authority
  signers verified against ` + p("bundle.pem") + `
  ends with a checkpoint (head 3:H)
`, ""},
		{"(d) stream as a file", append([]string{p("stream.log")}, bundle...), "",
			p("stream.log") + `: audit: record 1 (line 1): does not start as a record does ({"schema":"kzero.dev/audit/...): the file is damaged or is not a chained audit file; a log stream with other lines in it, such as kubectl logs output, verifies with --stream`},
		{"(d) stream, a record removed", append([]string{"--stream", p("stream-removed.log")}, bundle...), "",
			p("stream-removed.log") + ": audit: record 2 (line 6): sequence number 3 where 2 was expected: records before it were removed, or records were inserted or reordered"},
		{"(d) stream, records reordered", append([]string{"--stream", p("stream-reordered.log")}, bundle...), "",
			p("stream-reordered.log") + ": audit: record 3 (line 7): sequence number 4 where 3 was expected: records before it were removed, or records were inserted or reordered"},
		{"(d) stream, a record edited", append([]string{"--stream", p("stream-edited.log")}, bundle...), "",
			p("stream-edited.log") + ": audit: record 2 (line 5): its content does not match its hash: the record was changed after it was written"},
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
				if got := head.ReplaceAllString(out.String(), "head $1:H"); got != tt.out {
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

// TestAuditVerifyErrorKinds: a machine tells the failures apart.
func TestAuditVerifyErrorKinds(t *testing.T) {
	dir, _ := auditFixture(t)
	for file, kind := range map[string]error{
		"unsigned.log": audit.ErrUnsigned, "forged.log": audit.ErrUntrusted, "backdated.log": audit.ErrBackdated,
		"swapped.log": audit.ErrSequence, "changed.log": audit.ErrChanged,
	} {
		_, err := run("audit", "verify", filepath.Join(dir, file), "--bundle", filepath.Join(dir, "bundle.pem"))
		if !errors.Is(err, kind) {
			t.Errorf("%s: %v, want %v", file, err, kind)
		}
	}
}

// TestAuditVerifySeveralFiles: a log split in two verifies as one chain,
// and the second alone only with --continues.
func TestAuditVerifySeveralFiles(t *testing.T) {
	dir, _ := auditFixture(t)
	first, second := filepath.Join(dir, "split-1.log"), filepath.Join(dir, "split-2.log")
	bundle := []string{"--bundle", filepath.Join(dir, "bundle.pem")}
	verify := func(args ...string) (string, error) {
		return run(append(append([]string{"audit", "verify"}, args...), bundle...)...)
	}
	if out, err := verify(first, second); err != nil || strings.Count(out, ": verified: ") != 2 {
		t.Errorf("both files: %v\n%s", err, out)
	}
	if _, err := verify(second); err == nil || !strings.Contains(err.Error(), "the log starts at record 5, not 1") {
		t.Errorf("second alone: %v", err)
	}
	if out, err := verify(second, "--continues"); err != nil || !strings.Contains(out, "(sequence 5 to 7)") {
		t.Errorf("second with --continues: %v\n%s", err, out)
	}
	if _, err := verify(second, first); !errors.Is(err, audit.ErrSequence) {
		t.Errorf("files out of order: %v", err)
	}
}

// TestAuditVerifyHelp: every flag is explained, and --allow-unsigned says
// what is then not proven.
func TestAuditVerifyHelp(t *testing.T) {
	out, err := run("audit", "verify", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--bundle", "--trust-domain", "--signer", "--allow-unsigned", "--continues", "--stream"} {
		if !strings.Contains(out, "  "+flag+" ") {
			t.Errorf("--help does not explain %s:\n%s", flag, out)
		}
	}
	if !strings.Contains(out, "so who wrote it is not proven") {
		t.Errorf("--allow-unsigned does not say what is not proven:\n%s", out)
	}
}
