package plugin

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"golang.org/x/sys/unix"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/cni"
)

const (
	containerID = "3f2a9c0d5e1b7a4c8d6e2f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c"
	podUID      = "8a1f4c2e-0b6d-4e5f-9a7c-1d2e3f4a5b6c"
)

// prevResult100 is what a bridge plugin and host-local hand on for a pod
// of a dual-stack cluster, in CNI 1.0.0.
const prevResult100 = `{
	"cniVersion": "1.0.0",
	"interfaces": [
		{"name": "cni0", "mac": "9a:5e:1c:2b:3d:4f"},
		{"name": "veth1a2b3c4d", "mac": "6e:2f:8a:91:0c:11"},
		{"name": "eth0", "mac": "0a:58:0a:f4:01:07", "sandbox": "/var/run/netns/cni-8a1f4c2e-0b6d-3e5f-9a7c-1d2e3f4a5b6c"}
	],
	"ips": [
		{"interface": 2, "address": "10.244.1.7/24", "gateway": "10.244.1.1"},
		{"interface": 2, "address": "fd00:10:244:1::7/64", "gateway": "fd00:10:244:1::1"}
	],
	"routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
}`

// prevResult040 is the same in CNI 0.4.0, where an address has a version
// and an empty "dns" is printed (1.0.0 leaves it out).
const prevResult040 = `{
	"cniVersion": "0.4.0",
	"interfaces": [
		{"name": "cni0", "mac": "9a:5e:1c:2b:3d:4f"},
		{"name": "veth1a2b3c4d", "mac": "6e:2f:8a:91:0c:11"},
		{"name": "eth0", "mac": "0a:58:0a:f4:01:07", "sandbox": "/var/run/netns/cni-8a1f4c2e-0b6d-3e5f-9a7c-1d2e3f4a5b6c"}
	],
	"ips": [
		{"version": "4", "interface": 2, "address": "10.244.1.7/24", "gateway": "10.244.1.1"},
		{"version": "6", "interface": 2, "address": "fd00:10:244:1::7/64", "gateway": "fd00:10:244:1::1"}
	],
	"routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
	"dns": {}
}`

// received is one call the fake agent had.
type received struct {
	req cni.Request
	// fd is the descriptor that came with it, nil when none did.
	fd *unix.Stat_t
}

// fakeAgent stands in for the node's kzero agent (internal/meshnode's
// servePlugin), which this package must not import: a real unix socket
// server that reads each call with cni.ReadMessage and answers with
// cni.WriteMessage, as the agent does, and records what it received.
type fakeAgent struct {
	// answer is the reply to a call; nil means hanging up without one.
	answer func(cni.Request) []byte
	// hang, when set, keeps calls waiting for an answer until the test
	// ends.
	hang bool

	ln      *net.UnixListener
	calls   chan received
	hangups atomic.Int32
	done    chan struct{}
	wg      sync.WaitGroup
}

// reply answers every call with r.
func reply(r cni.Reply) func(cni.Request) []byte {
	return func(cni.Request) []byte { return cni.Encode(r) }
}

// start listens on socket and serves until the test ends.
func (a *fakeAgent) start(t *testing.T, socket string) *fakeAgent {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	a.ln, a.calls, a.done = ln, make(chan received, 16), make(chan struct{})
	a.wg.Go(func() {
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			a.wg.Go(func() { a.serve(t, conn) })
		}
	})
	t.Cleanup(func() {
		close(a.done)
		_ = ln.Close()
		a.wg.Wait()
	})
	return a
}

func (a *fakeAgent) serve(t *testing.T, conn *net.UnixConn) {
	defer conn.Close() //nolint:errcheck // answered
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	body, fd, err := cni.ReadMessage(conn)
	if err != nil {
		// A plugin that connects and hangs up without a request: the
		// agent answers it an error, that nobody reads.
		a.hangups.Add(1)
		return
	}
	var got received
	if err := json.Unmarshal(body, &got.req); err != nil {
		t.Errorf("fake agent: the plugin's call is not a Request: %v\n%s", err, body)
	}
	if fd != nil {
		got.fd = &unix.Stat_t{}
		if err := unix.Fstat(int(fd.Fd()), got.fd); err != nil {
			t.Errorf("fake agent: fstat of the descriptor received: %v", err)
		}
		_ = fd.Close()
	}
	a.calls <- got
	if a.hang {
		<-a.done
		return
	}
	if a.answer == nil {
		return
	}
	if err := cni.WriteMessage(conn, a.answer(got.req), nil); err != nil {
		t.Errorf("fake agent: answering: %v", err)
	}
}

