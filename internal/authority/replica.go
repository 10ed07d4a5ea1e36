package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/internal/admission"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/leader"
)

// LeaseName is the Lease the authority's replicas elect their leader with.
const LeaseName = "kzero-authority"

// ReplicaConfig configures a Replica.
type ReplicaConfig struct {
	// Client reaches the API server. Required.
	Client kubernetes.Interface
	// TrustDomain of the CA and the IDs issued. Required.
	TrustDomain spiffeid.TrustDomain
	// Store holds the CA's state. Only the leader writes it. Required.
	Store ca.Store
	// NewCA loads the CA from a store; nil means ca.New with TrustDomain
	// and the defaults.
	NewCA func(context.Context, ca.Store) (*ca.CA, error)
	// Audit records every issuance, refusal and admission verdict.
	// Required.
	Audit Auditor
	// Log receives operational messages. Required.
	Log *slog.Logger
	// Lifetime and RefreshAt of the X.509-SVIDs issued: see SignerConfig.
	Lifetime  time.Duration
	RefreshAt float64
	// Election configures the Lease. Namespace and Identity are required;
	// Client defaults to Client and Name to LeaseName.
	Election leader.Config
	// Webhook configures the pod identity webhook; its CA, Namespaces,
	// Audit and Log are filled in by the Replica.
	Webhook WebhookConfig
	// WebhookConfig is the MutatingWebhookConfiguration whose caBundle the
	// leader keeps equal to the bundle; empty: none.
	WebhookConfig string
	// Reload is how often a follower reloads the CA's state from the
	// store, and how soon the leader retries loading it; zero means 30
	// seconds.
	Reload time.Duration
}

// Replica is one replica of the authority Deployment. Every replica
// serves the pod identity webhook and keeps the CA loaded read-only; the
// one that holds the Lease also signs PodCertificateRequests, rotates the
// CA, publishes the ClusterTrustBundle and sets the webhook's caBundle.
// Create it with NewReplica and call Run once.
type Replica struct {
	cfg     ReplicaConfig
	webhook *Webhook
	current atomic.Pointer[ca.CA]
	leading atomic.Bool
	// mu orders a follower's reload of the CA with taking the lead, so
	// that a reload in flight never lands after the leader loaded its own.
	mu       sync.Mutex
	nsSynced cache.InformerSynced
	start    func(<-chan struct{})
}

