package meshnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/workloadapi"
)

// svids holds the X.509-SVIDs of the service accounts whose pods the node
// captures, one per SPIFFE ID however many pods share it, each renewed at
// half life for as long as a pod uses it.
type svids struct {
	signer workloadapi.Signer
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	entries map[spiffeid.ID]*svidEntry // guarded by mu
}

// svidEntry is one SPIFFE ID's SVID; it implements x509svid.Source.
type svidEntry struct {
	id     spiffeid.ID
	svid   atomic.Pointer[x509svid.SVID]
	refs   int // pods using it, guarded by svids.mu
	cancel context.CancelFunc
}

// GetX509SVID implements x509svid.Source: the tunnel asks at every
// handshake. Until the first signature, it fails, and so do the pod's
// connections: never a pod's traffic without its identity.
func (e *svidEntry) GetX509SVID() (*x509svid.SVID, error) {
	if s := e.svid.Load(); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("meshnode: the X.509-SVID of %s is not signed yet", e.id)
}

// acquire returns the SVID source of id, starting its signing loop under
// ctx if it is the first pod of id; release, when the pod is gone.
func (s *svids) acquire(ctx context.Context, id spiffeid.ID) *svidEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok {
		e = &svidEntry{id: id}
		var loopCtx context.Context
		loopCtx, e.cancel = context.WithCancel(ctx)
		s.entries[id] = e
		go s.renew(loopCtx, e)
	}
	e.refs++
	return e
}

func (s *svids) release(e *svidEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.refs--; e.refs == 0 {
		e.cancel()
		delete(s.entries, e.id)
	}
}

// renew signs e's SVID, then again at half life, and after a failure
// after workloadapi.RetryAfter, until ctx ends.
func (s *svids) renew(ctx context.Context, e *svidEntry) {
	failures := 0
	for {
		sctx, cancel := context.WithTimeout(ctx, workloadapi.DefaultSignTimeout)
		svid, err := workloadapi.SignX509SVID(sctx, s.signer, e.id, s.now())
		cancel()
		var wait time.Duration
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			return
		case err != nil:
			failures++
			wait = workloadapi.RetryAfter(failures)
			s.log.Warn("getting a pod's X.509-SVID signed for the mesh failed", "id", e.id.String(), "retryIn", wait, "error", err)
		default:
			failures = 0
			e.svid.Store(svid)
			wait = workloadapi.RenewAt(svid.Certificates[0], s.now()).Sub(s.now())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
