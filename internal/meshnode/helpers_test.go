package meshnode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/svidtest"
	"kzero.dev/kzero/internal/cni"
	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/mesh"
	"kzero.dev/kzero/internal/meshnode"
	"kzero.dev/kzero/internal/meshpolicy"
	"kzero.dev/kzero/internal/policy"
	"kzero.dev/kzero/internal/redirect"
	"kzero.dev/kzero/internal/redirect/netnstest"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// waitFor is how long a poll waits for what the node does in the
// background.
const waitFor = 5 * time.Second

// eventually calls f until it returns nil, for up to waitFor, and fails
// the test with f's last error otherwise.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %s", what, err, waitFor)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakePods stands in for the agent's informer of the node's pods: a map
// by UID, which the test changes as the API server would. It reports
// every List (Run lists at each reconcile, once it has its context) and
// every UID asked for and not found (an ADD waiting for its pod).
type fakePods struct {
	mu     sync.Mutex
	byUID  map[types.UID]*kubeobj.Pod
	listed chan struct{}
	missed chan types.UID
}

func newFakePods(pods ...*kubeobj.Pod) *fakePods {
	p := &fakePods{byUID: map[types.UID]*kubeobj.Pod{}, listed: make(chan struct{}, 1), missed: make(chan types.UID, 16)}
	for _, pod := range pods {
		p.set(pod)
	}
	return p
}

func (p *fakePods) set(pod *kubeobj.Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.byUID[pod.UID] = pod
}

func (p *fakePods) remove(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.byUID, uid)
}

func (p *fakePods) PodByUID(uid types.UID) (*kubeobj.Pod, bool) {
	p.mu.Lock()
	pod, ok := p.byUID[uid]
	p.mu.Unlock()
	if !ok {
		select {
		case p.missed <- uid:
		default:
		}
	}
	return pod, ok
}

func (p *fakePods) List() []*kubeobj.Pod {
	p.mu.Lock()
	out := make([]*kubeobj.Pod, 0, len(p.byUID))
	for _, pod := range p.byUID {
		out = append(out, pod)
	}
	p.mu.Unlock()
	select {
	case p.listed <- struct{}{}:
	default:
	}
	return out
}

// newPod is a running pod of namespace/name with service account sa at
// ip.
func newPod(namespace, name, sa string, ip netip.Addr) *kubeobj.Pod {
	pod := &kubeobj.Pod{}
	pod.Namespace, pod.Name, pod.UID = namespace, name, types.UID("uid-"+namespace+"-"+name)
	pod.Spec.ServiceAccountName = sa
	pod.Status.Phase = kubeobj.PodRunning
	pod.Status.PodIP = ip.String()
	pod.Status.PodIPs = []kubeobj.PodIP{{IP: ip.String()}}
	return pod
}

// enrollment says which namespaces are enrolled, and in which mode, as
// the agent's namespace informer does; the test changes it.
type enrollment struct {
	mu    sync.Mutex
	modes map[string]mesh.Mode // absent: not enrolled
	gate  *gate
}

// gate holds the next call of Enrolled: it says it entered, waits to be
// released, then answers "not enrolled".
type gate struct {
	entered, release chan struct{}
	once             sync.Once
}

func (e *enrollment) Enrolled(namespace string) (bool, mesh.Mode) {
	e.mu.Lock()
	g := e.gate
	e.gate = nil
	m, ok := e.modes[namespace]
	e.mu.Unlock()
	if g != nil {
		close(g.entered)
		<-g.release
		return false, mesh.Strict
	}
	return ok, m
}

// hold makes the next call of Enrolled wait until open is called, or
// the test ends.
func (e *enrollment) hold(t *testing.T) *gate {
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(g.open) // before Run ends, which waits for the call
	e.mu.Lock()
	defer e.mu.Unlock()
	e.gate = g
	return g
}

func (g *gate) open() {
	g.once.Do(func() { close(g.release) })
}

func (e *enrollment) set(namespace string, m mesh.Mode) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.modes == nil {
		e.modes = map[string]mesh.Mode{}
	}
	e.modes[namespace] = m
}

func (e *enrollment) remove(namespace string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.modes, namespace)
}

// caSigner signs with a real CA in the test's process, as the authority
// does for the agent.
type caSigner struct{ ca *svidtest.CA }

func (s caSigner) SignX509SVID(_ context.Context, id spiffeid.ID, csr []byte) ([][]byte, error) {
	svid, err := s.ca.CA.IssueX509SVID(ca.X509Request{ID: id, CSR: csr})
	if err != nil {
		return nil, err
	}
	return svid.Chain, nil
}

