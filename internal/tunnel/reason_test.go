package tunnel

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzCleanReason: whatever an Authorizer or a dial error says, the reason
// is a valid header value of at most maxReason bytes, and text that is
// already printable ASCII passes unchanged up to that length.
func FuzzCleanReason(f *testing.F) {
	f.Add("policy shop/orders-ingress: no rule allows spiffe://cluster.local/ns/shop/sa/web")
	f.Add("line one\r\nSet-Cookie: injected")
	f.Add("\x00\xff\u00e9\u2028")
	f.Add(strings.Repeat("x", 2*maxReason))
	f.Fuzz(func(t *testing.T, s string) {
		got := cleanReason(s)
		if len(got) > maxReason {
			t.Fatalf("cleanReason gave %d bytes, more than %d", len(got), maxReason)
		}
		for i := range len(got) {
			if c := got[i]; c < 0x20 || c > 0x7e {
				t.Fatalf("cleanReason(%q) = %q holds byte %#x", s, got, c)
			}
		}
		h := http.Header{}
		h.Set(ReasonHeader, got)
		if h.Get(ReasonHeader) != got {
			t.Fatalf("%q does not survive as a header value", got)
		}
		printable := true
		for i := range len(s) {
			if s[i] < 0x20 || s[i] > 0x7e {
				printable = false
			}
		}
		if printable && !strings.HasPrefix(s, got) {
			t.Fatalf("cleanReason changed printable text %q to %q", s, got)
		}
	})
}
