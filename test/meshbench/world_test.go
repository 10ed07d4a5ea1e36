package meshbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/ca/svidtest"
	"kzero.dev/kzero/internal/redirect"
	"kzero.dev/kzero/internal/redirect/netnstest"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// appPort is the application's, in the server's namespace.
const appPort = 8080

// answer is what the application answers a GET with: 100 bytes.
var answer = []byte(strings.Repeat("kzero", 19) + "mesh\n")

// setup is one way from the client, in its namespace, to the
// application, in another.
type setup struct {
	name string
	// from is the client's namespace; to is where it connects.
	from string
	to   netip.AddrPort
	// sides are the proxies: the one beside the client, then the one
	// beside the server; none when direct.
	sides []side
}

// side is one proxy's processes.
type side struct {
	name string
	pids func() []int
	// pod is the mesh's child process, which can profile itself; nil
	// for nginx.
	pod *podProc
}

// world is the three setups, each in a pair of namespaces of its own,
// built once for all the benchmarks of a run.
type world struct {
	direct, mesh *setup
	// nginx is the nginx pair's HTTP proxies, and nginxStream its stream
	// (TCP) proxies, for the bulk stream; nil when missing, and noNginx
	// or noStream says why.
	nginx, nginxStream *setup
	noNginx, noStream  string
}

func newWorld(b *testing.B) *world {
	b.Helper()
	dir := b.TempDir()
	w := &world{}

	client, server := netnstest.Pair(b)
	serveApp(b, server)
	w.direct = &setup{name: "direct", from: client.Path, to: netip.AddrPortFrom(server.IP, appPort)}

	client, server = netnstest.Pair(b)
	serveApp(b, server)
	w.mesh = &setup{name: "mesh", from: client.Path, to: netip.AddrPortFrom(server.IP, appPort)}
	ca := svidtest.New(b, td)
	clientSVID, serverSVID := ca.SVID("bench", "client"), ca.SVID("bench", "server")
	bundle, err := ca.Bundle().Marshal()
	if err != nil {
		b.Fatal(err)
	}
	bundleFile := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundleFile, bundle, 0o600); err != nil {
		b.Fatal(err)
	}
	// The server's pod first: the client's reaches it.
	pods := map[string]*podProc{}
	for _, p := range []struct {
		name        string
		ns          netnstest.NS
		svid, other *x509svid.SVID
		peer        netip.Addr
	}{
		{"server", server, serverSVID, clientSVID, netip.Addr{}},
		{"client", client, clientSVID, serverSVID, server.IP},
	} {
		name := p.name
		spec := podSpec{
			Netns: p.ns.Path, Name: name, IP: p.ns.IP, Bundle: bundleFile,
			Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"),
			PeerIP: p.peer, AllowFrom: p.other.ID.String(),
		}
		if p.peer.IsValid() {
			spec.PeerID = p.other.ID.String()
		}
		certs, key, err := p.svid.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(spec.Cert, certs, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(spec.Key, key, 0o600); err != nil {
			b.Fatal(err)
		}
		pods[name] = startPod(b, dir, spec)
		// The rules after the pod's listeners, as the agent does.
		if err := redirect.Install(p.ns.Path, redirect.Config{}); err != nil {
			b.Fatal(err)
		}
	}
	for _, name := range []string{"client", "server"} {
		pod := pods[name]
		w.mesh.sides = append(w.mesh.sides, side{name: name, pids: func() []int { return []int{pod.pid()} }, pod: pod})
	}

	if _, err := os.Stat(nginxBin); err != nil {
		w.noNginx = fmt.Sprintf("no %s: install Debian's nginx (hack/cluster/install-deps.sh does)", nginxBin)
		w.noStream = w.noNginx
	} else {
		client, server = netnstest.Pair(b)
		serveApp(b, server)
		_, err := os.Stat(streamModule)
		stream := err == nil
		if !stream {
			w.noStream = fmt.Sprintf("no %s: Debian's package libnginx-mod-stream has nginx's stream module", streamModule)
		}
		cs, ss := nginxPair(b, dir, client.IP, server.IP, netip.AddrPortFrom(server.IP, appPort), stream)
		serverNginx := startNginx(b, server.Name, ss)
		clientNginx := startNginx(b, client.Name, cs)
		sides := []side{{name: "client", pids: clientNginx.pids}, {name: "server", pids: serverNginx.pids}}
		w.nginx = &setup{name: "nginx", from: client.Path, to: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), nginxHTTPPort), sides: sides}
		if stream {
			w.nginxStream = &setup{name: "nginx-stream", from: client.Path, to: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), nginxStreamPort), sides: sides}
		}
		if err := waitAnswer(w.nginx); err != nil {
			b.Fatalf("nginx: %v; client side's log: %s; server side's: %s", err, clientNginx.errorLog(), serverNginx.errorLog())
		}
	}
	for _, s := range []*setup{w.direct, w.mesh, w.nginxStream} {
		if s == nil {
			continue
		}
		if err := waitAnswer(s); err != nil {
			b.Fatalf("%s: %v", s.name, err)
		}
	}
	return w
}

