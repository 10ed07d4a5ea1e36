// Package leader elects one replica of a component with a Kubernetes
// Lease, so that only one authority signs and rotates at a time, and a new
// leader takes over quickly when the leader dies.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Defaults: a leader that dies without letting go is replaced within
// LeaseDuration + RetryPeriod (12 s); one that stops cleanly releases the
// Lease at once.
const (
	DefaultLeaseDuration = 10 * time.Second
	DefaultRenewDeadline = 7 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Config configures an election. Client, Namespace, Name and Identity are
// required; zero durations mean the defaults.
type Config struct {
	Client kubernetes.Interface
	// Namespace and Name of the Lease.
	Namespace, Name string
	// Identity of this replica, unique among the candidates (the pod name).
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod as client-go's
	// leaderelection uses them.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// KeepOnCancel leaves the Lease held when ctx ends, as a crash would;
	// for tests of the takeover. Normally false: the Lease is released.
	KeepOnCancel bool
	// Log, nil to discard.
	Log *slog.Logger
}

// Run campaigns for leadership until ctx ends, and returns ctx.Err(). Each
// time this replica wins, lead runs with a context that ends when the
// leadership is lost (or ctx ends); lead must return then. After a loss,
// Run campaigns again.
func Run(ctx context.Context, cfg Config, lead func(ctx context.Context)) error {
	if cfg.Client == nil || cfg.Namespace == "" || cfg.Name == "" || cfg.Identity == "" {
		return errors.New("leader: Client, Namespace, Name and Identity are required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.LeaseDuration, DefaultLeaseDuration)
	def(&cfg.RenewDeadline, DefaultRenewDeadline)
	def(&cfg.RetryPeriod, DefaultRetryPeriod)
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, cfg.Namespace, cfg.Name,
		cfg.Client.CoreV1(), cfg.Client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: cfg.Identity})
	if err != nil {
		return fmt.Errorf("leader: lock: %w", err)
	}
	lec := leaderelection.LeaderElectionConfig{
		Lock: lock, Name: cfg.Name, ReleaseOnCancel: !cfg.KeepOnCancel,
		LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("leader: leading", "lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
				lead(ctx)
			},
			OnStoppedLeading: func() {
				log.Info("leader: stopped leading", "lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
			},
			OnNewLeader: func(id string) {
				if id != cfg.Identity {
					log.Info("leader: following", "leader", id)
				}
			},
		},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(lec)
		if err != nil {
			return fmt.Errorf("leader: %w", err)
		}
		le.Run(ctx) // returns when leadership is lost or ctx ends
	}
	return ctx.Err()
}
