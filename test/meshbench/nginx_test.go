package meshbench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"kzero.dev/kzero/internal/redirect/netnstest"
)

// Debian's nginx, and its stream module (package libnginx-mod-stream),
// which the benchmark uses when it is there.
const (
	nginxBin     = "/usr/sbin/nginx"
	streamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"
)

// The ports of the nginx pair: the client side's plain HTTP and stream
// listeners on loopback, and the server side's TLS listeners.
const (
	nginxHTTPPort   = 18080
	nginxStreamPort = 18081
	nginxTLSPort    = 8443
	nginxStreamTLS  = 8444
	serverName      = "server.meshbench"
)

// nginxConf is both sides' configuration: one worker, TLS 1.3 only with
// ECDSA P-256 certificates, each side verifying the other's against the
// CA; keep-alive everywhere a connection can be kept (the client's, the
// TLS pair's, the server side's to the application) and bodies streamed,
// not buffered.
var nginxConf = template.Must(template.New("nginx.conf").Parse(`{{if .Stream}}load_module {{.StreamModule}};
{{end}}daemon off;
worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 16384; }
http {
	access_log off;
	client_body_temp_path {{.Dir}}/body;
	proxy_temp_path {{.Dir}}/proxy;
	fastcgi_temp_path {{.Dir}}/fastcgi;
	uwsgi_temp_path {{.Dir}}/uwsgi;
	scgi_temp_path {{.Dir}}/scgi;
	client_max_body_size 0;
	keepalive_requests 1000000;
	keepalive_timeout 600s;
	proxy_http_version 1.1;
	proxy_set_header Connection "";
	proxy_request_buffering off;
	proxy_buffering off;
{{- if .Client}}
	upstream peer {
		server {{.Peer}}:{{.TLSPort}};
		keepalive 64;
		keepalive_requests 1000000;
		keepalive_timeout 600s;
	}
	server {
		listen 127.0.0.1:{{.HTTPPort}};
		location / {
			proxy_pass https://peer;
			proxy_ssl_certificate {{.Cert}};
			proxy_ssl_certificate_key {{.Key}};
			proxy_ssl_trusted_certificate {{.CA}};
			proxy_ssl_verify on;
			proxy_ssl_name {{.ServerName}};
			proxy_ssl_protocols TLSv1.3;
			proxy_ssl_session_reuse on;
		}
	}
{{- else}}
	upstream app {
		server {{.App}};
		keepalive 64;
		keepalive_requests 1000000;
		keepalive_timeout 600s;
	}
	server {
		listen {{.Self}}:{{.TLSPort}} ssl;
		ssl_certificate {{.Cert}};
		ssl_certificate_key {{.Key}};
		ssl_client_certificate {{.CA}};
		ssl_verify_client on;
		ssl_protocols TLSv1.3;
		location / {
			proxy_pass http://app;
		}
	}
{{- end}}
}
{{- if .Stream}}
stream {
	server {
{{- if .Client}}
		listen 127.0.0.1:{{.StreamPort}};
		proxy_pass {{.Peer}}:{{.StreamTLS}};
		proxy_ssl on;
		proxy_ssl_certificate {{.Cert}};
		proxy_ssl_certificate_key {{.Key}};
		proxy_ssl_trusted_certificate {{.CA}};
		proxy_ssl_verify on;
		proxy_ssl_name {{.ServerName}};
		proxy_ssl_protocols TLSv1.3;
{{- else}}
		listen {{.Self}}:{{.StreamTLS}} ssl;
		ssl_certificate {{.Cert}};
		ssl_certificate_key {{.Key}};
		ssl_client_certificate {{.CA}};
		ssl_verify_client on;
		ssl_protocols TLSv1.3;
		proxy_pass {{.App}};
{{- end}}
	}
}
{{- end}}
`))

// nginxSide is what nginxConf needs for one side.
type nginxSide struct {
	// Client says this is the side beside the client, which Peer's
	// server side answers; otherwise it is the server side, on Self,
	// beside App.
	Client           bool
	Dir              string
	Self, Peer       netip.Addr
	App              netip.AddrPort
	Cert, Key, CA    string
	Stream           bool
	StreamModule     string
	ServerName       string
	HTTPPort         int
	StreamPort       int
	TLSPort          int
	StreamTLS        int
	keyUsage         x509.ExtKeyUsage
	commonName, name string
}

