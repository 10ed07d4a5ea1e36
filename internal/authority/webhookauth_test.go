package authority_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
)

// clientCA is a CA of TLS client certificates, as the harness makes the
// one whose certificate kube-apiserver presents to webhooks.
type clientCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newClientCA(t *testing.T, name string) *clientCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &clientCA{cert: cert, key: key}
}

func (c *clientCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// issue makes a client certificate for cn.
func (c *clientCA) issue(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// webhookEnv is the authority's webhook on loopback, with a real CA.
type webhookEnv struct {
	t     *testing.T
	addr  string
	roots *x509.CertPool
	audit *memAudit
}

func newWebhookEnv(t *testing.T, mod func(*authority.WebhookConfig)) *webhookEnv {
	t.Helper()
	c := newCA(t, td, time.Now)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &webhookEnv{t: t, addr: ln.Addr().String(), roots: x509.NewCertPool(), audit: newMemAudit(t)}
	for _, a := range c.Bundle().X509Authorities() {
		e.roots.AddCert(a)
	}
	cfg := authority.WebhookConfig{
		Listener: ln, Service: "kzero-authority", Namespace: "kzero-system", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		CA: func() authority.ServingIssuer { return c },
		Namespaces: func(_ context.Context, name string) (*corev1.Namespace, error) {
			return namespace(name, name == "shop"), nil
		},
		Audit: e.audit, Log: slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	w, err := authority.NewWebhook(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, w.Run)
	return e
}

// review posts the creation of p in namespace shop to path, with the
// client certificates certs, and returns the status and the response.
func (e *webhookEnv) review(path string, p *corev1.Pod, certs ...tls.Certificate) (int, *admissionv1.AdmissionResponse, string) {
	e.t.Helper()
	raw, _ := json.Marshal(p)
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Operation: admissionv1.Create, Namespace: "shop", Name: p.Name, Object: runtime.RawExtension{Raw: raw}},
	})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.roots, Certificates: certs, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	resp, err := client.Post("https://"+e.addr+path, "application/json", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, strings.TrimSpace(string(b))
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, out.Response, ""
}

// event returns the one audit event recorded since the last.
func (e *webhookEnv) event() audit.Event {
	e.t.Helper()
	ev := e.audit.take()
	if len(ev) != 1 || ev[0].Admission == nil {
		e.t.Fatalf("audit events %+v, want one admission event", ev)
	}
	return ev[0]
}

func plainPod(name string, volumes ...corev1.Volume) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Spec: corev1.PodSpec{Volumes: volumes, Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
}

// TestWebhookClientAuthentication: with the client CA of kube-apiserver's
// webhook certificate, the webhook reads reviews only from a sender with
// that certificate; anyone else who reaches it (a pod, say) is refused,
// unread, and the refusal audited as unauthenticated.
func TestWebhookClientAuthentication(t *testing.T) {
	apiserverCA, otherCA := newClientCA(t, "webhook-client-ca"), newClientCA(t, "other-ca")
	e := newWebhookEnv(t, func(c *authority.WebhookConfig) {
		c.ClientCAs = apiserverCA.pool()
		c.ClientNames = []string{"kube-apiserver-webhook-client"}
	})
	apiserver := apiserverCA.issue(t, "kube-apiserver-webhook-client")

	status, resp, _ := e.review(authority.MutatePodsPath, plainPod("web"), apiserver)
	if status != http.StatusOK || !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("kube-apiserver's review: %d %+v, want the identity patch", status, resp)
	}
	ev := e.event()
	if p := ev.Admission; p.Caller != "kube-apiserver-webhook-client" || p.Unauthenticated || !p.Address.Addr().IsLoopback() || p.UID != "u-1" {
		t.Errorf("admission %+v, want caller kube-apiserver-webhook-client, authenticated, from loopback", p)
	}

	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		msg   string
	}{
		{"no certificate", nil,
			"webhook: no TLS client certificate: only kube-apiserver, with the client certificate of its AdmissionConfiguration, sends reviews here"},
		{"a certificate of another CA", []tls.Certificate{otherCA.issue(t, "kube-apiserver-webhook-client")},
			`webhook: the TLS client certificate "kube-apiserver-webhook-client" does not verify against the webhook's client CAs (x509: certificate signed by unknown authority): only kube-apiserver sends reviews here`},
		{"another name from the CA", []tls.Certificate{apiserverCA.issue(t, "someone")},
			`webhook: the TLS client certificate names ["someone"], none of ["kube-apiserver-webhook-client"]: only kube-apiserver sends reviews here`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{authority.MutatePodsPath, authority.ValidatePodsPath} {
				status, _, msg := e.review(path, plainPod("forged"), tc.certs...)
				if status != http.StatusUnauthorized || msg != tc.msg {
					t.Errorf("%s: %d %q\nwant 401 %q", path, status, msg, tc.msg)
				}
				ev := e.event()
				if p := ev.Admission; ev.Outcome != audit.OutcomeDeny || !p.Unauthenticated || p.Caller != "" || p.UID != "" || p.Name != "" || p.Allowed {
					t.Errorf("%s: event %s %+v, want an unread, unauthenticated refusal", path, ev.Outcome, p)
				}
				if !strings.HasPrefix(ev.Reason, "refused an AdmissionReview sent to "+path+" from 127.0.0.1:") {
					t.Errorf("%s: reason %q", path, ev.Reason)
				}
			}
		})
	}
}

// TestWebhookUnauthenticated: without a client CA, every review is read,
// and its audit event says that nothing proved where it came from.
func TestWebhookUnauthenticated(t *testing.T) {
	e := newWebhookEnv(t, nil)
	status, resp, _ := e.review(authority.MutatePodsPath, plainPod("web"))
	if status != http.StatusOK || !resp.Allowed {
		t.Fatalf("%d %+v", status, resp)
	}
	if p := e.event().Admission; !p.Unauthenticated || p.Caller != "" || p.UID != "u-1" {
		t.Errorf("admission %+v, want the review's, marked unauthenticated", p)
	}
}

// TestWebhookRefusesHostPath: the pod admission webhook refuses a pod of
// an enrolled namespace that mounts the node's filesystem, and audits it.
func TestWebhookRefusesHostPath(t *testing.T) {
	e := newWebhookEnv(t, nil)
	debug := plainPod("debug", corev1.Volume{Name: "sock", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: "/run/kzero/agent"}}})
	status, resp, _ := e.review(authority.ValidatePodsPath, debug)
	want := `pod shop/debug mounts the node's filesystem (hostPath /run/kzero/agent as volume "sock"): enrolled namespaces refuse hostPath volumes`
	if status != http.StatusOK || resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusForbidden || !strings.HasPrefix(resp.Result.Message, want) {
		t.Fatalf("%d %+v, want a 403 refusal: %s...", status, resp, want)
	}
	ev := e.event()
	if ev.Outcome != audit.OutcomeDeny || ev.Admission.Allowed || ev.Reason != "pod admission webhook refused the pod: "+resp.Result.Message {
		t.Errorf("event %s %q %+v", ev.Outcome, ev.Reason, ev.Admission)
	}
	status, resp, _ = e.review(authority.ValidatePodsPath, plainPod("web"))
	if status != http.StatusOK || !resp.Allowed || resp.Patch != nil {
		t.Errorf("a pod without hostPath: %d %+v", status, resp)
	}
	if ev := e.event(); ev.Reason != "pod admission webhook: no hostPath volume in a pod of enrolled namespace shop" {
		t.Errorf("reason %q", ev.Reason)
	}
}
