package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/ca"
)

// Issuer signs X.509-SVIDs: *ca.CA. Backdate is how far before issuance
// it sets a leaf's NotBefore: kube-apiserver measures a leaf's lifetime
// from NotBefore, so the signer asks for that much less.
type Issuer interface {
	IssueX509SVID(ca.X509Request) (*ca.X509SVID, error)
	Backdate() time.Duration
}

// Auditor records audit events: *audit.Recorder.
type Auditor interface {
	Record(audit.Event) error
}

// SignerConfig configures a Signer.
type SignerConfig struct {
	// Client reaches the API server. Required.
	Client kubernetes.Interface
	// CA signs. Required.
	CA Issuer
	// TrustDomain of the IDs issued. Required.
	TrustDomain spiffeid.TrustDomain
	// Namespace is the one kzero runs in, whose pods never get an
	// identity (see Input.OwnNamespace); empty means v1alpha1.Namespace.
	Namespace string
	// Audit records every issuance and refusal. Required.
	Audit Auditor
	// Log receives operational messages (never key material). Required.
	Log *slog.Logger
	// Lifetime is the lifetime kzero issues, fitted into each request's
	// limits (see Decide); zero means DefaultLifetime.
	Lifetime time.Duration
	// RefreshAt is where in a leaf's life kubelet is told to start
	// refreshing it, as a fraction of the lifetime after NotBefore; zero
	// means DefaultRefreshAt (half life). It is kept within what the API
	// allows: at least 10 minutes after NotBefore and 10 minutes before
	// NotAfter.
	RefreshAt float64
	// Workers is how many requests are handled at once; zero means 4.
	Workers int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// The rate of requests the authority's client makes to kube-apiserver:
// the signer makes one per request it answers (its status), the rest are
// watches. client-go's default (5/s, bursts of 10) would cap it at 5 pods a
// second.
const (
	ClientQPS   = 500
	ClientBurst = 1000
)

// Signer answers the PodCertificateRequests for SignerName. Create it
// with NewSigner and call Run once.
type Signer struct {
	cfg    SignerConfig
	queue  workqueue.TypedRateLimitingInterface[string]
	lister certlisters.PodCertificateRequestLister
	cached cachedObjects
	synced []cache.InformerSynced
	start  []func(<-chan struct{})
}

// cachedObjects are the informers' copies of the objects a request names,
// trimmed to what Decide reads (see trim).
type cachedObjects struct {
	namespaces      corelisters.NamespaceLister
	pods            corelisters.PodLister
	serviceAccounts corelisters.ServiceAccountLister
	nodes           corelisters.NodeLister
}

// NewSigner checks cfg and sets up the informer; it makes no request until
// Run.
func NewSigner(cfg SignerConfig) (*Signer, error) {
	var errs []error
	if cfg.Client == nil {
		errs = append(errs, errors.New("client: required"))
	}
	if cfg.CA == nil {
		errs = append(errs, errors.New("ca: required"))
	}
	if cfg.TrustDomain.IsZero() {
		errs = append(errs, errors.New("trustDomain: required"))
	}
	if cfg.Audit == nil {
		errs = append(errs, errors.New("audit: required"))
	}
	if cfg.Log == nil {
		errs = append(errs, errors.New("log: required"))
	}
	if cfg.Lifetime != 0 && cfg.Lifetime < MinLifetime {
		errs = append(errs, fmt.Errorf("lifetime: %s is under the %s Kubernetes requires", cfg.Lifetime, MinLifetime))
	}
	if cfg.RefreshAt < 0 || cfg.RefreshAt >= 1 {
		errs = append(errs, fmt.Errorf("refreshAt: %g is not a fraction of the lifetime in [0, 1)", cfg.RefreshAt))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("authority: invalid signer config: %w", errors.Join(errs...))
	}
	if cfg.RefreshAt == 0 {
		cfg.RefreshAt = DefaultRefreshAt
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", SignerName).String()
		}))
	inf := factory.Certificates().V1().PodCertificateRequests()
	objects := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 10*time.Minute, informers.WithTransform(trim))
	core := objects.Core().V1()
	s := &Signer{
		cfg: cfg,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "kzero-pcr-signer"}),
		lister: inf.Lister(),
		cached: cachedObjects{
			namespaces:      core.Namespaces().Lister(),
			pods:            core.Pods().Lister(),
			serviceAccounts: core.ServiceAccounts().Lister(),
			nodes:           core.Nodes().Lister(),
		},
		synced: []cache.InformerSynced{inf.Informer().HasSynced, core.Namespaces().Informer().HasSynced,
			core.Pods().Informer().HasSynced, core.ServiceAccounts().Informer().HasSynced, core.Nodes().Informer().HasSynced},
		start: []func(<-chan struct{}){factory.Start, objects.Start},
	}
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			s.queue.Add(key)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return nil, fmt.Errorf("authority: watch PodCertificateRequests: %w", err)
	}
	return s, nil
}