func (s caSigner) SignJWTSVID(context.Context, spiffeid.ID, []string) (string, error) {
	return "", errors.New("the mesh asks for no JWT-SVID")
}

// resolver says that the pods of mesh are in the mesh, reached through
// their tunnel endpoints, but for their port 8082, which stands for a
// destination outside it; every other address is outside the mesh.
type resolver struct{ mesh map[netip.Addr]spiffeid.ID }

func (r resolver) Resolve(_ context.Context, dst netip.AddrPort) (mesh.Destination, error) {
	id, ok := r.mesh[dst.Addr()]
	if !ok || dst.Port() == 8082 {
		return mesh.Destination{}, nil
	}
	return mesh.Destination{Mesh: true, Endpoint: netip.AddrPortFrom(dst.Addr(), redirect.TunnelPort), ID: id, Addr: dst}, nil
}

// auditLog collects the events the node audits.
type auditLog struct {
	mu  sync.Mutex
	all []audit.Event
}

func (l *auditLog) record(e audit.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, e)
}

// wait returns the first event match says is the one, waiting for it.
func (l *auditLog) wait(t *testing.T, what string, match func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		l.mu.Lock()
		i := slices.IndexFunc(l.all, match)
		var ev audit.Event
		if i >= 0 {
			ev = l.all[i]
		}
		all := slices.Clone(l.all)
		l.mu.Unlock()
		if i >= 0 {
			return ev
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event %s; the events: %s", what, jsonOf(all))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// find returns the first event so far match says is the one.
func (l *auditLog) find(match func(audit.Event) bool) (audit.Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i := slices.IndexFunc(l.all, match); i >= 0 {
		return l.all[i], true
	}
	return audit.Event{}, false
}

// checkValid checks every event so far as the agent's audit.Recorder
// would: stamped with the schema, a time and an ID, which the node
// leaves to it, then validated.
func (l *auditLog) checkValid(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	all := slices.Clone(l.all)
	l.mu.Unlock()
	for i, e := range all {
		if err := stamped(e).Validate(); err != nil {
			t.Errorf("audit event %d is invalid: %v\n%s", i, err, jsonOf(e))
		}
	}
}

// stamped is e as the Recorder writes it.
func stamped(e audit.Event) *audit.Event {
	e.Schema = audit.Schema
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.ID == "" {
		e.ID = "0123456789abcdef0123456789abcdef"
	}
	return &e
}

func jsonOf(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}

// logBuffer keeps the node's log, shown when the test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// compile is the engine of the AccessPolicies in text.
func compile(t *testing.T, text string) *policy.Engine {
	t.Helper()
	ps, err := policy.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.Compile(ps, policy.Options{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// ordersIngress lets shop's web call shop's orders on port 8080 only.
const ordersIngress = `apiVersion: kzero.dev/v1alpha1
kind: AccessPolicy
metadata: {name: orders-ingress, namespace: shop}
spec:
  selector: {serviceAccounts: [orders]}
  rules:
  - name: web-calls
    from: [{serviceAccounts: [web]}]
    to: [{ports: [8080]}]
`

// env is a Node with its fakes.
type env struct {
	node      *meshnode.Node
	pods      *fakePods
	enrolled  *enrollment
	audit     *auditLog
	ca        *svidtest.CA
	trigger   chan struct{}
	workloads map[netip.Addr]policy.Workload
}

// envConfig is what differs between the tests' nodes.
type envConfig struct {
	pods []*kubeobj.Pod
	// mesh are the addresses the resolver says are in the mesh.
	mesh map[netip.Addr]spiffeid.ID
	// workloads are the policy's destinations, by address.
	workloads map[netip.Addr]policy.Workload
	policies  string
	podOf     func(pid int32) (types.UID, error)
}

func newEnv(t *testing.T, c envConfig) *env {
	t.Helper()
	e := &env{
		pods: newFakePods(c.pods...), enrolled: &enrollment{}, audit: &auditLog{},
		ca: svidtest.New(t, td), trigger: make(chan struct{}, 1), workloads: c.workloads,
	}
	var policies meshpolicy.Policies
	policies.Set(compile(t, c.policies))
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the node's log:\n%s", logs)
		}
	})
	podOf := c.podOf
	if podOf == nil {
		podOf = func(int32) (types.UID, error) { return "", errors.New("not a pod's process") }
	}
	node, err := meshnode.New(meshnode.Config{
		TrustDomain: td, Pods: e.pods, Enrolled: e.enrolled.Enrolled,
		Signer: caSigner{e.ca}, Bundle: e.ca.Bundle(), Resolver: resolver{mesh: c.mesh},
		Workload: func(ip netip.Addr) (policy.Workload, bool) {
			w, ok := e.workloads[ip]
			return w, ok
		},
		Policies: &policies, Audit: e.audit.record, PodOf: podOf,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.node = node
	return e
}

// run runs the node until the returned function is called, which ends
// Run and returns its error. It returns once Run has its context, when
// it first lists the pods.
func (e *env) run(t *testing.T) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.node.Run(ctx, e.trigger) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case <-e.pods.listed:
	case err := <-done:
		t.Fatalf("Run returned at once: %v", err)
	case <-time.After(waitFor):
		t.Fatal("Run did not list the pods")
	}
	return stop
}

// reconcile has Run reconcile now.
func (e *env) reconcile() {
	select {
	case e.trigger <- struct{}{}:
	default: // one is pending: it reconciles after the change too
	}
}

// serveCNI serves the plugin on a socket in a temporary directory, until
// the test ends, and returns the socket's path.
func (e *env) serveCNI(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cni", "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.node.ServeCNI(ctx, path) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("ServeCNI returned %v, want context.Canceled", err)
		}
	})
	eventually(t, "the plugin's socket", func() error {
		_, err := os.Stat(path)
		return err
	})
	return path
}

