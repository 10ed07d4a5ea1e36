package audit_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/audit"
)

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
		{"not JSON", "hello\n", "audit: record 1 (line 1): is not a JSON object (invalid character 'h' looking for beginning of value): the file is damaged or is not a kzero audit log", audit.ErrMalformed},
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
