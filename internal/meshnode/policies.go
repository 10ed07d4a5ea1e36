package meshnode

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/meshpolicy"
	"kzero.dev/kzero/internal/policy"
)

// policySettle is how long the watcher waits after a change for the next
// one before it compiles: a kubectl apply of many policies compiles once.
const policySettle = 100 * time.Millisecond

// PolicyWatcher compiles the cluster's AccessPolicies whenever they change
// and makes the result the engine of Policies: a change applies to the
// connections opened from then on, well within the 2 s it is promised in.
// A policy that does not compile is not dropped: the compiler makes it
// deny what it selects (fail closed), and the authority reports it on
// the object's status.
type PolicyWatcher struct {
	// AccessPolicies lists and watches the cluster's
	// (*kubeobj.AccessPolicy).
	AccessPolicies cache.ListerWatcher
	TrustDomain    spiffeid.TrustDomain
	// Enrollment: see policy.Options.
	Enrollment func(namespace string) (v1alpha1.Mode, bool)
	Policies   *meshpolicy.Policies
	Log        *slog.Logger
}

// Run watches until ctx ends, then returns ctx.Err().
func (w *PolicyWatcher) Run(ctx context.Context) error {
	inf := cache.NewSharedIndexInformer(w.AccessPolicies, &kubeobj.AccessPolicy{}, 0, cache.Indexers{})
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, DeleteFunc: poke, UpdateFunc: func(_, o any) { poke(o) },
	}); err != nil {
		return err
	}
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	w.compile(inf.GetStore()) // no policy at all is a policy too: deny
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(policySettle):
		}
		select { // what changed while settling is in the store already
		case <-changed:
		default:
		}
		w.compile(inf.GetStore())
	}
}

func (w *PolicyWatcher) compile(store cache.Store) {
	objs := store.List()
	ps := make([]v1alpha1.AccessPolicy, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*kubeobj.AccessPolicy); ok {
			ps = append(ps, p.Policy())
		}
	}
	start := time.Now()
	e, err := policy.Compile(ps, policy.Options{TrustDomain: w.TrustDomain, Enrollment: w.Enrollment})
	if err != nil && !errors.Is(err, policy.ErrCompile) {
		w.Log.Error("compiling the AccessPolicies failed: the previous ones still decide", "error", err)
		return
	}
	w.Policies.Set(e)
	w.Log.Info("AccessPolicies compiled", "policies", len(ps), "rules", e.Rules(), "problems", len(e.Problems()), "took", time.Since(start))
}
