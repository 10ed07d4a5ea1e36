package meshbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/mesh"
	"kzero.dev/kzero/internal/redirect"
	"kzero.dev/kzero/internal/tunnel"
)

// podEnv holds, in a child's environment, the JSON podSpec of the pod it
// runs.
const podEnv = "KZERO_MESHBENCH_POD"

// podSpec is one mesh pod, as a child process runs it: the agent's side
// of one pod, alone in its process so that its CPU time and memory are
// its own.
type podSpec struct {
	Netns string
	Name  string
	IP    netip.Addr
	// Cert, Key and Bundle are PEM files: the pod's SVID and the trust
	// bundle.
	Cert, Key, Bundle string
	// PeerIP and PeerID are the other pod, which this one's outbound
	// connections to PeerIP reach through the tunnel; any other
	// destination is passed through. Zero: none.
	PeerIP netip.Addr
	PeerID string
	// AllowFrom is the SPIFFE ID whose streams this pod lets in.
	AllowFrom string
}

// runPod is a child's whole life: it starts the pod, says "ready" on
// stdout, and serves it until stdin ends. A line "profile <file>" on
// stdin starts a CPU profile, "stop" ends it; each is answered "ok".
func runPod(raw []byte) error {
	var s podSpec
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	svid, err := x509svid.Load(s.Cert, s.Key)
	if err != nil {
		return err
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), s.Bundle)
	if err != nil {
		return err
	}
	allow, err := spiffeid.FromString(s.AllowFrom)
	if err != nil {
		return err
	}
	r := resolver{peer: s.PeerIP}
	if s.PeerID != "" {
		if r.id, err = spiffeid.FromString(s.PeerID); err != nil {
			return err
		}
	}
	// The metrics, as the agent keeps them: their cost is the mesh's.
	metrics, err := mesh.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return err
	}
	pod, err := mesh.Start(mesh.PodConfig{
		Netns: s.Netns, Name: s.Name, IPs: []netip.Addr{s.IP},
		SVID: svid, Bundle: bundle, Resolver: r, Metrics: metrics,
		Authorize: func(_ context.Context, req tunnel.Request) tunnel.Decision {
			if req.Source == allow {
				return tunnel.Decision{Allow: true, Reason: "the benchmark's client"}
			}
			return tunnel.Decision{Reason: fmt.Sprintf("only %s may reach this pod", allow)}
		},
	})
	if err != nil {
		return err
	}
	defer pod.Close()
	fmt.Fprintln(os.Stdout, "ready")
	var profile *os.File
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		verb, arg, _ := strings.Cut(in.Text(), " ")
		switch verb {
		case "profile":
			if profile, err = os.Create(arg); err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(profile); err != nil {
				return err
			}
		case "stop":
			if profile == nil {
				return errors.New("stop without profile")
			}
			pprof.StopCPUProfile()
			if err := profile.Close(); err != nil {
				return err
			}
			profile = nil
		default:
			return fmt.Errorf("no such command %q", in.Text())
		}
		fmt.Fprintln(os.Stdout, "ok")
	}
	return in.Err()
}

// resolver sends the connections to peer through the tunnel, to peer's
// endpoint, which must prove id; it passes the others through.
type resolver struct {
	peer netip.Addr
	id   spiffeid.ID
}

func (r resolver) Resolve(_ context.Context, dst netip.AddrPort) (mesh.Destination, error) {
	if !r.peer.IsValid() || dst.Addr() != r.peer {
		return mesh.Destination{}, nil
	}
	return mesh.Destination{Mesh: true, Endpoint: netip.AddrPortFrom(r.peer, redirect.TunnelPort), ID: r.id, Addr: dst}, nil
}

// podProc is a child process that runs one pod.
type podProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	log   string
}

// startPod starts a child that runs s, and waits until it is ready; the
// test's cleanup ends it. dir receives its log.
func startPod(tb testing.TB, dir string, s podSpec) *podProc {
	tb.Helper()
	spec, err := json.Marshal(s)
	if err != nil {
		tb.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	p := &podProc{cmd: exec.Command(exe), lines: make(chan string), log: filepath.Join(dir, s.Name+".log")}
	p.cmd.Env = append(os.Environ(), podEnv+"="+string(spec))
	logf, err := os.Create(p.log)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	p.cmd.Stderr = logf
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.stop)
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	if err := p.await("ready"); err != nil {
		tb.Fatalf("pod %s: %v", s.Name, err)
	}
	return p
}

// Pid is the child's process ID.
func (p *podProc) pid() int { return p.cmd.Process.Pid }

// do sends the child a command and waits for its answer.
func (p *podProc) do(command string) error {
	if _, err := fmt.Fprintln(p.in, command); err != nil {
		return err
	}
	return p.await("ok")
}

// await waits up to 10 s for the child's next line, which must be want.
func (p *podProc) await(want string) error {
	select {
	case line, ok := <-p.lines:
		if !ok {
			logged, _ := os.ReadFile(p.log)
			return fmt.Errorf("the child ended; its log: %s", logged)
		}
		if line != want {
			return fmt.Errorf("the child said %q, want %q", line, want)
		}
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("the child did not answer within 10 s")
	}
}

// stop ends the child: its stdin closes, and it closes its pod; killed if
// it has not ended 5 s later.
func (p *podProc) stop() {
	_ = p.in.Close()
	done := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}