// serveApp runs the application in ns on appPort until the test ends:
// a GET is answered with answer, a POST with the length of its body,
// read to its end.
func serveApp(tb testing.TB, ns netnstest.NS) {
	tb.Helper()
	ln, err := redirect.ListenIn(ns.Path, fmt.Sprintf("0.0.0.0:%d", appPort))
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
				_, _ = w.Write(answer)
				return
			}
			buf := make([]byte, 256<<10)
			var n int64
			for {
				m, err := r.Body.Read(buf)
				n += int64(m)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
			}
			_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
}

// dial connects from the client's namespace, unmarked: the mesh's rules
// capture it.
func (s *setup) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	return redirect.DialIn(ctx, s.from, ap, 0)
}

// client is an HTTP/1.1 client from the client's namespace, which keeps
// its connections alive or makes one for each request.
func (s *setup) client(keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: s.dial, DisableKeepAlives: !keepAlive, DisableCompression: true,
			MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
		},
	}
}

// get asks for the application's answer and reads it all.
func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || n != int64(len(answer)) {
		return fmt.Errorf("%s: %d bytes of %s", url, n, resp.Status)
	}
	return nil
}

// waitAnswer waits up to 10 s for the setup's first answer.
func waitAnswer(s *setup) error {
	c := s.client(false)
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = get(c, "http://"+s.to.String()+"/"); err == nil {
			return nil
		}
	}
	return err
}

// upload sends one HTTP/1.1 POST over one connection, chunked, 1 MiB
// chunks for d, and returns the bytes of the body and the time from the
// first byte sent to the answer, which must count them all.
func upload(s *setup, d time.Duration) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	c, err := s.dial(ctx, "tcp", s.to.String())
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d + 30*time.Second))
	chunk := make([]byte, 1<<20)
	frame := append(append([]byte(fmt.Sprintf("%x\r\n", len(chunk))), chunk...), "\r\n"...)
	start := time.Now()
	if _, err := fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n", s.to); err != nil {
		return 0, 0, err
	}
	var sent int64
	for time.Since(start) < d {
		if _, err := c.Write(frame); err != nil {
			return sent, 0, err
		}
		sent += int64(len(chunk))
	}
	if _, err := io.WriteString(c, "0\r\n\r\n"); err != nil {
		return sent, 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return sent, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	elapsed := time.Since(start)
	_ = resp.Body.Close()
	if err != nil {
		return sent, 0, err
	}
	if resp.StatusCode != http.StatusOK || string(body) != strconv.FormatInt(sent, 10) {
		return sent, 0, fmt.Errorf("sent %d bytes, the application answered %s: %q", sent, resp.Status, body)
	}
	return sent, elapsed, nil
}