// Run watches PodCertificateRequests and answers them until ctx ends; it
// then stops its workers and returns ctx.Err(). Call it once.
func (s *Signer) Run(ctx context.Context) error {
	defer s.queue.ShutDown()
	for _, start := range s.start {
		start(ctx.Done())
	}
	if !cache.WaitForNamedCacheSyncWithContext(ctx, s.synced...) {
		return ctx.Err()
	}
	s.cfg.Log.Info("signing PodCertificateRequests", "signer", SignerName, "trustDomain", s.cfg.TrustDomain.Name(), "workers", s.cfg.Workers)
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() {
			for s.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
	return ctx.Err()
}

// next handles one key of the queue; false when the queue shut down.
func (s *Signer) next(ctx context.Context) bool {
	key, shutdown := s.queue.Get()
	if shutdown {
		return false
	}
	defer s.queue.Done(key)
	if err := s.sync(ctx, key); err != nil {
		s.cfg.Log.Warn("PodCertificateRequest not answered yet; will retry", "request", key, "error", err)
		s.queue.AddRateLimited(key)
		return true
	}
	s.queue.Forget(key)
	return true
}

// sync answers one request, unless it is gone or already answered.
func (s *Signer) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // not a key this informer makes; nothing to retry
	}
	r, err := s.lister.PodCertificateRequests(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if terminal(r) || r.Spec.SignerName != SignerName {
		return nil
	}
	// What the informers hold is enough to issue: a pod, service account
	// or node found with the UID the request names is that very object,
	// and the fields checked of it never change. A denial is only ever
	// made on what the API server answers now, so a cache that is behind
	// (a pod created a moment ago, a namespace just enrolled) costs a read,
	// never a wrong denial.
	d := Decide(s.fromCache(r))
	if !d.Issue {
		in, err := s.gather(ctx, r)
		if err != nil {
			return err
		}
		d = Decide(in)
	}
	if !d.Issue {
		return s.close(ctx, r, d.ID, certv1.PodCertificateRequestConditionTypeDenied, string(d.Reason), d.Message)
	}
	svid, err := s.cfg.CA.IssueX509SVID(ca.X509Request{ID: d.ID, CSR: r.Spec.StubPKCS10Request, TTL: d.Lifetime - s.cfg.CA.Backdate()})
	if err != nil {
		ref, ok := classify(err)
		if !ok {
			return fmt.Errorf("authority: sign %s: %w", d.ID, err)
		}
		return s.close(ctx, r, d.ID, ref.typ, ref.reason, err.Error())
	}
	if err := checkLifetime(r, svid); err != nil {
		return s.close(ctx, r, d.ID, certv1.PodCertificateRequestConditionTypeFailed, conditionSignerFailed, err.Error())
	}
	up := r.DeepCopy()
	up.Status = issuedStatus(r, svid, s.cfg.RefreshAt, s.cfg.Now())
	wctx, cancel := writeContext(ctx)
	defer cancel()
	if _, err := s.cfg.Client.CertificatesV1().PodCertificateRequests(ns).UpdateStatus(wctx, up, metav1.UpdateOptions{}); err != nil {
		// Most likely the certificate never left the authority; but a
		// write that timed out may have been applied, so it is audited.
		e := issuedEvent(r, svid)
		e.Outcome = audit.OutcomeFailure
		e.Reason = fmt.Sprintf("signed for PodCertificateRequest %s/%s, but writing the status failed (%v): if kube-apiserver applied the write anyway, this certificate was delivered", ns, r.Name, err)
		s.record(e)
		return fmt.Errorf("authority: set status of PodCertificateRequest %s: %w", key, err)
	}
	s.cfg.Log.Info("issued", "request", key, "spiffeID", svid.ID.String(), "notAfter", svid.NotAfter)
	s.record(issuedEvent(r, svid))
	return nil
}

// close denies or fails a request and audits it.
func (s *Signer) close(ctx context.Context, r *certv1.PodCertificateRequest, id spiffeid.ID, typ, reason, message string) error {
	up := r.DeepCopy()
	up.Status = closedStatus(r, typ, reason, message, s.cfg.Now())
	wctx, cancel := writeContext(ctx)
	defer cancel()
	if _, err := s.cfg.Client.CertificatesV1().PodCertificateRequests(r.Namespace).UpdateStatus(wctx, up, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("authority: set %s status of PodCertificateRequest %s/%s: %w", typ, r.Namespace, r.Name, err)
	}
	s.cfg.Log.Info("refused", "request", r.Namespace+"/"+r.Name, "condition", typ, "reason", reason, "message", message)
	s.record(refusedEvent(r, id, s.cfg.TrustDomain, reason, message))
	return nil
}