// plugin sends body, and f as its file descriptor when not nil, to the
// agent on socket as the chained plugin does, and returns the answer.
func plugin(t *testing.T, socket string, body []byte, f *os.File) cni.Reply {
	t.Helper()
	r, err := send(socket, body, f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// send is plugin for any goroutine.
func send(socket string, body []byte, f *os.File) (cni.Reply, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return cni.Reply{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var fds []int
	if f != nil {
		fds = []int{int(f.Fd())}
	}
	if err := cni.WriteMessage(conn, body, fds); err != nil {
		return cni.Reply{}, err
	}
	b, fd, err := cni.ReadMessage(conn)
	if err != nil {
		return cni.Reply{}, err
	}
	if fd != nil {
		_ = fd.Close()
		return cni.Reply{}, errors.New("the agent's reply came with a file descriptor")
	}
	var r cni.Reply
	if err := json.Unmarshal(b, &r); err != nil {
		return cni.Reply{}, fmt.Errorf("the agent's reply %q: %w", b, err)
	}
	return r, nil
}

// add sends the ADD of pod, with the network namespace at netns (none
// when ""), and returns the answer.
func add(t *testing.T, socket string, pod *kubeobj.Pod, netns string) cni.Reply {
	t.Helper()
	req := addRequest(pod)
	req.Netns = netns
	var f *os.File
	if netns != "" {
		var err error
		f, err = os.Open(netns)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
	}
	return plugin(t, socket, cni.Encode(req), f)
}

// addRequest is what the plugin relays of pod's ADD.
func addRequest(pod *kubeobj.Pod) cni.Request {
	req := cni.Request{
		ContainerID: "sandbox-" + string(pod.UID), Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID),
	}
	for _, ip := range pod.Status.PodIPs {
		req.IPs = append(req.IPs, netip.MustParseAddr(ip.IP))
	}
	return req
}

// installed reports whether netns holds the capture rules.
func installed(t *testing.T, netns string) bool {
	t.Helper()
	ok, err := redirect.Installed(netns)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// callFrom is call from the address from, not captured on its way out.
func callFrom(t *testing.T, netns string, from netip.Addr, dst netip.AddrPort, msg string) (string, error) {
	t.Helper()
	var c net.Conn
	err := redirect.Do(netns, func() error {
		d := net.Dialer{Timeout: waitFor, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))}
		var err error
		c, err = d.DialContext(t.Context(), "tcp4", dst.String())
		return err
	})
	if err != nil {
		return "", err
	}
	return netnstest.Exchange(c, msg)
}

// sleeper starts a process in the network namespace name, a stand-in for
// a process of a pod, and returns its PID once it runs there (before, it
// is in the test's namespace: a reconcile that found it then would
// capture the host); it is ended, by its PID, when the test ends.
func sleeper(t *testing.T, name, path string) int {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", name, "sleep", "60") //nolint:gosec // the test's own namespace
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pod's process in its namespace", func() error {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
			return err
		}
		if st.Dev != want.Dev || st.Ino != want.Ino {
			return errors.New("not in the namespace yet")
		}
		return nil
	})
	return pid
}
