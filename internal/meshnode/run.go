package meshnode

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/mesh"
)

// ReconcileInterval is how often the node's pods are compared with the
// captured ones, besides when Trigger is called.
const ReconcileInterval = 5 * time.Second

// Run reconciles until ctx ends, then closes every captured pod's
// listeners and returns ctx.Err(). It leaves the pods' rules: until the
// agent is back, their connections are refused, never let through
// unprotected, and the agent that starts next captures them again.
func (n *Node) Run(ctx context.Context, trigger <-chan struct{}) error {
	n.mu.Lock()
	n.ctx = ctx
	n.mu.Unlock()
	t := time.NewTicker(ReconcileInterval)
	defer t.Stop()
	for {
		n.reconcile() //nolint:contextcheck // letting a pod go bounds its own shutdown
		select {
		case <-ctx.Done():
			n.mu.Lock()
			n.ctx = nil
			all := make([]*podEntry, 0, len(n.pods))
			for _, e := range n.pods {
				all = append(all, e)
			}
			n.mu.Unlock()
			for _, e := range all {
				n.let(e, false) //nolint:contextcheck // ctx is done: the shutdown is bounded by mesh.Pod.Close
			}
			return ctx.Err()
		case <-t.C:
		case <-trigger:
		}
	}
}

// wanted reports whether pod should be captured, and in which mode.
func (n *Node) wanted(pod *kubeobj.Pod) (bool, mesh.Mode) {
	if pod.Spec.HostNetwork || pod.DeletionTimestamp != nil || v1alpha1.NeverEnrolled(pod.Namespace, v1alpha1.Namespace) ||
		pod.Status.Phase == kubeobj.PodSucceeded || pod.Status.Phase == kubeobj.PodFailed {
		return false, mesh.Strict
	}
	return n.cfg.Enrolled(pod.Namespace)
}

// reconcile lets go the pods that left enrollment or the node, and
// captures the enrolled pods that run without being captured.
func (n *Node) reconcile() {
	pods := n.cfg.Pods.List()
	byUID := make(map[types.UID]*kubeobj.Pod, len(pods))
	for _, p := range pods {
		byUID[p.UID] = p
	}
	n.mu.Lock()
	captured := make(map[types.UID]*podEntry, len(n.pods))
	for uid, e := range n.pods {
		captured[uid] = e
	}
	n.mu.Unlock()
	for uid, e := range captured {
		pod, ok := byUID[uid]
		if !ok {
			n.let(e, false) // gone from the node: its namespace goes with it
			continue
		}
		want, mode := n.cfg.Enrolled(pod.Namespace)
		switch {
		case !want:
			n.let(e, true)
		case mode != e.mode:
			e.pod.SetMode(mode)
			e.mode = mode
			n.cfg.Log.Info("a pod's mode changed", "pod", e.namespace+"/"+e.name, "mode", modeName(mode))
		}
	}
	var missing []*kubeobj.Pod
	for _, p := range pods {
		if want, _ := n.wanted(p); want && captured[p.UID] == nil && len(podIPs(p)) > 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return
	}
	netns := n.findNetns(missing)
	for _, p := range missing {
		ns, ok := netns[p.UID]
		if !ok {
			continue // no process yet: the plugin, or the next round, brings it in
		}
		_, mode := n.cfg.Enrolled(p.Namespace)
		f, err := os.Open(ns) //nolint:gosec // /proc/<pid>/ns/net
		if err != nil {
			continue // the process ended: the next round looks again
		}
		if err := n.capture(p, f, podIPs(p), n.gateways(ns), mode); err != nil {
			n.cfg.Log.Error("capturing a running pod failed", "pod", p.Namespace+"/"+p.Name, "error", err)
		}
	}
}

// podIPs are a pod's IPv4 addresses, from its status.
func podIPs(p *kubeobj.Pod) []netip.Addr {
	var out []netip.Addr
	for _, s := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(s.IP); err == nil && a.Is4() {
			out = append(out, a)
		}
	}
	return out
}

// findNetns finds the network namespace of each pod of want that has a
// process on the node: /proc/<pid>/ns/net of the first process whose
// cgroup is the pod's.
func (n *Node) findNetns(want []*kubeobj.Pod) map[types.UID]string {
	need := make(map[types.UID]bool, len(want))
	for _, p := range want {
		need[p.UID] = true
	}
	out := map[types.UID]string{}
	entries, err := os.ReadDir(n.cfg.ProcRoot)
	if err != nil {
		n.cfg.Log.Error("reading the node's processes failed", "error", err)
		return out
	}
	for _, d := range entries {
		pid, err := strconv.ParseInt(d.Name(), 10, 32)
		if err != nil || !d.IsDir() {
			continue
		}
		uid, err := n.cfg.PodOf(int32(pid))
		if err != nil || !need[uid] {
			continue
		}
		if _, ok := out[uid]; !ok {
			out[uid] = filepath.Join(n.cfg.ProcRoot, d.Name(), "ns", "net")
		}
		if len(out) == len(need) {
			break
		}
	}
	return out
}

// gateways are the gateways of the default routes of the network namespace
// of a process, from /proc/<pid>/net/route: where the node's connections,
// kubelet's probes among them, come from.
func (n *Node) gateways(netns string) []netip.Addr {
	data, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(netns)), "net", "route")) //nolint:gosec // under ProcRoot
	if err != nil {
		return nil
	}
	return parseRoutes(data)
}

// parseRoutes reads the gateways of the default routes of a
// /proc/net/route file: fields Iface, Destination, Gateway in hex, little
// endian.
func parseRoutes(data []byte) []netip.Addr {
	var out []netip.Addr
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 3 || f[1] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			continue
		}
		// Little endian: the first byte of the address is the last.
		a := netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})
		if a.IsUnspecified() {
			continue
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// errUnknownPod is a pod the API server has not shown the agent in time.
var errUnknownPod = errors.New("the API server has not shown this pod to the agent yet")

// waitPod waits for the node's pods to show uid, up to wait.
func (n *Node) waitPod(ctx context.Context, uid types.UID, wait time.Duration) (*kubeobj.Pod, error) {
	timeout := time.After(wait)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if p, ok := n.cfg.Pods.PodByUID(uid); ok {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, fmt.Errorf("pod UID %s: %w", uid, errUnknownPod)
		case <-tick.C:
		}
	}
}