// NewReplica checks cfg; it makes no request until Run.
func NewReplica(cfg ReplicaConfig) (*Replica, error) {
	var errs []error
	if cfg.Client == nil {
		errs = append(errs, errors.New("client: required"))
	}
	if cfg.TrustDomain.IsZero() {
		errs = append(errs, errors.New("trustDomain: required"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("store: required"))
	}
	if cfg.Audit == nil {
		errs = append(errs, errors.New("audit: required"))
	}
	if cfg.Log == nil {
		errs = append(errs, errors.New("log: required"))
	}
	if cfg.Election.Namespace == "" || cfg.Election.Identity == "" {
		errs = append(errs, errors.New("election: namespace and identity: required"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("authority: invalid replica config: %w", errors.Join(errs...))
	}
	if cfg.Election.Client == nil {
		cfg.Election.Client = cfg.Client
	}
	if cfg.Election.Name == "" {
		cfg.Election.Name = LeaseName
	}
	if cfg.Election.Log == nil {
		cfg.Election.Log = cfg.Log
	}
	if cfg.NewCA == nil {
		td := cfg.TrustDomain
		cfg.NewCA = func(ctx context.Context, s ca.Store) (*ca.CA, error) {
			return ca.New(ctx, ca.Config{TrustDomain: td, Store: s})
		}
	}
	if cfg.Reload <= 0 {
		cfg.Reload = 30 * time.Second
	}
	r := &Replica{cfg: cfg}
	// Trimmed to what the webhooks read (a namespace's name and labels).
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 10*time.Minute, informers.WithTransform(trim))
	nsInf := factory.Core().V1().Namespaces()
	r.nsSynced = nsInf.Informer().HasSynced
	r.start = factory.Start
	wc := cfg.Webhook
	wc.CA = func() ServingIssuer {
		if c := r.current.Load(); c != nil {
			return c
		}
		return nil
	}
	wc.Namespaces = namespaceGetter(cfg.Client, nsInf.Lister().Get)
	wc.Audit, wc.Log = cfg.Audit, cfg.Log
	var err error
	if r.webhook, err = NewWebhook(wc); err != nil {
		return nil, err
	}
	return r, nil
}

// namespaceGetter reads a namespace from the informer's cache, and from
// the API server when the cache does not have it or has it not enrolled:
// kube-apiserver calls the webhook only for enrolled namespaces (its
// namespaceSelector), so such a cache is only behind, as it is for a
// namespace labeled a moment ago.
func namespaceGetter(client kubernetes.Interface, cached func(string) (*corev1.Namespace, error)) admission.NamespaceGetter {
	return func(ctx context.Context, name string) (*corev1.Namespace, error) {
		ns, err := cached(name)
		if err == nil && ns.Labels[admission.EnrolledLabel] == "true" {
			return ns, nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		return client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	}
}

// CA returns the CA this replica has loaded (read-only unless it leads),
// or nil while none is. Safe for concurrent use.
func (r *Replica) CA() *ca.CA { return r.current.Load() }

// Leading reports whether this replica holds the Lease now.
func (r *Replica) Leading() bool { return r.leading.Load() }

// Run serves the webhook, follows and campaigns for the Lease until ctx
// ends; it returns ctx.Err(), or an error if the webhook cannot serve.
func (r *Replica) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.start(ctx.Done())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.webhook.Run(ctx); !errors.Is(err, context.Canceled) {
			cancel(err)
		}
	})
	wg.Go(func() { r.follow(ctx) })
	wg.Go(func() {
		if !cache.WaitForNamedCacheSyncWithContext(ctx, r.nsSynced) {
			return
		}
		// leader.Run returns ctx.Err(), or a configuration error that
		// would leave this replica never leading: stop then.
		if err := leader.Run(ctx, r.cfg.Election, r.lead); !errors.Is(err, context.Canceled) {
			cancel(err)
		}
	})
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// follow reloads the CA read-only every Reload while this replica does not
// lead, so that its webhook certificates chain to the current bundle.
func (r *Replica) follow(ctx context.Context) {
	log := r.cfg.Log
	for {
		r.mu.Lock()
		if !r.leading.Load() {
			c, err := r.cfg.NewCA(ctx, readOnlyStore{r.cfg.Store})
			switch {
			case err == nil:
				r.current.Store(c)
			case r.current.Load() == nil:
				log.Info("the CA is not loaded yet; the leader creates or rotates it", "error", err, "retryIn", r.cfg.Reload)
			default:
				log.Debug("the CA was not reloaded; keeping the one loaded", "error", err)
			}
		}
		r.mu.Unlock()
		t := time.NewTimer(r.cfg.Reload)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// lead runs while this replica holds the Lease: it loads the CA from the
// store (the last leader may have rotated it), then signs, rotates and
// publishes until the leadership ends.
func (r *Replica) lead(ctx context.Context) {
	r.mu.Lock() // wait for a follower's reload in flight
	r.leading.Store(true)
	r.mu.Unlock()
	defer r.leading.Store(false)
	log := r.cfg.Log
	for ctx.Err() == nil {
		c, err := r.cfg.NewCA(ctx, r.cfg.Store)
		if err != nil {
			log.Error("leading, but the CA does not load", "error", err, "retryIn", r.cfg.Reload)
			if !sleep(ctx, r.cfg.Reload) {
				return
			}
			continue
		}
		r.current.Store(c)
		a, err := New(Config{Client: r.cfg.Client, CA: c, TrustDomain: r.cfg.TrustDomain, Namespace: r.cfg.Election.Namespace, Audit: r.cfg.Audit,
			Log: r.cfg.Log, Lifetime: r.cfg.Lifetime, RefreshAt: r.cfg.RefreshAt, WebhookConfig: r.cfg.WebhookConfig})
		if err != nil {
			log.Error("leading, but the signer does not start", "error", err)
			return
		}
		if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("the signer stopped; starting it again", "error", err, "retryIn", r.cfg.Reload)
			if !sleep(ctx, r.cfg.Reload) {
				return
			}
		}
	}
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errReadOnly is what a follower's store answers to a write.
var errReadOnly = errors.New("authority: a follower does not write the CA's state; the leader does")

// readOnlyStore is the store as a follower sees it: it reads, never
// writes. A CA that would need to write (a rotation due) does not load.
type readOnlyStore struct{ ca.Store }

func (readOnlyStore) Save(context.Context, []byte) error { return errReadOnly }