// statusWriteTimeout bounds a status write.
const statusWriteTimeout = 10 * time.Second

// writeContext is the context of a status write: not cancelled when ctx
// is (the lead lost, a shutdown), so that a decision made is written and
// audited rather than cut off with its outcome unknown; bounded instead.
// A write that lands after another leader answered fails on the
// resourceVersion it carries.
func writeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), statusWriteTimeout)
}

// record writes an audit event; a failure is logged loudly, since what the
// authority decides must not go unseen.
func (s *Signer) record(e audit.Event) {
	if err := s.cfg.Audit.Record(e); err != nil {
		s.cfg.Log.Error("audit event not recorded", "error", err)
	}
}

// fromCache is the input of Decide from the informers' copies; objects
// they do not hold are left nil.
func (s *Signer) fromCache(r *certv1.PodCertificateRequest) Input {
	in := Input{Request: r, TrustDomain: s.cfg.TrustDomain, OwnNamespace: s.cfg.Namespace, Lifetime: s.cfg.Lifetime}
	in.Namespace, _ = s.cached.namespaces.Get(r.Namespace)
	in.Pod, _ = s.cached.pods.Pods(r.Namespace).Get(r.Spec.PodName)
	in.ServiceAccount, _ = s.cached.serviceAccounts.ServiceAccounts(r.Namespace).Get(r.Spec.ServiceAccountName)
	in.Node, _ = s.cached.nodes.Get(string(r.Spec.NodeName))
	return in
}

// trim keeps of the objects the signer and the agent API cache only what
// Decide and the agent API's checks read, so that caching every pod of a
// large cluster costs little memory. It returns other objects unchanged.
func trim(obj any) (any, error) {
	meta := func(m metav1.ObjectMeta) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		p := &corev1.Pod{ObjectMeta: meta(o.ObjectMeta)}
		p.DeletionTimestamp = o.DeletionTimestamp // the agent API's checks
		if v, ok := o.Annotations[corev1.MirrorPodAnnotationKey]; ok {
			p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: v}
		}
		p.Spec.NodeName, p.Spec.ServiceAccountName = o.Spec.NodeName, o.Spec.ServiceAccountName
		p.Status.Phase = o.Status.Phase
		return p, nil
	case *corev1.ServiceAccount:
		return &corev1.ServiceAccount{ObjectMeta: meta(o.ObjectMeta)}, nil
	case *corev1.Node:
		return &corev1.Node{ObjectMeta: meta(o.ObjectMeta)}, nil
	case *corev1.Namespace:
		n := &corev1.Namespace{ObjectMeta: meta(o.ObjectMeta)}
		n.Labels = o.Labels
		return n, nil
	}
	return obj, nil
}

// gather reads, from the API server itself rather than a cache, the
// objects the request names. Objects that do not exist are left nil.
func (s *Signer) gather(ctx context.Context, r *certv1.PodCertificateRequest) (Input, error) {
	in := Input{Request: r, TrustDomain: s.cfg.TrustDomain, OwnNamespace: s.cfg.Namespace, Lifetime: s.cfg.Lifetime}
	core := s.cfg.Client.CoreV1()
	var err error
	if in.Namespace, err = orNil(core.Namespaces().Get(ctx, r.Namespace, metav1.GetOptions{})); err != nil {
		return in, fmt.Errorf("authority: get namespace %s: %w", r.Namespace, err)
	}
	if in.Pod, err = orNil(core.Pods(r.Namespace).Get(ctx, r.Spec.PodName, metav1.GetOptions{})); err != nil {
		return in, fmt.Errorf("authority: get pod %s/%s: %w", r.Namespace, r.Spec.PodName, err)
	}
	if in.ServiceAccount, err = orNil(core.ServiceAccounts(r.Namespace).Get(ctx, r.Spec.ServiceAccountName, metav1.GetOptions{})); err != nil {
		return in, fmt.Errorf("authority: get service account %s/%s: %w", r.Namespace, r.Spec.ServiceAccountName, err)
	}
	if in.Node, err = orNil(core.Nodes().Get(ctx, string(r.Spec.NodeName), metav1.GetOptions{})); err != nil {
		return in, fmt.Errorf("authority: get node %s: %w", r.Spec.NodeName, err)
	}
	return in, nil
}

// orNil turns NotFound into a nil object and no error.
func orNil[T any](obj *T, err error) (*T, error) {
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return obj, nil
}
