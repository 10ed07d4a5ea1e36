package meshnode_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/cni"
	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/mesh"
	"kzero.dev/kzero/internal/policy"
	"kzero.dev/kzero/internal/redirect"
	"kzero.dev/kzero/internal/redirect/netnstest"
)

// TestPluginCapturesPods plays the chained plugin against the node over
// its socket, with real network namespaces: shop/web in one, shop/orders
// in the other, both enrolled, talking through the mesh.
func TestPluginCapturesPods(t *testing.T) {
	client, server := netnstest.Pair(t)
	web, orders := newPod("shop", "web", "web", client.IP), newPod("shop", "orders", "orders", server.IP)
	webID := spiffeid.RequireFromSegments(td, "ns", "shop", "sa", "web")
	ordersID := spiffeid.RequireFromSegments(td, "ns", "shop", "sa", "orders")
	e := newEnv(t, envConfig{
		pods:     []*kubeobj.Pod{web}, // orders: the API server shows it during its ADD
		mesh:     map[netip.Addr]spiffeid.ID{client.IP: webID, server.IP: ordersID},
		policies: ordersIngress,
		workloads: map[netip.Addr]policy.Workload{
			client.IP: {Namespace: "shop", ServiceAccount: "web", Labels: map[string]string{"app": "web"}},
			server.IP: {Namespace: "shop", ServiceAccount: "orders", Labels: map[string]string{"app": "orders"}},
		},
	})
	e.enrolled.set("shop", mesh.Strict)
	e.enrolled.set("kube-system", mesh.Strict) // never enrolled, whatever the namespaces say
	socket := e.serveCNI(t)
	netnstest.Upper(t, server.Path, 8080)
	netnstest.Upper(t, server.Path, 8081)
	netnstest.Upper(t, client.Path, 9090)

	// leftNothing checks that a refused ADD left the pod's namespace as
	// it was.
	leftNothing := func(t *testing.T) {
		t.Helper()
		if installed(t, client.Path) {
			t.Error("the capture rules are installed")
		}
		if got := e.node.Pods(); len(got) != 0 {
			t.Errorf("captured %v", got)
		}
	}

	t.Run("an ADD before Run is refused, to be tried again", func(t *testing.T) {
		if got, want := add(t, socket, web, client.Path), (cni.Reply{Enrolled: true, Error: "the agent's mesh is starting: try again"}); got != want {
			t.Errorf("ADD: %+v, want %+v", got, want)
		}
		leftNothing(t)
	})

	stop := e.run(t)

	t.Run("refusals", func(t *testing.T) {
		other := *web
		other.Name = "other" // a name that is not the UID's pod's
		invalid := addRequest(web)
		invalid.ContainerID = ""
		regular, err := os.CreateTemp(t.TempDir(), "not-a-namespace")
		if err != nil {
			t.Fatal(err)
		}
		defer regular.Close()
		uts, err := os.Open("/proc/self/ns/uts")
		if err != nil {
			t.Fatal(err)
		}
		defer uts.Close()
		netns, err := os.Open(client.Path)
		if err != nil {
			t.Fatal(err)
		}
		defer netns.Close()
		for _, tc := range []struct {
			name string
			body []byte
			fd   *os.File
			want cni.Reply
		}{{
			name: "not JSON",
			body: []byte("ADD shop/web"), fd: netns,
			want: cni.Reply{Error: "the plugin's request is not JSON"},
		}, {
			name: "a request that fails validation",
			body: cni.Encode(invalid), fd: netns,
			want: cni.Reply{Error: `the plugin's request: containerID "": want the runtime's sandbox ID`},
		}, {
			name: "no network namespace",
			body: cni.Encode(addRequest(web)),
			want: cni.Reply{Enrolled: true, Error: "the plugin sent no network namespace"},
		}, {
			name: "a regular file for the network namespace",
			body: cni.Encode(addRequest(web)), fd: regular,
			want: cni.Reply{Enrolled: true, Error: "what the plugin sent is not a network namespace"},
		}, {
			name: "a UTS namespace for the network namespace",
			body: cni.Encode(addRequest(web)), fd: uts,
			want: cni.Reply{Enrolled: true, Error: "what the plugin sent is not a network namespace"},
		}, {
			name: "the UID of another pod",
			body: cni.Encode(addRequest(&other)), fd: netns,
			want: cni.Reply{Enrolled: true, Error: "pod UID uid-shop-web is shop/web, not shop/other"},
		}} {
			t.Run(tc.name, func(t *testing.T) {
				if got := plugin(t, socket, tc.body, tc.fd); got != tc.want {
					t.Errorf("ADD: %+v, want %+v", got, tc.want)
				}
				leftNothing(t)
			})
		}
	})

	t.Run("a pod of a namespace not enrolled is left alone", func(t *testing.T) {
		for _, pod := range []*kubeobj.Pod{newPod("plain", "web", "web", client.IP), newPod("kube-system", "dns", "dns", client.IP)} {
			if got := add(t, socket, pod, client.Path); got != (cni.Reply{}) {
				t.Errorf("ADD of %s/%s: %+v, want not enrolled and no error", pod.Namespace, pod.Name, got)
			}
		}
		leftNothing(t)
	})

	t.Run("an ADD captures the pod of an enrolled namespace", func(t *testing.T) {
		if got, want := add(t, socket, web, client.Path), (cni.Reply{Enrolled: true}); got != want {
			t.Fatalf("ADD of shop/web: %+v, want %+v", got, want)
		}
		if !installed(t, client.Path) {
			t.Error("shop/web's namespace has no capture rules")
		}
		// A pod the API server shows the agent while its ADD waits.
		f, err := os.Open(server.Path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		type result struct {
			reply cni.Reply
			err   error
		}
		results := make(chan result, 1)
		go func() {
			r, err := send(socket, cni.Encode(addRequest(orders)), f)
			results <- result{r, err}
		}()
	wait:
		for {
			select {
			case uid := <-e.pods.missed:
				if uid == orders.UID {
					break wait
				}
			case r := <-results:
				t.Fatalf("the ADD of a pod the agent does not know answered at once: %+v, %v", r.reply, r.err)
			case <-time.After(waitFor):
				t.Fatal("the ADD did not ask for its pod")
			}
		}
		e.pods.set(orders)
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if got, want := r.reply, (cni.Reply{Enrolled: true}); got != want {
			t.Fatalf("ADD of shop/orders: %+v, want %+v", got, want)
		}
		if !installed(t, server.Path) {
			t.Error("shop/orders's namespace has no capture rules")
		}
		// The plugin again, for the same sandbox: nothing changes.
		if got, want := add(t, socket, web, client.Path), (cni.Reply{Enrolled: true}); got != want {
			t.Errorf("ADD of shop/web again: %+v, want %+v", got, want)
		}
		if got, want := e.node.Pods(), []string{"shop/orders", "shop/web"}; !slices.Equal(got, want) {
			t.Errorf("Pods() = %v, want %v", got, want)
		}
	})

	t.Run("an allowed call goes through the mesh, and its decision is audited", func(t *testing.T) {
		// Until both pods' SVIDs are signed, in the background, calls
		// are reset: try until they are.
		eventually(t, "shop/web calls shop/orders on 8080", func() error {
			got, err := netnstest.Call(t, client.Path, netip.AddrPortFrom(server.IP, 8080), 0, "hello orders")
			if err == nil && got != "HELLO ORDERS" {
				err = errors.New("answered " + got)
			}
			return err
		})
		ev := e.audit.wait(t, "of the allowed call", func(ev audit.Event) bool {
			return ev.Access != nil && ev.Access.Destination.Port == 8080 && ev.Outcome == audit.OutcomeAllow
		})
		want := &audit.Access{
			Source:      audit.Source{SPIFFEID: webID},
			Destination: audit.Destination{Namespace: "shop", ServiceAccount: "orders", Workload: "orders", Port: 8080},
			Protocol:    "tcp", Verdict: audit.VerdictAllow, Mode: audit.ModeEnforce, Enforced: true,
			Policy: &audit.PolicyRef{Namespace: "shop", Name: "orders-ingress", Rule: "web-calls"},
		}
		if !reflect.DeepEqual(ev.Access, want) {
			t.Errorf("the allowed call's event:\n%s\nwant:\n%s", jsonOf(ev.Access), jsonOf(want))
		}
		if ev.Component != audit.ComponentAgent || ev.Kind != audit.KindAccess || ev.Reason != "allowed by shop/orders-ingress rule web-calls" {
			t.Errorf("the allowed call's event: %s", jsonOf(ev))
		}
	})

	t.Run("a denied call is reset, and audited", func(t *testing.T) {
		_, err := netnstest.Call(t, client.Path, netip.AddrPortFrom(server.IP, 8081), 0, "hello")
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("a call to port 8081: %v, want a reset", err)
		}
		ev := e.audit.wait(t, "of the denied call", func(ev audit.Event) bool {
			return ev.Access != nil && ev.Access.Destination.Port == 8081
		})
		want := &audit.Access{
			Source:      audit.Source{SPIFFEID: webID},
			Destination: audit.Destination{Namespace: "shop", ServiceAccount: "orders", Workload: "orders", Port: 8081},
			Protocol:    "tcp", Verdict: audit.VerdictDeny, Mode: audit.ModeEnforce, Enforced: true,
		}
		if !reflect.DeepEqual(ev.Access, want) || ev.Outcome != audit.OutcomeDeny || ev.Reason != "no rule matched: default deny" {
			t.Errorf("the denied call's event:\n%s\nwant access:\n%s", jsonOf(ev), jsonOf(want))
		}
	})

	t.Run("plain text from outside the mesh is refused in strict mode, and audited", func(t *testing.T) {
		// Marked: it leaves shop/orders's namespace uncaptured, as from
		// a pod outside the mesh.
		_, err := netnstest.Call(t, server.Path, netip.AddrPortFrom(client.IP, 9090), redirect.Mark, "hello")
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("plain text to shop/web: %v, want a reset", err)
		}
		ev := e.audit.wait(t, "of the plain text", func(ev audit.Event) bool {
			return ev.Access != nil && ev.Access.Destination.Port == 9090
		})
		a := ev.Access
		if ev.Outcome != audit.OutcomeDeny || a.Verdict != audit.VerdictDeny || a.Mode != audit.ModeEnforce || !a.Enforced ||
			a.Source.Address.Addr() != server.IP || a.Destination != (audit.Destination{Namespace: "shop", Workload: "web", Port: 9090}) ||
			!strings.HasPrefix(ev.Reason, "plain text from outside the mesh to a pod of a strict namespace: refused") {
			t.Errorf("the plain text's event: %s", jsonOf(ev))
		}
	})

	t.Run("the audit events validate", func(t *testing.T) { e.audit.checkValid(t) })

	t.Run("a DEL lets the pod go", func(t *testing.T) {
		// Of another pod of the same UID: nothing.
		other := addRequest(web)
		other.Delete, other.Name = true, "other"
		if got := plugin(t, socket, cni.Encode(other), nil); got != (cni.Reply{}) {
			t.Errorf("DEL: %+v", got)
		}
		if got, want := e.node.Pods(), []string{"shop/orders", "shop/web"}; !slices.Equal(got, want) {
			t.Errorf("after a DEL of shop/other, Pods() = %v, want %v", got, want)
		}
		del := addRequest(web)
		del.Delete = true
		if got := plugin(t, socket, cni.Encode(del), nil); got != (cni.Reply{}) {
			t.Errorf("DEL: %+v", got)
		}
		if got, want := e.node.Pods(), []string{"shop/orders"}; !slices.Equal(got, want) {
			t.Errorf("after a DEL of shop/web, Pods() = %v, want %v", got, want)
		}
		for _, port := range []uint16{redirect.OutboundPort, redirect.InboundPort, redirect.TunnelPort} {
			if _, err := netnstest.Call(t, client.Path, netip.AddrPortFrom(client.IP, port), redirect.Mark, ""); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("connecting to port %d in shop/web's namespace: %v, want refused: its listeners are closed", port, err)
			}
		}
		// The rules stay: the runtime removes the sandbox's namespace,
		// and them with it.
		if !installed(t, client.Path) {
			t.Error("a DEL removed the rules")
		}
	})

	t.Run("Run's end closes the listeners and leaves the rules", func(t *testing.T) {
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		if got := e.node.Pods(); len(got) != 0 {
			t.Errorf("after Run, Pods() = %v", got)
		}
		if !installed(t, server.Path) {
			t.Error("Run's end removed shop/orders's rules")
		}
		for _, port := range []uint16{redirect.OutboundPort, redirect.InboundPort, redirect.TunnelPort} {
			if _, err := netnstest.Call(t, server.Path, netip.AddrPortFrom(server.IP, port), redirect.Mark, ""); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("connecting to port %d in shop/orders's namespace: %v, want refused: its listeners are closed", port, err)
			}
		}
		// Fail closed: the pods' connections are refused, not let
		// through unprotected, until the agent is back.
		if _, err := netnstest.Call(t, client.Path, netip.AddrPortFrom(server.IP, 8080), 0, "hello"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("a call from shop/web with no agent: %v, want refused", err)
		}
		if _, err := netnstest.Call(t, client.Path, netip.AddrPortFrom(server.IP, 8080), redirect.Mark, "hello"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("plain text to shop/orders with no agent: %v, want refused", err)
		}
	})
}