// call returns the agent's one call, failing when there were none or more.
func (a *fakeAgent) call(t *testing.T) received {
	t.Helper()
	var got received
	select {
	case got = <-a.calls:
	default:
		t.Fatal("the agent was not called")
	}
	select {
	case more := <-a.calls:
		t.Errorf("the agent was called again: %+v", more.req)
	default:
	}
	return got
}

// noCall fails when the agent was called.
func (a *fakeAgent) noCall(t *testing.T) {
	t.Helper()
	select {
	case got := <-a.calls:
		t.Errorf("the agent was called: %+v", got.req)
	default:
	}
	if n := a.hangups.Load(); n != 0 {
		t.Errorf("the agent had %d connections without a request", n)
	}
}

// node is a node's view of the plugin: where the agent's socket and list
// are, and a sandbox's network namespace (a plain file: the plugin only
// opens it and passes it on).
type node struct {
	socket, enrolled, netns string
}

func newNode(t *testing.T) *node {
	t.Helper()
	// Short, for a unix socket's path, which t.TempDir's may not be.
	dir, err := os.MkdirTemp("", "kzcni")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	n := &node{
		socket:   filepath.Join(dir, "agent.sock"),
		enrolled: filepath.Join(dir, "enrolled"),
		netns:    filepath.Join(dir, "cni-8a1f4c2e"),
	}
	if err := os.WriteFile(n.netns, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

// enroll writes the agent's list of enrolled namespaces.
func (n *node) enroll(t *testing.T, namespaces ...string) {
	t.Helper()
	if err := cni.WriteEnrolled(n.enrolled, namespaces); err != nil {
		t.Fatal(err)
	}
}

// conf is the plugin's network configuration as the runtime gives it:
// its entry of the .conflist, with the list's version and name and the
// previous plugins' result; extra fields are added to it.
func (n *node) conf(t *testing.T, cniVersion, prevResult string, extra map[string]any) []byte {
	t.Helper()
	c := map[string]any{
		"cniVersion":   cniVersion,
		"name":         "cbr0",
		"type":         "kzero-cni",
		"socket":       n.socket,
		"enrolledFile": n.enrolled,
	}
	if prevResult != "" {
		c["prevResult"] = json.RawMessage(prevResult)
	}
	for k, v := range extra {
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// args is a sandbox of pod namespace/name as kubelet's runtime describes
// it in CNI_ARGS.
func (n *node) args(namespace, name string, conf []byte) *skel.CmdArgs {
	return &skel.CmdArgs{
		ContainerID: containerID,
		Netns:       n.netns,
		IfName:      "eth0",
		Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=" + namespace + ";K8S_POD_NAME=" + name +
			";K8S_POD_INFRA_CONTAINER_ID=" + containerID + ";K8S_POD_UID=" + podUID,
		Path:      "/opt/cni/bin",
		StdinData: conf,
	}
}

// sameJSON fails unless got and want are the same JSON value.
func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("printed\n%s\nwant\n%s", got, want)
	}
}

func fstat(t *testing.T, path string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func TestAddEnrolledPod(t *testing.T) {
	n := newNode(t)
	agent := (&fakeAgent{answer: reply(cni.Reply{Enrolled: true})}).start(t, n.socket)
	var out bytes.Buffer
	p := Plugin{Stdout: &out}
	if err := p.Add(n.args("shop", "web-0", n.conf(t, "1.0.0", prevResult100, nil))); err != nil {
		t.Fatal(err)
	}
	sameJSON(t, out.Bytes(), prevResult100)

	got := agent.call(t)
	want := cni.Request{
		ContainerID: containerID,
		Netns:       n.netns,
		Namespace:   "shop",
		Name:        "web-0",
		UID:         podUID,
		IPs:         []netip.Addr{netip.MustParseAddr("10.244.1.7"), netip.MustParseAddr("fd00:10:244:1::7")},
		Gateways:    []netip.Addr{netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("fd00:10:244:1::1")},
	}
	if !reflect.DeepEqual(got.req, want) {
		t.Errorf("the agent received\n%+v\nwant\n%+v", got.req, want)
	}
	if err := got.req.Validate(); err != nil {
		t.Errorf("the agent would refuse the request: %v", err)
	}
	if got.fd == nil {
		t.Fatal("the agent received no descriptor for the network namespace")
	}
	if ns := fstat(t, n.netns); got.fd.Dev != ns.Dev || got.fd.Ino != ns.Ino {
		t.Errorf("the descriptor the agent received is inode %d, not the network namespace's %d", got.fd.Ino, ns.Ino)
	}
}

func TestAddPrintsThePreviousResult(t *testing.T) {
	for _, tc := range []struct {
		name, cniVersion, prevResult, want string
	}{
		{name: "1.0.0", cniVersion: "1.0.0", prevResult: prevResult100, want: prevResult100},
		{name: "0.4.0", cniVersion: "0.4.0", prevResult: prevResult040, want: prevResult040},
		{name: "1.1.0", cniVersion: "1.1.0", prevResult: strings.Replace(prevResult100, `"1.0.0"`, `"1.1.0"`, 1), want: strings.Replace(prevResult100, `"1.0.0"`, `"1.1.0"`, 1)},
		{
			// Before 1.0.0 a result need not say its version: that of the
			// configuration is taken.
			name: "0.4.0 without a version", cniVersion: "0.4.0",
			prevResult: strings.Replace(prevResult040, `"cniVersion": "0.4.0",`, "", 1),
			want:       prevResult040,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			agent := (&fakeAgent{answer: reply(cni.Reply{})}).start(t, n.socket)
			var out bytes.Buffer
			if err := (Plugin{Stdout: &out}).Add(n.args("shop", "web-0", n.conf(t, tc.cniVersion, tc.prevResult, nil))); err != nil {
				t.Fatal(err)
			}
			sameJSON(t, out.Bytes(), tc.want)
			got := agent.call(t)
			if want := []netip.Addr{netip.MustParseAddr("10.244.1.7"), netip.MustParseAddr("fd00:10:244:1::7")}; !reflect.DeepEqual(got.req.IPs, want) {
				t.Errorf("the agent received addresses %v, want %v", got.req.IPs, want)
			}
		})
	}
}

func TestAddAgentAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		agent   *fakeAgent
		plugin  Plugin
		netns   string // "" is the node's
		wantErr string
	}{
		{
			name:  "not enrolled",
			agent: &fakeAgent{answer: reply(cni.Reply{})},
		},
		{
			name:    "refused",
			agent:   &fakeAgent{answer: reply(cni.Reply{Enrolled: true, Error: "pod UID " + podUID + " is shop/web-1, not shop/web-0"})},
			wantErr: "kzero-cni: the kzero agent could not protect pod shop/web-0 of enrolled namespace shop, so it does not start: pod UID " + podUID + " is shop/web-1, not shop/web-0",
		},
		{
			name:    "hangs up",
			agent:   &fakeAgent{},
			wantErr: "kzero-cni: pod shop/web-0: the kzero agent did not answer: read unix @->%s: EOF",
		},
		{
			name:    "answers nonsense",
			agent:   &fakeAgent{answer: func(cni.Request) []byte { return []byte("ok") }},
			wantErr: "kzero-cni: pod shop/web-0: the kzero agent's answer is not JSON: invalid character 'o' looking for beginning of value",
		},
		{
			name:    "never answers",
			agent:   &fakeAgent{hang: true},
			plugin:  Plugin{Timeout: 100 * time.Millisecond},
			wantErr: "kzero-cni: pod shop/web-0: the kzero agent did not answer: read unix @->%s: i/o timeout",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			tc.agent.start(t, n.socket)
			var out bytes.Buffer
			tc.plugin.Stdout = &out
			err := tc.plugin.Add(n.args("shop", "web-0", n.conf(t, "1.0.0", prevResult100, nil)))
			tc.agent.call(t)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				sameJSON(t, out.Bytes(), prevResult100)
				return
			}
			if want := strings.Replace(tc.wantErr, "%s", n.socket, 1); err == nil || err.Error() != want {
				t.Errorf("Add error:\n%v\nwant:\n%s", err, want)
			}
			if out.Len() != 0 {
				t.Errorf("a failed ADD printed a result:\n%s", out.Bytes())
			}
		})
	}
}

