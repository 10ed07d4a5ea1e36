package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/cni"
	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/mesh"
	"kzero.dev/kzero/internal/meshnode"
	"kzero.dev/kzero/internal/meshpolicy"
	"kzero.dev/kzero/internal/meshresolve"
	"kzero.dev/kzero/internal/podattest"
	"kzero.dev/kzero/internal/run"
)

// MeshConfig makes the agent the node's mesh (docs/mesh.md).
type MeshConfig struct {
	// CNISocket is where the chained plugin reaches the agent, and
	// EnrolledFile where the agent lists the enrolled namespaces for the
	// plugin; "" means cni.Socket and cni.EnrolledFile.
	CNISocket, EnrolledFile string
	// Audit receives the mesh's audit events, a JSON line each: the
	// agent's stdout. Required.
	Audit io.Writer
	// MetricsAddr is where the agent serves its Prometheus metrics,
	// host:port; "" means none.
	MetricsAddr string
	// Chain, if set, installs and chains the CNI plugin (cni.Install);
	// the agent calls it every ChainInterval, so that a pod network that
	// rewrites the node's network configuration does not drop kzero-cni
	// for long.
	Chain func() error
}

// ChainInterval is how often the agent checks that its CNI plugin is
// chained.
const ChainInterval = 30 * time.Second

// meshParts are the mesh's pieces of the agent.
type meshParts struct {
	cfg      MeshConfig
	resolver *meshresolve.Resolver
	policies *meshpolicy.Policies
	watcher  *meshnode.PolicyWatcher
	node     *meshnode.Node
	registry *prometheus.Registry
	// namespacesChanged is poked by the namespaces' informer.
	namespacesChanged chan struct{}
}

