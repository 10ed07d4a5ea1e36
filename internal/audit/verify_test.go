package audit_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/audit"
)

// notARecord is the error for a first line that is not a record.
const notARecord = `audit: record 1 (line 1): does not start as a record does ({"schema":"kzero.dev/audit/...): ` +
	"the file is damaged or is not a chained audit file; a log stream with other lines in it, such as kubectl logs output, verifies with --stream"

func TestVerifyRefusesWhatIsNotALog(t *testing.T) {
	f := writeLog(t, nil, 2, every)
	ls := lines(f.file.Bytes())
	good := string(ls[0])
	tests := []struct {
		name, log string
		want      string
		kind      error
	}{
		{"empty", "", "audit: empty log: no records to verify", audit.ErrEmpty},
		{"not a record", "hello\n", notARecord, audit.ErrMalformed},
		{"a log line", `{"time":"2026-07-01T12:00:00Z","level":"INFO","msg":"starting"}` + "\n", notARecord, audit.ErrMalformed},
		{"not JSON", `{"schema":"kzero.dev/audit/v1",` + "\n", "audit: record 1 (line 1): is not a JSON object (unexpected end of JSON input): the file is damaged or is not a kzero audit log", audit.ErrMalformed},
		{"blank line", good + "\n\n", "audit: record 2 (line 2): is empty: a chained file has no empty lines", audit.ErrMalformed},
		{"other schema", `{"schema":"kzero.dev/audit/v9","seq":1}` + "\n", `audit: record 1 (line 1): schema "kzero.dev/audit/v9" is not "kzero.dev/audit/v1": this kzero reads no other`, audit.ErrMalformed},
		{"plain event", string(lines(f.stdout.Bytes())[0]) + "\n", "audit: record 1 (line 1): has no sequence number: it is not a record of a chained file", audit.ErrMalformed},
		{"no hash", `{"schema":"kzero.dev/audit/v1","seq":1,"prev":"` + strings.Repeat("0", 64) + `"}` + "\n",
			`audit: record 1 (line 1): does not end with its hash (,"hash":"<64 hex digits>"}): the record was changed or cut`, audit.ErrMalformed},
		{"upper-case hash", good[:len(good)-3] + "A\"}\n", `audit: record 1 (line 1): does not end with its hash (,"hash":"<64 hex digits>"}): the record was changed or cut`, audit.ErrMalformed},
		{"too long", strings.Repeat("x", audit.MaxLineSize+1), "audit: record 1 (line 1): is longer than 1048576 bytes: this is not a kzero audit log", audit.ErrMalformed},
		{"CRLF", good + "\r\n", `audit: record 1 (line 1): does not end with its hash (,"hash":"<64 hex digits>"}): the record was changed or cut`, audit.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := audit.Verify(strings.NewReader(tt.log), audit.Options{})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n got %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("errors.Is(%v) is false", tt.kind)
			}
		})
	}
}