func TestAddNoNetworkNamespace(t *testing.T) {
	n := newNode(t)
	agent := (&fakeAgent{answer: reply(cni.Reply{Enrolled: true})}).start(t, n.socket)
	args := n.args("shop", "web-0", n.conf(t, "1.0.0", prevResult100, nil))
	args.Netns = filepath.Join(filepath.Dir(n.netns), "gone")
	var out bytes.Buffer
	err := (Plugin{Stdout: &out}).Add(args)
	want := "kzero-cni: pod shop/web-0: the pod's network namespace: open " + args.Netns + ": no such file or directory"
	if err == nil || err.Error() != want {
		t.Errorf("Add error:\n%v\nwant:\n%s", err, want)
	}
	if out.Len() != 0 {
		t.Errorf("a failed ADD printed a result:\n%s", out.Bytes())
	}
	// The plugin connects before it opens the namespace, so the agent
	// sees a connection, but never a request.
	select {
	case got := <-agent.calls:
		t.Errorf("the agent was called: %+v", got.req)
	default:
	}
}

func TestAddAgentDown(t *testing.T) {
	const (
		refusedNoList = "kzero-cni: the kzero agent on this node does not answer (dial unix %s: connect: %s) and has not yet said which namespaces are enrolled: pod shop/web-0 waits until the agent is up (kubectl -n kzero-system get pods -l app.kubernetes.io/component=agent)"
		refusedListed = "kzero-cni: namespace shop is enrolled and the kzero agent on this node does not answer (dial unix %s: connect: %s): pod web-0 waits until the agent is back, never running unprotected"
	)
	for _, tc := range []struct {
		name string
		// enrolled is the list the agent last wrote; nil is none.
		enrolled []string
		// stale leaves the socket of an agent gone (connection refused)
		// rather than none (no such file).
		stale   bool
		wantErr string
	}{
		{name: "enrolled", enrolled: []string{"payments", "shop"}, wantErr: refusedListed},
		{name: "enrolled, stale socket", enrolled: []string{"shop"}, stale: true, wantErr: refusedListed},
		{name: "no list", wantErr: refusedNoList},
		{name: "no list, stale socket", stale: true, wantErr: refusedNoList},
		{name: "not enrolled", enrolled: []string{"payments"}},
		{name: "not enrolled, stale socket", enrolled: []string{"payments"}, stale: true},
		{name: "nothing enrolled", enrolled: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			if tc.enrolled != nil {
				n.enroll(t, tc.enrolled...)
			}
			cause := "no such file or directory"
			if tc.stale {
				ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: n.socket, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				ln.SetUnlinkOnClose(false)
				_ = ln.Close()
				cause = "connection refused"
			}
			var out bytes.Buffer
			err := (Plugin{Stdout: &out}).Add(n.args("shop", "web-0", n.conf(t, "1.0.0", prevResult100, nil)))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				sameJSON(t, out.Bytes(), prevResult100)
				return
			}
			want := strings.Replace(strings.Replace(tc.wantErr, "%s", n.socket, 1), "%s", cause, 1)
			if err == nil || err.Error() != want {
				t.Errorf("Add error:\n%v\nwant:\n%s", err, want)
			}
			if out.Len() != 0 {
				t.Errorf("a refused ADD printed a result:\n%s", out.Bytes())
			}
		})
	}
	t.Run("unreadable list", func(t *testing.T) {
		n := newNode(t)
		if err := os.Mkdir(n.enrolled, 0o700); err != nil {
			t.Fatal(err)
		}
		err := (Plugin{Stdout: &bytes.Buffer{}}).Add(n.args("shop", "web-0", n.conf(t, "1.0.0", prevResult100, nil)))
		want := "kzero-cni: the kzero agent on this node does not answer (dial unix " + n.socket + ": connect: no such file or directory) and its list of enrolled namespaces cannot be read (read " + n.enrolled + ": is a directory): pod shop/web-0 waits until the agent is back"
		if err == nil || err.Error() != want {
			t.Errorf("Add error:\n%v\nwant:\n%s", err, want)
		}
	})
}

