//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"slices"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

const signer = "kzero.dev/identity"

// certificates.k8s.io/v1 serves PodCertificateRequest and ClusterTrustBundle.
func TestCertificatesV1Served(t *testing.T) {
	list, err := kube.Client.Discovery().ServerResourcesForGroupVersion("certificates.k8s.io/v1")
	if err != nil {
		t.Fatalf("discovery of certificates.k8s.io/v1: %v", err)
	}
	var names []string
	for _, r := range list.APIResources {
		names = append(names, r.Name)
	}
	for _, want := range []string{"podcertificaterequests", "clustertrustbundles"} {
		if !slices.Contains(names, want) {
			t.Errorf("certificates.k8s.io/v1 serves %v, not %s", names, want)
		}
	}
}

// A ClusterTrustBundle for kzero's signer can be created and read back.
func TestClusterTrustBundle(t *testing.T) {
	pemCA := selfSignedCA(t)
	ctbs := kube.Client.CertificatesV1().ClusterTrustBundles()
	name := "kzero.dev:identity:e2e-" + time.Now().Format("150405")
	_, err := ctbs.Create(t.Context(), &certv1.ClusterTrustBundle{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       certv1.ClusterTrustBundleSpec{SignerName: signer, TrustBundle: pemCA},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create ClusterTrustBundle: %v", err)
	}
	t.Cleanup(func() { _ = ctbs.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	got, err := ctbs.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get ClusterTrustBundle: %v", err)
	}
	if got.Spec.SignerName != signer || got.Spec.TrustBundle != pemCA {
		t.Errorf("ClusterTrustBundle came back as signer %q with bundle %q", got.Spec.SignerName, got.Spec.TrustBundle)
	}
}

// A pod with a podCertificate projected volume makes kubelet create a
// PodCertificateRequest for kzero's signer; with no signer running it stays
// pending.
func TestPodCertificateRequestFromKubelet(t *testing.T) {
	ns := namespace(t)
	pod := testPod("identity", "cat", "/var/run/kzero/credentialbundle.pem")
	pod.Spec.Volumes = []corev1.Volume{{
		Name: "identity",
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{PodCertificate: &corev1.PodCertificateProjection{
				SignerName: signer, KeyType: "ECDSAP256", CredentialBundlePath: "credentialbundle.pem",
			}}},
		}},
	}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "identity", MountPath: "/var/run/kzero", ReadOnly: true}}
	createPod(t, ns, pod)

	var pcr *certv1.PodCertificateRequest
	err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := kube.Client.CertificatesV1().PodCertificateRequests(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for i := range l.Items {
			if l.Items[i].Spec.PodName == "identity" {
				pcr = &l.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no PodCertificateRequest for pod identity: %v", err)
	}
	if pcr.Spec.SignerName != signer {
		t.Errorf("PodCertificateRequest signer = %q, want %q", pcr.Spec.SignerName, signer)
	}
	if _, err := kube.Node(string(pcr.Spec.NodeName)); err != nil {
		t.Errorf("PodCertificateRequest node = %q, not one of the cluster's: %v", pcr.Spec.NodeName, err)
	}
	if len(pcr.Spec.StubPKCS10Request) == 0 {
		t.Error("PodCertificateRequest has no stub PKCS#10 request (proof of possession)")
	}
	// No signer runs in this test: a few seconds on, it is still pending.
	time.Sleep(3 * time.Second)
	again, err := kube.Client.CertificatesV1().PodCertificateRequests(ns).Get(t.Context(), pcr.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Status.CertificateChain != "" || len(again.Status.Conditions) > 0 {
		t.Errorf("PodCertificateRequest was decided (%v), but no signer runs", again.Status.Conditions)
	}
}

func selfSignedCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kzero e2e test CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
