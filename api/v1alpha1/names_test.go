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
