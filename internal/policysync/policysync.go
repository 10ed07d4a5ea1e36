// Package policysync writes AccessPolicies' status from the engine's
// compiler, so that a policy that does not compile is reported on the
// object itself: kubectl get accesspolicies shows it not Ready, with the
// problems. The authority runs it whenever policies change.
package policysync

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/policy"
)

// GVR is the AccessPolicy resource.
var GVR = schema.GroupVersionResource{Group: v1alpha1.Group, Version: v1alpha1.Version, Resource: v1alpha1.Resource}

// Syncer compiles the cluster's AccessPolicies and writes their status.
type Syncer struct {
	// Client reaches the API server. Required.
	Client dynamic.Interface
	// TrustDomain of the cluster. Required.
	TrustDomain spiffeid.TrustDomain
	// Now stamps conditions; nil means time.Now.
	Now func() time.Time
}

// Result says what Sync did.
type Result struct {
	Policies, Updated, NotReady int
}

// Sync lists every AccessPolicy, compiles them together, and updates the
// status of each whose status differs. It returns the engine it compiled,
// for the caller to enforce.
func (s *Syncer) Sync(ctx context.Context) (*policy.Engine, Result, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	list, err := s.Client.Resource(GVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, Result{}, fmt.Errorf("policysync: list AccessPolicies: %w", err)
	}
	ps := make([]v1alpha1.AccessPolicy, len(list.Items))
	for i := range list.Items {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(list.Items[i].Object, &ps[i]); err != nil {
			return nil, Result{}, fmt.Errorf("policysync: AccessPolicy %s/%s: %w", list.Items[i].GetNamespace(), list.Items[i].GetName(), err)
		}
	}
	engine, cerr := policy.Compile(ps, policy.Options{TrustDomain: s.TrustDomain})
	if cerr != nil && !errors.Is(cerr, policy.ErrCompile) {
		return nil, Result{}, fmt.Errorf("policysync: %w", cerr)
	}
	res := Result{Policies: len(ps)}
	stamp := metav1.NewTime(now().Truncate(time.Second))
	var errs []error
	for i := range ps {
		st := policy.Status(&ps[i], engine.Problems(), stamp)
		if st.Conditions[0].Status != metav1.ConditionTrue {
			res.NotReady++
		}
		if reflect.DeepEqual(st, ps[i].Status) {
			continue
		}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
		if err != nil {
			return nil, res, fmt.Errorf("policysync: %w", err)
		}
		u := list.Items[i].DeepCopy()
		u.Object["status"] = obj
		if _, err := s.Client.Resource(GVR).Namespace(u.GetNamespace()).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("policysync: status of %s/%s: %w", u.GetNamespace(), u.GetName(), err))
			continue
		}
		res.Updated++
	}
	return engine, res, errors.Join(errs...)
}