func TestAddNeverEnrolled(t *testing.T) {
	for _, tc := range []struct {
		name, namespace, kzeroNamespace string
	}{
		{name: "kube-system", namespace: "kube-system"},
		{name: "kzero's", namespace: "kzero-system"},
		{name: "kzero's elsewhere", namespace: "mesh", kzeroNamespace: "mesh"},
		{name: "kube-system, kzero elsewhere", namespace: "kube-system", kzeroNamespace: "mesh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra map[string]any
			if tc.kzeroNamespace != "" {
				extra = map[string]any{"kzeroNamespace": tc.kzeroNamespace}
			}
			t.Run("agent up", func(t *testing.T) {
				n := newNode(t)
				// An agent that would refuse, and a list that says enrolled:
				// neither is asked.
				agent := (&fakeAgent{answer: reply(cni.Reply{Enrolled: true, Error: "refused"})}).start(t, n.socket)
				n.enroll(t, tc.namespace)
				var out bytes.Buffer
				if err := (Plugin{Stdout: &out}).Add(n.args(tc.namespace, "agent-x2k4p", n.conf(t, "1.0.0", prevResult100, extra))); err != nil {
					t.Fatal(err)
				}
				sameJSON(t, out.Bytes(), prevResult100)
				agent.noCall(t)
			})
			t.Run("agent down, no list", func(t *testing.T) {
				// As when the agent itself starts on a new node.
				n := newNode(t)
				var out bytes.Buffer
				if err := (Plugin{Stdout: &out}).Add(n.args(tc.namespace, "agent-x2k4p", n.conf(t, "1.0.0", prevResult100, extra))); err != nil {
					t.Fatal(err)
				}
				sameJSON(t, out.Bytes(), prevResult100)
			})
		})
	}
	t.Run("kzero-system, kzero elsewhere", func(t *testing.T) {
		// Only the namespace kzero runs in is exempt.
		n := newNode(t)
		agent := (&fakeAgent{answer: reply(cni.Reply{})}).start(t, n.socket)
		if err := (Plugin{Stdout: &bytes.Buffer{}}).Add(n.args("kzero-system", "web-0", n.conf(t, "1.0.0", prevResult100, map[string]any{"kzeroNamespace": "mesh"}))); err != nil {
			t.Fatal(err)
		}
		if got := agent.call(t); got.req.Namespace != "kzero-system" {
			t.Errorf("the agent was asked of namespace %q", got.req.Namespace)
		}
	})
}

