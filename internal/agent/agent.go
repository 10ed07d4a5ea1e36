package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/podattest"
	"kzero.dev/kzero/internal/run"
	"kzero.dev/kzero/internal/workloadapi"
)

// Config configures an Agent. Fields marked required are checked by New.
type Config struct {
	// NodeName is the node the agent runs on. Required.
	NodeName string
	// TrustDomain of the authority, the agent and the workloads. Required.
	TrustDomain spiffeid.TrustDomain
	// AuthorityURL is the authority's agent API, https://host:port.
	// Required.
	AuthorityURL string
	// AuthorityID is the SPIFFE ID the authority presents. Required.
	AuthorityID spiffeid.ID
	// BundleFile and TokenFile: see ClientConfig. Required.
	BundleFile, TokenFile string
	// SocketPath is where the Workload API listens, an absolute path.
	// Required.
	SocketPath string
	// Kube lists and watches the node's pods, the namespaces and the
	// trust domain's ClusterTrustBundle: NewKube's, in production.
	// Required.
	Kube Kube
	// Log receives operational messages; never key material or tokens.
	// Required.
	Log *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// ProcRoot is procfs as it shows the callers' processes; "" means
	// /proc (the agent runs in the host's PID namespace).
	ProcRoot string
	// Mesh, when set, makes the agent the node's mesh too: it captures
	// the enrolled pods' connections (docs/mesh.md). Nil: the Workload API
	// alone.
	Mesh *MeshConfig
}

// Agent is the node agent: the client of the authority (attestation,
// renewal, the bundle), the informers of the node's pods and of the
// namespaces, and the Workload API on a unix socket for the pods of
// enrolled namespaces on the node. Create it with New and call Run once.
type Agent struct {
	cfg        Config
	client     *Client
	pods       *podattest.NodePods
	namespaces cache.SharedIndexInformer
	// trustBundles watches the trust domain's ClusterTrustBundle, a source of
	// the authorities that verify the authority.
	trustBundles cache.SharedIndexInformer
	server       *workloadapi.Server
	// bundles are the trust domain's, as last fetched from the authority:
	// what the Workload API serves and the mesh verifies peers with.
	bundles *workloadapi.Bundles
	mesh    *meshParts // nil without Config.Mesh
	started atomic.Bool
}

