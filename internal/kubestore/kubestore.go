// Package kubestore keeps the CA's state document in a Kubernetes Secret:
// the ca.Store of `kzero authority`, so that the cluster's etcd holds the
// keys and kzero adds no store of its own.
//
// The Secret is created on the first Save and then replaced only with
// optimistic concurrency: every Update carries the resourceVersion last
// read or written, so a Secret that someone else changed in between is
// never overwritten; Save returns an error wrapping ErrConflict instead.
// The document is never logged, and errors never quote it.
package kubestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"kzero.dev/kzero/api/v1alpha1"
)

// Defaults of the Secret's place and key.
const (
	DefaultNamespace = v1alpha1.Namespace
	DefaultName      = "kzero-ca"
	// DataKey is the Secret's data key that holds the document.
	DataKey = "ca.json" //nolint:gosec // a key name, not a credential
	// SecretType is the type of the Secret the store creates.
	SecretType corev1.SecretType = "kzero.dev/ca-state" //nolint:gosec // a type name, not a credential
)

// ErrConflict is wrapped by Save when the Secret changed (or appeared)
// since this Store last read or wrote it: another process writes the same
// CA state. Nothing was written; restart the process so that it reads the
// current state, and make sure only one authority leads.
var ErrConflict = errors.New("kubestore: the Secret changed since it was read")

// Store is a ca.Store in one Secret. It is safe for concurrent use; the CA
// serialises its calls anyway.
type Store struct {
	secrets   corev1client.SecretInterface
	namespace string
	name      string

	mu sync.Mutex
	// rv is the resourceVersion last read or written; empty until the
	// Secret has been seen.
	rv string
}

// New returns a store for the Secret namespace/name (empty: DefaultNamespace
// and DefaultName) reached through client. It makes no request.
func New(client corev1client.SecretsGetter, namespace, name string) (*Store, error) {
	if client == nil {
		return nil, errors.New("kubestore: a Kubernetes client is required")
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	if name == "" {
		name = DefaultName
	}
	return &Store{secrets: client.Secrets(namespace), namespace: namespace, name: name}, nil
}

// String names the Secret, for messages.
func (s *Store) String() string { return "Secret " + s.namespace + "/" + s.name }

// Load returns the document the Secret holds. When the Secret does not
// exist it returns an error wrapping fs.ErrNotExist (the CA then starts a
// new trust domain root). A Secret without the document's key, or that
// cannot be read, is an error: the CA refuses to start rather than replace
// keys it cannot see.
func (s *Store) Load(ctx context.Context) ([]byte, error) {
	sec, err := s.secrets.Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s.setRV("")
		return nil, fmt.Errorf("kubestore: %s does not exist: %w", s, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("kubestore: read %s: %w", s, err)
	}
	doc, ok := sec.Data[DataKey]
	if !ok || len(doc) == 0 {
		return nil, fmt.Errorf("kubestore: %s has no data key %q: it was not written by kzero, or was emptied; restore it from a backup, or delete it to start a new trust domain root", s, DataKey)
	}
	s.setRV(sec.ResourceVersion)
	return doc, nil
}

// Save writes doc: it creates the Secret when Load found none, and
// otherwise updates it at the resourceVersion last seen. If the Secret was
// created or changed by someone else meanwhile, nothing is written and the
// error wraps ErrConflict.
func (s *Store) Save(ctx context.Context, doc []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      s.name,
			Namespace: s.namespace,
			Labels:    map[string]string{"app.kubernetes.io/managed-by": "kzero", "app.kubernetes.io/component": "authority"},
		},
		Type: SecretType,
		Data: map[string][]byte{DataKey: doc},
	}
	if s.rv == "" {
		got, err := s.secrets.Create(ctx, sec, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("kubestore: create %s: it was created by another process since it was read: %w", s, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("kubestore: create %s: %w", s, err)
		}
		s.rv = got.ResourceVersion
		return nil
	}
	sec.ResourceVersion = s.rv
	got, err := s.secrets.Update(ctx, sec, metav1.UpdateOptions{})
	switch {
	case apierrors.IsConflict(err):
		return fmt.Errorf("kubestore: update %s at resourceVersion %s: %w", s, s.rv, ErrConflict)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("kubestore: update %s: it was deleted since it was read: %w", s, ErrConflict)
	case err != nil:
		return fmt.Errorf("kubestore: update %s: %w", s, err)
	}
	s.rv = got.ResourceVersion
	return nil
}

func (s *Store) setRV(rv string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rv = rv
}
