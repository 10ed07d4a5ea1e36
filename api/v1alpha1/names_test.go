package v1alpha1

import (
	"strings"
	"testing"
)

// TestTrustBundleName: kube-apiserver accepts a ClusterTrustBundle with
// spec.signerName SignerName only under a name that is the signer's, with
// ':' for '/', then ':'.
func TestTrustBundleName(t *testing.T) {
	if want := strings.ReplaceAll(SignerName, "/", ":") + ":"; TrustBundleNamePrefix != want {
		t.Errorf("TrustBundleNamePrefix = %q, want %q", TrustBundleNamePrefix, want)
	}
	if got := TrustBundleName("cluster.local"); got != "kzero.dev:identity:cluster.local" {
		t.Errorf("TrustBundleName = %q", got)
	}
}

// TestNeverEnrolled: kube-system and kzero's own namespace, whichever it
// is, never get workload identities; every other namespace may.
func TestNeverEnrolled(t *testing.T) {
	for _, c := range []struct {
		ns, kzero string
		want      bool
	}{
		{"kube-system", Namespace, true},
		{Namespace, Namespace, true},
		{"security", "security", true},
		{Namespace, "security", false},
		{"kube-public", Namespace, false},
		{"shop", Namespace, false},
	} {
		if got := NeverEnrolled(c.ns, c.kzero); got != c.want {
			t.Errorf("NeverEnrolled(%q, %q) = %t, want %t", c.ns, c.kzero, got, c.want)
		}
	}
}
