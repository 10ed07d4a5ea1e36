// Package meshnode is the mesh on one node: the agent's side of the chained
// CNI plugin (internal/cni), and the enrolled pods it captures. For each
// pod of an enrolled namespace it opens the pod's listeners and installs
// its capture rules inside the pod's network namespace (internal/mesh,
// internal/redirect), with the pod's X.509-SVID, signed by the authority
// for the pod's service account and renewed at half life; it decides the
// pod's inbound streams with AccessPolicy (internal/meshpolicy) and audits
// every decision.
//
// Pods come in two ways: from the plugin, before their containers start,
// and by reconciling the node's pods from the API server with the node's
// processes (the agent runs in the host's PID namespace), for the pods
// that ran before the agent or before their namespace was enrolled. A pod
// whose namespace leaves enrollment is let go: listeners closed, rules
// removed.
package meshnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/mesh"
	"kzero.dev/kzero/internal/meshpolicy"
	"kzero.dev/kzero/internal/policy"
	"kzero.dev/kzero/internal/redirect"
	"kzero.dev/kzero/internal/workloadapi"
)

// Pods are the node's pods, as the API server says.
type Pods interface {
	PodByUID(uid types.UID) (*kubeobj.Pod, bool)
	List() []*kubeobj.Pod
}

// Config configures a Node. Every field is required unless it says
// otherwise.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// Pods are the node's pods.
	Pods Pods
	// Enrolled says whether a namespace is enrolled, and whether plain
	// text from outside the mesh is let into its pods.
	Enrolled func(namespace string) (enrolled bool, mode mesh.Mode)
	// Signer signs the pods' X.509-SVIDs (the agent's client of the
	// authority); Bundle verifies peers.
	Signer workloadapi.Signer
	Bundle x509bundle.Source
	// Resolver says where the pods' outbound connections lead.
	Resolver mesh.Resolver
	// Workload is the workload of a pod address, for the policy's
	// destination (its labels).
	Workload func(ip netip.Addr) (policy.Workload, bool)
	// Policies decide inbound streams.
	Policies *meshpolicy.Policies
	// Audit records events; nil: none (tests).
	Audit func(audit.Event)
	// Metrics counts the pods' connections; nil: none.
	Metrics *mesh.Metrics
	// ProcRoot is the host's procfs; "" means /proc.
	ProcRoot string
	// PodOf names the pod of a process by its cgroup (podattest's); it
	// finds the network namespaces of running pods.
	PodOf func(pid int32) (types.UID, error)
	// Log receives what goes wrong.
	Log *slog.Logger
	// Now: nil means time.Now.
	Now func() time.Time
	// Ports override redirect's (tests); 0 means redirect's.
	OutboundPort, InboundPort, TunnelPort uint16
}

// Node is the mesh of one node. Make it with New, then Run it (which
// reconciles) and ServeCNI (which serves the plugin).
type Node struct {
	cfg   Config
	svids *svids

	mu   sync.Mutex
	pods map[types.UID]*podEntry // guarded by mu
	ctx  context.Context         // Run's, once it runs; guarded by mu
}

// podEntry is a captured pod.
type podEntry struct {
	uid       types.UID
	namespace string
	name      string
	// nsFile holds the pod's network namespace open; netns names it for
	// the redirect package (/proc/self/fd/<fd>), nsIno identifies it.
	nsFile *os.File
	netns  string
	nsIno  uint64
	ips    []netip.Addr
	mode   mesh.Mode
	pod    *mesh.Pod
	svid   *svidEntry
}