func TestAddWithoutPodArguments(t *testing.T) {
	// A sandbox that is not a Kubernetes pod's (no K8S_POD_* in CNI_ARGS)
	// is none of kzero's business, even with no agent and no list.
	for _, args := range []string{"", "IgnoreUnknown=1", "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop", "IgnoreUnknown=1;K8S_POD_NAME=web-0"} {
		t.Run(args, func(t *testing.T) {
			n := newNode(t)
			a := n.args("shop", "web-0", n.conf(t, "1.0.0", prevResult100, nil))
			a.Args = args
			var out bytes.Buffer
			if err := (Plugin{Stdout: &out}).Add(a); err != nil {
				t.Fatal(err)
			}
			sameJSON(t, out.Bytes(), prevResult100)
		})
	}
}

func TestAddConfigurationErrors(t *testing.T) {
	n := newNode(t)
	agent := (&fakeAgent{answer: reply(cni.Reply{})}).start(t, n.socket)
	for _, tc := range []struct {
		name    string
		conf    []byte
		wantErr string
	}{
		{
			name:    "no prevResult",
			conf:    n.conf(t, "1.0.0", "", nil),
			wantErr: "kzero-cni: no prevResult: kzero-cni is a chained plugin; put it after the pod network's plugin in the network's .conflist",
		},
		{
			name:    "not JSON",
			conf:    []byte(`{"cniVersion": "1.0.0",`),
			wantErr: "kzero-cni: the network configuration is not JSON: unexpected end of JSON input",
		},
		{
			name:    "a prevResult of another shape",
			conf:    n.conf(t, "1.0.0", `{"cniVersion": "1.0.0", "ips": "10.244.1.7"}`, nil),
			wantErr: "kzero-cni: prevResult: could not parse prevResult: json: cannot unmarshal string into Go struct field Result.ips of type []*types100.IPConfig",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := (Plugin{Stdout: &out}).Add(n.args("shop", "web-0", tc.conf))
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Add error:\n%v\nwant:\n%s", err, tc.wantErr)
			}
			if out.Len() != 0 {
				t.Errorf("a failed ADD printed a result:\n%s", out.Bytes())
			}
			agent.noCall(t)
		})
	}
}