// newMesh sets the mesh up; it runs in runMesh.
func (a *Agent) newMesh(att *podattest.Attestor) (*meshParts, error) {
	cfg := *a.cfg.Mesh
	if cfg.CNISocket == "" {
		cfg.CNISocket = cni.Socket
	}
	if cfg.EnrolledFile == "" {
		cfg.EnrolledFile = cni.EnrolledFile
	}
	if cfg.Audit == nil {
		return nil, errors.New("agent: invalid config: mesh: audit: required")
	}
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Out: cfg.Audit})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	m := &meshParts{cfg: cfg, policies: &meshpolicy.Policies{}, registry: prometheus.NewRegistry(), namespacesChanged: make(chan struct{}, 1)}
	metrics, err := mesh.NewMetrics(m.registry)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	store := a.namespaces.GetStore()
	m.resolver, err = meshresolve.New(meshresolve.Config{
		Pods: a.cfg.Kube.AllPods(), Services: a.cfg.Kube.Services(), EndpointSlices: a.cfg.Kube.EndpointSlices(),
		TrustDomain: a.cfg.TrustDomain, Enrolled: enrolled(store),
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	m.watcher = &meshnode.PolicyWatcher{
		AccessPolicies: a.cfg.Kube.AccessPolicies(), TrustDomain: a.cfg.TrustDomain,
		Enrollment: policyEnrollment(store), Policies: m.policies, Log: a.cfg.Log,
	}
	m.node, err = meshnode.New(meshnode.Config{
		TrustDomain: a.cfg.TrustDomain, Pods: a.pods, Enrolled: meshEnrollment(store),
		Signer: a.client, Bundle: a.bundles, Resolver: m.resolver, Workload: m.resolver.Workload,
		Policies: m.policies, Metrics: metrics, ProcRoot: a.cfg.ProcRoot, PodOf: att.PodOf, Log: a.cfg.Log.With("part", "mesh"),
		Audit: func(e audit.Event) {
			if err := rec.Record(e); err != nil {
				a.cfg.Log.Error("writing an audit event failed", "error", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	poke := func(any) {
		select {
		case m.namespacesChanged <- struct{}{}:
		default:
		}
	}
	if _, err := a.namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, DeleteFunc: poke, UpdateFunc: func(_, o any) { poke(o) },
	}); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return m, nil
}

// runMesh runs the mesh until ctx ends: the resolver's informers and the
// policies' at once; the plugin's socket, the reconciler and the enrolled
// list once the node's pods, the namespaces and the cluster are read.
func (a *Agent) runMesh(ctx context.Context) error {
	m := a.mesh
	return run.All(ctx,
		m.resolver.Run,
		m.watcher.Run,
		m.serveMetrics,
		a.keepChained,
		func(ctx context.Context) error {
			if !cache.WaitForCacheSync(ctx.Done(), a.pods.HasSynced, a.namespaces.HasSynced, m.resolver.HasSynced) {
				return ctx.Err()
			}
			a.cfg.Log.Info("the cluster is read: capturing the node's enrolled pods")
			trigger := make(chan struct{}, 1)
			return run.All(ctx,
				func(ctx context.Context) error { return m.node.ServeCNI(ctx, m.cfg.CNISocket) },
				func(ctx context.Context) error { return m.node.Run(ctx, trigger) },
				func(ctx context.Context) error { return a.writeEnrolled(ctx, trigger) },
			)
		})
}

// keepChained calls Chain every ChainInterval until ctx ends.
func (a *Agent) keepChained(ctx context.Context) error {
	chain := a.mesh.cfg.Chain
	if chain == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	t := time.NewTicker(ChainInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := chain(); err != nil {
				a.cfg.Log.Error("checking that kzero-cni is chained failed: new pods of enrolled namespaces may start uncaptured until it is", "error", err)
			}
		}
	}
}

// writeEnrolled keeps the plugin's list of enrolled namespaces current,
// and has the node reconcile whenever the namespaces change.
func (a *Agent) writeEnrolled(ctx context.Context, trigger chan<- struct{}) error {
	m := a.mesh
	var last []string
	for {
		var names []string
		for _, o := range a.namespaces.GetStore().List() {
			if ns, ok := o.(*kubeobj.Namespace); ok && ns.Labels[v1alpha1.EnrolledLabel] == "true" {
				names = append(names, ns.Name)
			}
		}
		slices.Sort(names)
		if last == nil || !slices.Equal(names, last) {
			if err := cni.WriteEnrolled(m.cfg.EnrolledFile, names); err != nil {
				a.cfg.Log.Error("writing the plugin's list of enrolled namespaces failed", "error", err)
			} else {
				last = append([]string{}, names...)
			}
		}
		select {
		case trigger <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.namespacesChanged:
		}
	}
}

// serveMetrics serves the Prometheus metrics on MetricsAddr until ctx
// ends.
func (m *meshParts) serveMetrics(ctx context.Context) error {
	if m.cfg.MetricsAddr == "" {
		<-ctx.Done()
		return ctx.Err()
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", m.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("agent: metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 8 << 10}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("agent: metrics: %w", err)
	}
	return ctx.Err()
}

// meshEnrollment says whether a namespace is enrolled, and whether its
// pods take plain text from outside the mesh (v1alpha1.MeshModeLabel, or
// a namespace in audit mode).
func meshEnrollment(namespaces cache.Store) func(string) (bool, mesh.Mode) {
	return func(name string) (bool, mesh.Mode) {
		labels, ok := enrolledLabels(namespaces, name)
		if !ok {
			return false, mesh.Strict
		}
		if labels[v1alpha1.MeshModeLabel] == "permissive" || labels[v1alpha1.ModeLabel] == "audit" {
			return true, mesh.Permissive
		}
		return true, mesh.Strict
	}
}

// policyEnrollment is the policy engine's view of the namespaces.
func policyEnrollment(namespaces cache.Store) func(string) (v1alpha1.Mode, bool) {
	return func(name string) (v1alpha1.Mode, bool) {
		labels, ok := enrolledLabels(namespaces, name)
		if !ok {
			return "", false
		}
		if labels[v1alpha1.ModeLabel] == "audit" {
			return v1alpha1.ModeAudit, true
		}
		return v1alpha1.ModeEnforce, true
	}
}

// enrolledLabels are the labels of an enrolled namespace.
func enrolledLabels(namespaces cache.Store, name string) (map[string]string, bool) {
	obj, ok, err := namespaces.GetByKey(name)
	ns, isNS := obj.(*kubeobj.Namespace)
	if err != nil || !ok || !isNS || ns.Labels[v1alpha1.EnrolledLabel] != "true" || v1alpha1.NeverEnrolled(name, v1alpha1.Namespace) {
		return nil, false
	}
	return ns.Labels, true
}