// nginxPair writes the certificates and configurations of both sides into
// dir: a CA, and a P-256 certificate for each side issued by it.
func nginxPair(tb testing.TB, dir string, client, server netip.Addr, app netip.AddrPort, stream bool) (nginxSide, nginxSide) {
	tb.Helper()
	caKey, caCert := issue(tb, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "meshbench CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	})
	caFile := filepath.Join(dir, "ca.crt")
	writePEM(tb, caFile, "CERTIFICATE", caCert.Raw)
	sides := [2]nginxSide{
		{Client: true, Self: client, Peer: server, keyUsage: x509.ExtKeyUsageClientAuth, commonName: "client.meshbench", name: "client"},
		{Self: server, App: app, keyUsage: x509.ExtKeyUsageServerAuth, commonName: serverName, name: "server"},
	}
	for i := range sides {
		s := &sides[i]
		s.Dir = filepath.Join(dir, "nginx-"+s.name)
		if err := os.MkdirAll(s.Dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		key, cert := issue(tb, caKey, caCert, &x509.Certificate{
			Subject: pkix.Name{CommonName: s.commonName}, DNSNames: []string{s.commonName},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{s.keyUsage},
		})
		s.Cert, s.Key, s.CA = filepath.Join(s.Dir, "tls.crt"), filepath.Join(s.Dir, "tls.key"), caFile
		writePEM(tb, s.Cert, "CERTIFICATE", cert.Raw)
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		writePEM(tb, s.Key, "PRIVATE KEY", der)
		s.Stream, s.StreamModule, s.ServerName = stream, streamModule, serverName
		s.HTTPPort, s.StreamPort, s.TLSPort, s.StreamTLS = nginxHTTPPort, nginxStreamPort, nginxTLSPort, nginxStreamTLS
		f, err := os.Create(filepath.Join(s.Dir, "nginx.conf"))
		if err != nil {
			tb.Fatal(err)
		}
		if err := nginxConf.Execute(f, s); err != nil {
			tb.Fatal(err)
		}
		if err := f.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	return sides[0], sides[1]
}

// issue makes a P-256 key and a certificate of it from tmpl, signed by
// parent's key, or by its own when parent is nil.
func issue(tb testing.TB, parentKey *ecdsa.PrivateKey, parent, tmpl *x509.Certificate) (*ecdsa.PrivateKey, *x509.Certificate) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return key, cert
}

func writePEM(tb testing.TB, file, kind string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// nginxProc is one side's nginx master process, in its namespace.
type nginxProc struct {
	cmd *exec.Cmd
	dir string
}

// startNginx runs side's nginx in the namespace named netns; the test's
// cleanup ends it. `ip netns exec` execs nginx in place: the process is
// nginx's master.
func startNginx(tb testing.TB, netns string, side nginxSide) *nginxProc {
	tb.Helper()
	n := &nginxProc{dir: side.Dir}
	n.cmd = exec.Command("ip", "netns", "exec", netns, nginxBin, "-p", side.Dir, "-c", filepath.Join(side.Dir, "nginx.conf"), "-e", filepath.Join(side.Dir, "error.log"))
	n.cmd.Stdout, n.cmd.Stderr = os.Stderr, os.Stderr
	if err := n.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(n.stop)
	return n
}

// pids are the master's and its workers'.
func (n *nginxProc) pids() []int {
	return append([]int{n.cmd.Process.Pid}, children(n.cmd.Process.Pid)...)
}

// errorLog is what nginx logged.
func (n *nginxProc) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	return strings.TrimSpace(string(b))
}

// stop asks nginx to stop at once (SIGTERM), and kills it if it has not
// 5 s later.
func (n *nginxProc) stop() {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = n.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
	}
}

// TestNginxConfigLoads checks both sides' generated configurations with
// nginx -t, each in its namespace (nginx -t binds the listeners), where
// Debian's nginx is installed.
func TestNginxConfigLoads(t *testing.T) {
	if _, err := os.Stat(nginxBin); err != nil {
		t.Skipf("no %s: install Debian's nginx (hack/cluster/install-deps.sh does)", nginxBin)
	}
	_, err := os.Stat(streamModule)
	stream := err == nil
	a, b := netnstest.Pair(t)
	client, server := nginxPair(t, t.TempDir(), a.IP, b.IP, netip.AddrPortFrom(b.IP, 8080), stream)
	for _, s := range []struct {
		ns   netnstest.NS
		side nginxSide
	}{{a, client}, {b, server}} {
		out, err := exec.Command("ip", "netns", "exec", s.ns.Name, nginxBin, "-t", "-p", s.side.Dir, "-c", filepath.Join(s.side.Dir, "nginx.conf"), "-e", filepath.Join(s.side.Dir, "error.log")).CombinedOutput()
		if err != nil {
			t.Errorf("nginx -t, %s side: %v\n%s", s.side.name, err, out)
		}
	}
}
