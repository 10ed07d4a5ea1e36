package cli_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate, a CA or not, as PEM.
func writeCert(t *testing.T, name string, isCA bool) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestWebhookClientCAFlags: kzero authority and kzero install read
// --webhook-client-ca bounded, and refuse anything but CA certificates,
// saying what to give.
func TestWebhookClientCAFlags(t *testing.T) {
	ca, leaf := writeCert(t, "webhook-client-ca", true), writeCert(t, "kube-apiserver-webhook-client", false)
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no such file", []string{"--webhook-client-ca", "/nonexistent/ca.pem"},
			"--webhook-client-ca: open /nonexistent/ca.pem: no such file or directory"},
		{"an endless file", []string{"--webhook-client-ca", "/dev/zero"},
			"--webhook-client-ca: /dev/zero is over 1024 KiB: it is not a file of CA certificates"},
		{"a leaf", []string{"--webhook-client-ca", leaf},
			"--webhook-client-ca " + leaf + ": certificate 1 (CN=kube-apiserver-webhook-client) is not a CA certificate: give the CA that issued kube-apiserver's webhook client certificate"},
		{"a key", []string{"--webhook-client-ca", keyFile},
			"--webhook-client-ca " + keyFile + `: a PEM block of type "PRIVATE KEY": give only CA certificates`},
		{"names without a CA", []string{"--webhook-client-name", "kube-apiserver-webhook-client"},
			"--webhook-client-name: given without --webhook-client-ca: name the CA whose certificates carry it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(append([]string{"authority", "--kubeconfig", "/nonexistent"}, tc.args...)...)
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v\nwant  %s\n(output %q)", err, tc.want, out)
			}
		})
	}
	const next = "no Kubernetes configuration: "
	if out, err := run("authority", "--kubeconfig", "/nonexistent", "--webhook-client-ca", ca, "--webhook-client-name", "kube-apiserver-webhook-client"); err == nil || !strings.HasPrefix(err.Error(), next) {
		t.Errorf("a good CA: err = %v, want %s... (output %q)", err, next, out)
	}

	out, err := run("install", "--image", "kzero.local/kzero:test", "--webhook-client-ca", ca, "--webhook-client-name", "kube-apiserver-webhook-client")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: ConfigMap", "name: kzero-webhook-client-ca", "--webhook-client-ca", "/etc/kzero/webhook-client-ca/ca.crt", "- kube-apiserver-webhook-client"} {
		if !strings.Contains(out, want) {
			t.Errorf("kzero install with a client CA does not render %q", want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--webhook-client-ca", "/dev/zero"}, "--webhook-client-ca: /dev/zero is over 1024 KiB: it is not a file of CA certificates"},
		{[]string{"--webhook-client-ca", leaf}, "install: webhookClientCA: certificate 1 (CN=kube-apiserver-webhook-client) is not a CA certificate: give the CA that issued kube-apiserver's webhook client certificate"},
		{[]string{"--webhook-client-name", "x"}, "install: webhookClientNames: given without webhookClientCA: name the CA whose certificates carry them"},
	} {
		if _, err := run(append([]string{"install", "--image", "kzero.local/kzero:test"}, tc.args...)...); err == nil || err.Error() != tc.want {
			t.Errorf("install %q: err = %v\nwant  %s", tc.args, err, tc.want)
		}
	}
}