// New checks cfg and sets the agent up; it makes no request and opens no
// socket until Run.
func New(cfg Config) (*Agent, error) {
	if cfg.Kube == nil {
		return nil, errors.New("agent: invalid config: kube: required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	bundles := &workloadapi.Bundles{}
	ctbName := v1alpha1.TrustBundleName(cfg.TrustDomain.Name())
	ctbs := cache.NewSharedIndexInformer(cfg.Kube.ClusterTrustBundle(ctbName), &kubeobj.ClusterTrustBundle{}, 0, cache.Indexers{})
	client, err := NewClient(ClientConfig{
		URL: cfg.AuthorityURL, TrustDomain: cfg.TrustDomain, NodeName: cfg.NodeName, AuthorityID: cfg.AuthorityID,
		BundleFile: cfg.BundleFile, TokenFile: cfg.TokenFile, Bundles: bundles, Log: cfg.Log, Now: cfg.Now,
		Authorities: func() []*x509.Certificate {
			obj, ok, err := ctbs.GetStore().GetByKey(ctbName)
			ctb, isCTB := obj.(*kubeobj.ClusterTrustBundle)
			if err != nil || !ok || !isCTB {
				return nil
			}
			b, err := x509bundle.Parse(cfg.TrustDomain, []byte(ctb.Spec.TrustBundle))
			if err != nil {
				return nil
			}
			return b.X509Authorities()
		},
	})
	if err != nil {
		return nil, err
	}
	pods, err := podattest.NewNodePods(cfg.Kube.Pods(cfg.NodeName), cfg.NodeName)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	namespaces := cache.NewSharedIndexInformer(cfg.Kube.Namespaces(), &kubeobj.Namespace{}, 0, cache.Indexers{})
	if err := namespaces.SetTransform(trimNamespace); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	att, err := podattest.New(podattest.Config{
		NodeName: cfg.NodeName, TrustDomain: cfg.TrustDomain, Pods: pods, ProcRoot: cfg.ProcRoot,
		Enrolled: enrolled(namespaces.GetStore()),
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	server, err := workloadapi.New(workloadapi.Config{
		SocketPath: cfg.SocketPath, TrustDomain: cfg.TrustDomain,
		Attestor: podAttestor(att), Signer: client, Bundles: bundles, Log: cfg.Log, Now: cfg.Now,
		CallerGroup: podOf(att),
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := &Agent{
		cfg: cfg, client: client, pods: pods, namespaces: namespaces, trustBundles: ctbs, server: server, bundles: bundles,
	}
	if cfg.Mesh != nil {
		if a.mesh, err = a.newMesh(att); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// enrolled reports whether a namespace is enrolled, from the informer's
// copy: labeled v1alpha1.EnrolledLabel=true.
func enrolled(namespaces cache.Store) func(string) bool {
	return func(name string) bool {
		obj, ok, err := namespaces.GetByKey(name)
		ns, isNS := obj.(*kubeobj.Namespace)
		return err == nil && ok && isNS && ns.Labels[v1alpha1.EnrolledLabel] == "true"
	}
}

// podOf groups the Workload API's callers by the pod of their cgroup, for
// its limits: a pod's processes share one allowance, however many it
// forks. A process in no pod (or gone) is counted alone.
func podOf(att *podattest.Attestor) func(int32) string {
	return func(pid int32) string {
		uid, err := att.PodOf(pid)
		if err != nil {
			return ""
		}
		return "pod/" + string(uid)
	}
}

// trimNamespace keeps of a namespace what enrolled reads: its name and
// labels.
func trimNamespace(obj any) (any, error) {
	o, ok := obj.(*kubeobj.Namespace)
	if !ok {
		return obj, nil // a tombstone: the informer handles it
	}
	return &kubeobj.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: o.Labels}}, nil
}

// podAttestor identifies a caller of the Workload API by its PID, its
// cgroup and its pod. A refusal is podattest's *RefusalError, whose
// PublicMessage the server sends the caller.
func podAttestor(att *podattest.Attestor) workloadapi.Attestor {
	return workloadapi.AttestorFunc(func(ctx context.Context, c workloadapi.Caller) (spiffeid.ID, error) {
		r, err := att.Attest(ctx, c.PID)
		if err != nil {
			return spiffeid.ID{}, err
		}
		return r.ID, nil
	})
}

// Client returns the agent's client of the authority.
func (a *Agent) Client() *Client { return a.client }

// Run runs the agent until ctx ends, then returns ctx.Err(): the client's
// attestation, renewal and bundle loop, the informers of the node's pods
// and of the namespaces and, once they have synced, the Workload API. It
// returns early with the error of a part that fails (the socket cannot be
// made, say), having stopped the others.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run was called twice: make a new Agent")
	}
	a.cfg.Log.Info("starting the agent", "node", a.cfg.NodeName, "spiffeID", a.client.ID().String(),
		"authority", a.cfg.AuthorityURL, "authorityID", a.cfg.AuthorityID.String(), "socket", a.cfg.SocketPath)
	parts := []func(context.Context) error{a.client.Run, a.pods.Run, a.runNamespaces, a.serve}
	if a.mesh != nil {
		parts = append(parts, a.runMesh)
	}
	return run.All(ctx, parts...)
}

// runNamespaces watches the namespaces and the trust domain's
// ClusterTrustBundle until ctx ends.
func (a *Agent) runNamespaces(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { a.namespaces.RunWithContext(ctx) })
	wg.Go(func() { a.trustBundles.RunWithContext(ctx) })
	wg.Wait()
	return ctx.Err()
}

// serve serves the Workload API once the informers have synced: until
// then, every caller would be refused.
func (a *Agent) serve(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), a.pods.HasSynced, a.namespaces.HasSynced) {
		return ctx.Err()
	}
	a.cfg.Log.Info("the node's pods and the namespaces are read: serving the Workload API")
	return a.server.Run(ctx)
}