func TestDel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		agent *fakeAgent // nil: none
	}{
		{name: "agent up", agent: &fakeAgent{answer: reply(cni.Reply{})}},
		{name: "agent refuses", agent: &fakeAgent{answer: reply(cni.Reply{Error: "the plugin's request: uid \"\": want the pod's UID"})}},
		{name: "agent hangs up", agent: &fakeAgent{}},
		{name: "agent down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			if tc.agent != nil {
				tc.agent.start(t, n.socket)
			}
			// DEL comes without prevResult, and perhaps when the
			// namespace is already gone.
			args := n.args("shop", "web-0", n.conf(t, "1.0.0", "", nil))
			args.Netns = filepath.Join(filepath.Dir(n.netns), "gone")
			if err := (Plugin{}).Del(args); err != nil {
				t.Fatalf("Del: %v, want nil always", err)
			}
			if tc.agent == nil {
				return
			}
			got := tc.agent.call(t)
			want := cni.Request{Delete: true, ContainerID: containerID, Netns: args.Netns, Namespace: "shop", Name: "web-0", UID: podUID}
			if !reflect.DeepEqual(got.req, want) {
				t.Errorf("the agent received\n%+v\nwant\n%+v", got.req, want)
			}
			if got.fd != nil {
				t.Errorf("DEL sent a descriptor (inode %d)", got.fd.Ino)
			}
		})
	}
	t.Run("not JSON", func(t *testing.T) {
		n := newNode(t)
		agent := (&fakeAgent{answer: reply(cni.Reply{})}).start(t, n.socket)
		if err := (Plugin{}).Del(n.args("shop", "web-0", []byte("{"))); err != nil {
			t.Fatalf("Del: %v, want nil always", err)
		}
		agent.noCall(t)
	})
}

func TestCheck(t *testing.T) {
	n := newNode(t)
	if err := (Plugin{}).Check(n.args("shop", "web-0", n.conf(t, "1.0.0", prevResult100, nil))); err != nil {
		t.Errorf("Check: %v", err)
	}
	err := (Plugin{}).Check(n.args("shop", "web-0", []byte("nope")))
	if want := "kzero-cni: the network configuration is not JSON: invalid character 'o' in literal null (expecting 'u')"; err == nil || err.Error() != want {
		t.Errorf("Check error %v, want %q", err, want)
	}
}

func TestLoadDefaults(t *testing.T) {
	c, err := load([]byte(`{"cniVersion": "1.0.0", "name": "cbr0", "type": "kzero-cni"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != cni.Socket || c.EnrolledFile != cni.EnrolledFile || c.KzeroNamespace != DefaultKzeroNamespace {
		t.Errorf("defaults: socket %q, enrolledFile %q, kzeroNamespace %q", c.Socket, c.EnrolledFile, c.KzeroNamespace)
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want podArgs
	}{
		{in: "", want: podArgs{}},
		{
			in:   "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=" + containerID + ";K8S_POD_UID=" + podUID,
			want: podArgs{namespace: "shop", name: "web-0", uid: podUID},
		},
		{in: "K8S_POD_UID=u;K8S_POD_NAME=n;K8S_POD_NAMESPACE=s", want: podArgs{namespace: "s", name: "n", uid: "u"}},
		{in: "K8S_POD_NAME=a=b;;K8S_POD_NAMESPACE", want: podArgs{name: "a=b"}},
	} {
		if got := parseArgs(tc.in); got != tc.want {
			t.Errorf("parseArgs(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestFuncs(t *testing.T) {
	f := (Plugin{}).Funcs()
	if f.Add == nil || f.Del == nil || f.Check == nil {
		t.Errorf("Funcs = %+v, want ADD, DEL and CHECK", f)
	}
	if got := strings.Join(Versions.SupportedVersions(), " "); got != "0.4.0 1.0.0 1.1.0" {
		t.Errorf("Versions = %s", got)
	}
}

// TestAgreesWithTheAPI checks the copies the plugin keeps of the API's
// rules, so as not to import it.
func TestAgreesWithTheAPI(t *testing.T) {
	if DefaultKzeroNamespace != v1alpha1.Namespace {
		t.Errorf("DefaultKzeroNamespace = %q, v1alpha1.Namespace = %q", DefaultKzeroNamespace, v1alpha1.Namespace)
	}
	for _, ns := range []string{"kube-system", "kzero-system", "mesh", "default", "shop", ""} {
		for _, kzero := range []string{"kzero-system", "mesh"} {
			if got, want := neverEnrolled(ns, kzero), v1alpha1.NeverEnrolled(ns, kzero); got != want {
				t.Errorf("neverEnrolled(%q, %q) = %v, v1alpha1.NeverEnrolled = %v", ns, kzero, got, want)
			}
		}
	}
}
