package cli

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

// TestAuditTrailBeforeTheCA: the authority's audit trail on stdout, its
// slog lines merged in as kubectl logs shows them. Before the replica
// loads its CA, events go out and their checkpoint waits, logged, not an
// error; once the CA is loaded the next checkpoint, signed by the
// authority's own SVID, signs them too, and the stream verifies with the
// default signer and the CA's bundle.
func TestAuditTrailBeforeTheCA(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	var loaded atomic.Pointer[ca.CA]
	var merged bytes.Buffer // stdout and stderr
	log := slog.New(slog.NewJSONHandler(&merged, nil))
	svids, err := authority.NewAuditSVID(authority.AuditSVIDConfig{TrustDomain: td, Namespace: "kzero-system", CA: loaded.Load, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	trail, err := newAuditTrail(&merged, audit.ComponentAuthority, svids, time.Nanosecond, log)
	if err != nil {
		t.Fatal(err)
	}
	event := audit.Event{Kind: audit.KindIssuance, Outcome: audit.OutcomeFailure, Reason: "refused: the CA is not loaded yet",
		Issuance: &audit.Issuance{SPIFFEID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web"), Type: audit.SVIDTypeX509, Requester: "node/worker-1"}}
	if err := trail.Record(event); err != nil {
		t.Fatalf("Record before the CA: %v, want nil (the checkpoint waits)", err)
	}
	if !strings.Contains(merged.String(), `"msg":"audit checkpoint waits: the event was recorded, the next checkpoint signs it","error":"audit: checkpoint failed after record 1: getting the SVID: authority: the CA is not loaded yet`) {
		t.Fatalf("no warning logged:\n%s", merged.String())
	}
	if _, err := audit.Verify(bytes.NewReader(merged.Bytes()), audit.Options{Stream: true}); !strings.Contains(err.Error(), "ends a chain of 1 record (lines 1 to 1) that no checkpoint signs") {
		t.Errorf("before the CA: %v, want the record unsigned", err)
	}

	c, err := ca.New(context.Background(), ca.Config{TrustDomain: td, Store: catest.NewMemStore(nil)})
	if err != nil {
		t.Fatal(err)
	}
	loaded.Store(c)
	if err := trail.Record(event); err != nil {
		t.Fatal(err)
	}
	trail.Close() // nothing left to sign: e1 e2 C3
	if err := trail.Record(event); err == nil || !strings.Contains(err.Error(), "audit: closed") {
		t.Errorf("Record after Close: %v", err)
	}
	opts, err := verifyFlags{tdName: "cluster.local", stream: true, allowUnsigned: true}.options()
	if err != nil {
		t.Fatal(err)
	}
	opts.Bundle = c.Bundle()
	rep, err := audit.Verify(bytes.NewReader(merged.Bytes()), opts)
	want := spiffeid.RequireFromString("spiffe://cluster.local/ns/kzero-system/sa/kzero-authority")
	if err != nil || rep.Records != 2 || rep.Checkpoints != 1 || rep.UnsignedTail != 0 || !slices.Equal(rep.Signers, []spiffeid.ID{want}) || rep.Skipped < 2 {
		t.Errorf("report %+v, %v\n%s", rep, err, merged.String())
	}
}
