package meshnode_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/types"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/mesh"
	"kzero.dev/kzero/internal/redirect"
	"kzero.dev/kzero/internal/redirect/netnstest"
)

// TestRunReconcilesRunningPods: billing/api runs (a process in its
// network namespace) before its namespace is enrolled, or before the
// agent; Run finds it through /proc, captures it, follows its namespace's
// mode and lets it go when the namespace leaves enrollment. The other
// namespace of the pair is a host outside the mesh.
func TestRunReconcilesRunningPods(t *testing.T) {
	pod, outside := netnstest.Pair(t)
	api := newPod("billing", "api", "api", pod.IP)
	apiID := spiffeid.RequireFromSegments(td, "ns", "billing", "sa", "api")
	pid := sleeper(t, pod.Name, pod.Path)
	e := newEnv(t, envConfig{
		pods:     []*kubeobj.Pod{api},
		mesh:     map[netip.Addr]spiffeid.ID{pod.IP: apiID},
		policies: ordersIngress,
		podOf: func(p int32) (types.UID, error) {
			if int(p) == pid {
				return api.UID, nil
			}
			return "", errors.New("not a pod's process")
		},
	})
	e.enrolled.set("billing", mesh.Strict)
	// The pod's default route leads to the node, where kubelet's probes
	// come from: an address of the outside namespace's.
	node := netip.AddrFrom4([4]byte{pod.IP.As4()[0], pod.IP.As4()[1], pod.IP.As4()[2], 254})
	ip(t, "-n", outside.Name, "addr", "add", node.String()+"/24", "dev", outside.Dev)
	ip(t, "-n", pod.Name, "route", "add", "default", "via", node.String())
	netnstest.Upper(t, pod.Path, 9090)
	netnstest.Upper(t, outside.Path, 8082)
	e.run(t)

	captured := func(t *testing.T, want ...string) {
		t.Helper()
		eventually(t, "the captured pods", func() error {
			if got := e.node.Pods(); !slices.Equal(got, want) {
				return fmt.Errorf("Pods() = %v, want %v", got, want)
			}
			return nil
		})
	}
	rules := func(t *testing.T, want bool) {
		t.Helper()
		eventually(t, "the capture rules", func() error {
			got, err := redirect.Installed(pod.Path)
			if err == nil && got != want {
				err = fmt.Errorf("installed %v, want %v", got, want)
			}
			return err
		})
	}

	t.Run("a running pod of an enrolled namespace is captured", func(t *testing.T) {
		captured(t, "billing/api")
		rules(t, true)
	})

	t.Run("its connections outside the mesh pass through, audited", func(t *testing.T) {
		dst := netip.AddrPortFrom(outside.IP, 8082)
		// Until its SVID is signed, the event names no source: try
		// until it does.
		eventually(t, "a passthrough audited with billing/api's SPIFFE ID", func() error {
			got, err := netnstest.Call(t, pod.Path, dst, 0, "plain words")
			if err != nil || got != "PLAIN WORDS" {
				return fmt.Errorf("a call outside the mesh: %q, %w", got, err)
			}
			if _, ok := e.audit.find(isPassthroughOf(apiID)); !ok {
				return errors.New("no passthrough audited with billing/api's SPIFFE ID yet")
			}
			return nil
		})
		ev, _ := e.audit.find(isPassthroughOf(apiID))
		a := ev.Access
		if ev.Outcome != audit.OutcomeAllow || a.Verdict != audit.VerdictAllow || a.Policy != nil ||
			a.Destination != (audit.Destination{Address: dst, Port: 8082}) || a.Source.Address.Addr() != pod.IP ||
			!strings.Contains(ev.Reason, "billing/api to "+dst.String()+", outside the mesh") {
			t.Errorf("the passthrough's event: %s", jsonOf(ev))
		}
	})

	t.Run("plain text into a strict pod is refused", func(t *testing.T) {
		_, err := netnstest.Call(t, outside.Path, netip.AddrPortFrom(pod.IP, 9090), 0, "hello")
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("plain text to billing/api: %v, want a reset", err)
		}
	})

	t.Run("the node's probes are not captured", func(t *testing.T) {
		got, err := callFrom(t, outside.Path, node, netip.AddrPortFrom(pod.IP, 9090), "probe")
		if err != nil || got != "PROBE" {
			t.Errorf("a probe from the node's address %s: %q, %v", node, got, err)
		}
	})

	t.Run("plain text into a permissive pod is let in, audited", func(t *testing.T) {
		e.enrolled.set("billing", mesh.Permissive)
		e.reconcile()
		eventually(t, "plain text let in", func() error {
			got, err := netnstest.Call(t, outside.Path, netip.AddrPortFrom(pod.IP, 9090), 0, "hello")
			if err == nil && got != "HELLO" {
				err = errors.New("answered " + got)
			}
			return err
		})
		ev := e.audit.wait(t, "of the plain text let in", func(ev audit.Event) bool {
			return ev.Access != nil && ev.Outcome == audit.OutcomeAllow && ev.Access.Destination.Port == 9090
		})
		a := ev.Access
		if a.Verdict != audit.VerdictDeny || a.Mode != audit.ModeAudit || a.Enforced || a.Source.Address.Addr() != outside.IP ||
			a.Destination != (audit.Destination{Namespace: "billing", Workload: "api", Port: 9090}) ||
			!strings.HasPrefix(ev.Reason, "plain text from outside the mesh to a pod of a permissive namespace: let in") {
			t.Errorf("the permissive plain text's event: %s", jsonOf(ev))
		}
		// Until it is strict again.
		e.enrolled.set("billing", mesh.Strict)
		e.reconcile()
		eventually(t, "plain text refused again", func() error {
			if _, err := netnstest.Call(t, outside.Path, netip.AddrPortFrom(pod.IP, 9090), 0, "hello"); !errors.Is(err, syscall.ECONNRESET) {
				return fmt.Errorf("plain text to billing/api: %w, want a reset", err)
			}
			return nil
		})
	})

	t.Run("the audit events validate", func(t *testing.T) { e.audit.checkValid(t) })

	t.Run("a pod whose namespace leaves enrollment is let go, its rules removed", func(t *testing.T) {
		e.enrolled.remove("billing")
		e.reconcile()
		rules(t, false)
		captured(t)
		got, err := netnstest.Call(t, outside.Path, netip.AddrPortFrom(pod.IP, 9090), 0, "hello")
		if err != nil || got != "HELLO" {
			t.Errorf("plain text to billing/api out of the mesh: %q, %v", got, err)
		}
		// The pod leaves the node's list, and its rules go, before its
		// listeners close: a connection may still reach one a moment.
		eventually(t, "the pod's listeners closed", func() error {
			if _, err := netnstest.Call(t, pod.Path, netip.AddrPortFrom(pod.IP, redirect.InboundPort), redirect.Mark, ""); !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("connecting to the inbound port in billing/api's namespace: %w, want refused: its listeners are closed", err)
			}
			return nil
		})
	})

	t.Run("it is captured again when its namespace is enrolled again", func(t *testing.T) {
		e.enrolled.set("billing", mesh.Strict)
		e.reconcile()
		captured(t, "billing/api")
		rules(t, true)
	})

	t.Run("a pod gone from the node is let go, its rules left to its namespace", func(t *testing.T) {
		e.pods.remove(api.UID)
		e.reconcile()
		captured(t)
		if !installed(t, pod.Path) {
			t.Error("the rules were removed")
		}
	})
}

func isPassthroughOf(id spiffeid.ID) func(audit.Event) bool {
	return func(ev audit.Event) bool {
		return ev.Access != nil && ev.Access.Passthrough && ev.Access.Source.SPIFFEID == id
	}
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil { //nolint:gosec // the test's own arguments
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