// TestBundle: checkpoints signed by an SVID of another CA, or of another
// trust domain, fail when a bundle or trust domain is given.
func TestBundle(t *testing.T) {
	f := writeLog(t, nil, nEvents, every)
	other := newTestCA(t)
	_, err := audit.Verify(bytes.NewReader(f.file.Bytes()), audit.Options{Bundle: other.bundle()})
	wantPrefix := "audit: record 5 (line 5): checkpoint signed by spiffe://cluster.local/ns/kzero-system/sa/agent, whose certificate does not verify against the bundle at "
	if err == nil || !strings.HasPrefix(err.Error(), wantPrefix) || !errors.Is(err, audit.ErrUntrusted) {
		t.Errorf("foreign CA: error %v, want prefix %s", err, wantPrefix)
	}
	_, err = audit.Verify(bytes.NewReader(f.file.Bytes()), audit.Options{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")})
	want := "audit: record 5 (line 5): checkpoint signed by spiffe://cluster.local/ns/kzero-system/sa/agent, outside the trust domain example.org"
	if err == nil || err.Error() != want {
		t.Errorf("other trust domain: error %v, want %s", err, want)
	}
}

// TestContinuedFile: the second half of a log verifies on its own with
// Continues, and after the first half with After.
func TestContinuedFile(t *testing.T) {
	f := writeLog(t, nil, nEvents, every)
	ls := lines(f.file.Bytes())
	first, err := audit.Verify(bytes.NewReader(join(ls[:5])), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(bytes.NewReader(join(ls[5:])), audit.Options{After: first.Last})
	if err != nil || rep.First != first.Last || rep.Last.Seq != nLines {
		t.Fatalf("after: %+v, %v", rep, err)
	}
	rep, err = audit.Verify(bytes.NewReader(join(ls[5:])), audit.Options{Continues: true})
	if err != nil || rep.First != first.Last || rep.Records != 6 {
		t.Fatalf("continues: %+v, %v", rep, err)
	}
	_, err = audit.Verify(bytes.NewReader(join(ls[6:])), audit.Options{After: first.Last})
	want := "audit: record 6 (line 1): sequence number 7 where 6 was expected: records before it were removed, or records were inserted or reordered"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

// TestSigners: a checkpoint signed by a workload other than the expected
// signer fails, even one of the same trust domain and CA.
func TestSigners(t *testing.T) {
	f := writeLog(t, nil, nEvents, every)
	authorityID := spiffeid.RequireFromString("spiffe://cluster.local/ns/kzero-system/sa/kzero-authority")
	gatewayID := spiffeid.RequireFromString("spiffe://cluster.local/ns/kzero-system/sa/kzero-gateway")
	for _, tt := range []struct {
		name    string
		signers []spiffeid.ID
		want    string
	}{
		{"the signer", []spiffeid.ID{agentID}, ""},
		{"one of the signers", []spiffeid.ID{authorityID, agentID}, ""},
		{"another signer", []spiffeid.ID{authorityID},
			"audit: record 5 (line 5): checkpoint signed by spiffe://cluster.local/ns/kzero-system/sa/agent, not by spiffe://cluster.local/ns/kzero-system/sa/kzero-authority: " +
				"another workload signed it, and may have written every record before it (if that signer is expected, name it with --signer)"},
		{"other signers", []spiffeid.ID{authorityID, gatewayID, spiffeid.RequireFromString("spiffe://cluster.local/kzero/agent/node-a")},
			"audit: record 5 (line 5): checkpoint signed by spiffe://cluster.local/ns/kzero-system/sa/agent, not by spiffe://cluster.local/ns/kzero-system/sa/kzero-authority, " +
				"spiffe://cluster.local/ns/kzero-system/sa/kzero-gateway or spiffe://cluster.local/kzero/agent/node-a: " +
				"another workload signed it, and may have written every record before it (if that signer is expected, name it with --signer)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := audit.Verify(bytes.NewReader(f.file.Bytes()), audit.Options{Bundle: f.ca.bundle(), TrustDomain: td, Signers: tt.signers})
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tt.want || !errors.Is(err, audit.ErrUntrusted) {
				t.Errorf("error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

// TestUnsigned: a log with no checkpoint fails unless allowed.
func TestUnsigned(t *testing.T) {
	c := newTestCA(t)
	var file bytes.Buffer
	chain, _ := audit.NewChain(&file, audit.ChainConfig{Component: audit.ComponentAgent, SVIDs: source{svid: c.svid(t, agentID)}, Interval: time.Hour})
	for range 3 {
		if err := chain.Append([]byte(`{"schema":"kzero.dev/audit/v1","kind":"access"}`)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := audit.Verify(bytes.NewReader(file.Bytes()), audit.Options{})
	want := "audit: record 3 (line 3): ends a chain of 3 records (lines 1 to 3) that no checkpoint signs: nothing proves who wrote them, " +
		"since anyone can compute a chain's hashes (a component signs one at least every minute and when it stops; accept an unsigned chain with --allow-unsigned)"
	if err == nil || err.Error() != want || !errors.Is(err, audit.ErrUnsigned) {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
	rep, err := audit.Verify(bytes.NewReader(file.Bytes()), audit.Options{AllowUnsigned: true})
	if err != nil || rep.Records != 3 || rep.Checkpoints != 0 || rep.UnsignedTail != 3 {
		t.Errorf("allowed: %+v, %v", rep, err)
	}
	// Its writer continues it: OpenFile accepts it.
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, file.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	f, head, err := audit.OpenFile(path, audit.Options{})
	if err != nil || head.Seq != 3 {
		t.Errorf("OpenFile: head %v, %v", head, err)
	}
	if f != nil {
		_ = f.Close()
	}
}

// TestBackdated: a checkpoint dated before the one before it fails, in one
// log and across files.
func TestBackdated(t *testing.T) {
	c := newTestCA(t)
	now := t0.Add(time.Minute)
	var file bytes.Buffer
	chain, _ := audit.NewChain(&file, audit.ChainConfig{Component: audit.ComponentAgent, SVIDs: source{svid: c.svid(t, agentID)},
		Every: 2, Now: func() time.Time { return now }})
	for i := range 6 {
		if i == 4 {
			now = t0.Add(time.Second) // the clock goes back, or a forger backdates
		}
		if err := chain.Append([]byte(`{"schema":"kzero.dev/audit/v1","kind":"access"}`)); err != nil {
			t.Fatal(err)
		}
	}
	// e1 e2 C3 e4 e5 C6 e7 e8 C9: C9 is dated before C6.
	_, err := audit.Verify(bytes.NewReader(file.Bytes()), audit.Options{Bundle: c.bundle()})
	want := fmt.Sprintf("audit: record 9 (line 9): checkpoint dated %s, before the checkpoint before it (%s): "+
		"it was signed later than it says, with a key since expired, or moved; or the writer's clock went back",
		t0.Add(time.Second).Format(audit.TimeFormat), t0.Add(time.Minute).Format(audit.TimeFormat))
	if err == nil || err.Error() != want || !errors.Is(err, audit.ErrBackdated) {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
	ls := lines(file.Bytes())
	first, err := audit.Verify(bytes.NewReader(join(ls[:6])), audit.Options{})
	if err != nil || !first.LastCheckpoint.Equal(t0.Add(time.Minute)) {
		t.Fatalf("first file: %+v, %v", first, err)
	}
	_, err = audit.Verify(bytes.NewReader(join(ls[6:])), audit.Options{After: first.Last, NotBefore: first.LastCheckpoint})
	if !errors.Is(err, audit.ErrBackdated) || !strings.HasPrefix(err.Error(), "audit: record 9 (line 3): checkpoint dated ") {
		t.Errorf("second file: %v, want record 9 backdated", err)
	}
}