// New checks cfg.
func New(cfg Config) (*Node, error) {
	if cfg.TrustDomain.IsZero() || cfg.Pods == nil || cfg.Enrolled == nil || cfg.Signer == nil || cfg.Bundle == nil ||
		cfg.Resolver == nil || cfg.Workload == nil || cfg.Policies == nil || cfg.PodOf == nil || cfg.Log == nil {
		return nil, errors.New("meshnode: invalid config: trust domain, pods, enrolled, signer, bundle, resolver, workload, policies, podOf and log are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	return &Node{
		cfg:   cfg,
		svids: &svids{signer: cfg.Signer, now: cfg.Now, log: cfg.Log, entries: map[spiffeid.ID]*svidEntry{}},
		pods:  map[types.UID]*podEntry{},
	}, nil
}

// errNotRunning refuses pods before Run.
var errNotRunning = errors.New("the agent's mesh is starting: try again")

// capture brings one pod in: its SVID, its listeners, then its rules, in
// the network namespace nsFile, which it takes. It returns an error,
// leaving nothing behind, if the pod cannot be protected.
func (n *Node) capture(pod *kubeobj.Pod, nsFile *os.File, ips, gateways []netip.Addr, mode mesh.Mode) (err error) {
	defer func() {
		if err != nil {
			_ = nsFile.Close()
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(int(nsFile.Fd()), &st); err != nil {
		return fmt.Errorf("pod %s/%s: its network namespace: %w", pod.Namespace, pod.Name, err)
	}
	n.mu.Lock()
	runCtx := n.ctx
	old := n.pods[pod.UID]
	n.mu.Unlock()
	if runCtx == nil {
		return errNotRunning
	}
	if old != nil {
		if old.nsIno == st.Ino {
			_ = nsFile.Close()
			return nil // the plugin again, for a pod the reconciler found first
		}
		n.let(old, false) // a new sandbox of the same pod
	}
	if len(ips) == 0 {
		return fmt.Errorf("pod %s/%s has no address", pod.Namespace, pod.Name)
	}
	netns := fmt.Sprintf("/proc/self/fd/%d", nsFile.Fd())
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	id, err := spiffeid.FromSegments(n.cfg.TrustDomain, "ns", pod.Namespace, "sa", sa)
	if err != nil {
		return fmt.Errorf("pod %s/%s: SPIFFE ID: %w", pod.Namespace, pod.Name, err)
	}
	e := &podEntry{uid: pod.UID, namespace: pod.Namespace, name: pod.Name, nsFile: nsFile, netns: netns, nsIno: st.Ino, ips: ips, mode: mode}
	e.svid = n.svids.acquire(runCtx, id)
	e.pod, err = mesh.Start(mesh.PodConfig{
		Netns: netns, Name: pod.Namespace + "/" + pod.Name, IPs: ips, SVID: e.svid, Bundle: n.cfg.Bundle,
		Resolver: n.cfg.Resolver, Mode: mode, Log: n.cfg.Log, Metrics: n.cfg.Metrics,
		Authorize:    n.cfg.Policies.Authorizer(n.destination(pod, ips), n.recordDecision(e)),
		OnEvent:      n.onEvent(e),
		OutboundPort: n.cfg.OutboundPort, InboundPort: n.cfg.InboundPort, TunnelPort: n.cfg.TunnelPort,
	})
	if err != nil {
		n.svids.release(e.svid)
		return err
	}
	if err := redirect.Install(netns, redirect.Config{
		OutboundPort: n.cfg.OutboundPort, InboundPort: n.cfg.InboundPort, TunnelPort: n.cfg.TunnelPort,
		ExcludeSources: gateways,
	}); err != nil {
		_ = e.pod.Close()
		n.svids.release(e.svid)
		return err
	}
	n.mu.Lock()
	if n.ctx != runCtx || runCtx.Err() != nil {
		// Run ended meanwhile: nothing would let this pod go.
		n.mu.Unlock()
		_ = e.pod.Close()
		n.svids.release(e.svid)
		return errNotRunning
	}
	n.pods[pod.UID] = e
	n.mu.Unlock()
	n.cfg.Log.Info("captured a pod", "pod", pod.Namespace+"/"+pod.Name, "spiffeID", id.String(), "ips", ips, "mode", modeName(mode))
	return nil
}

// let lets a pod go: its listeners and connections closed and, when
// removeRules and its namespace still exists, its rules removed (a pod
// gone takes its namespace, and its rules, with it).
func (n *Node) let(e *podEntry, removeRules bool) {
	n.mu.Lock()
	if n.pods[e.uid] != e {
		// Let go already (a DEL and a reconcile may both come): its
		// namespace's descriptor may be another pod's by now.
		n.mu.Unlock()
		return
	}
	delete(n.pods, e.uid)
	n.mu.Unlock()
	if removeRules {
		if err := redirect.Remove(e.netns); err != nil && !errors.Is(err, os.ErrNotExist) {
			n.cfg.Log.Warn("removing a pod's capture rules failed", "pod", e.namespace+"/"+e.name, "error", err)
		}
	}
	_ = e.pod.Close()
	_ = e.nsFile.Close()
	n.svids.release(e.svid)
	n.cfg.Log.Info("let a pod go", "pod", e.namespace+"/"+e.name, "rulesRemoved", removeRules)
}

// destination is the pod as a policy's destination: its namespace and
// service account, and its labels as they are when asked.
func (n *Node) destination(pod *kubeobj.Pod, ips []netip.Addr) func() policy.Workload {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return func() policy.Workload {
		for _, ip := range ips {
			if w, ok := n.cfg.Workload(ip); ok && w.Namespace == pod.Namespace {
				return w
			}
		}
		return policy.Workload{Namespace: pod.Namespace, ServiceAccount: sa}
	}
}

// Pods returns the namespaces and names of the captured pods, sorted.
func (n *Node) Pods() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.pods))
	for _, e := range n.pods {
		out = append(out, e.namespace+"/"+e.name)
	}
	slices.Sort(out)
	return out
}

func modeName(m mesh.Mode) string {
	if m == mesh.Permissive {
		return "permissive"
	}
	return "strict"
}
