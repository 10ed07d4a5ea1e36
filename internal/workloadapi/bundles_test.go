package workloadapi

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestBundlesTellOnlyOfChanges(t *testing.T) {
	own := newCA(t, td, time.Now).Bundle()
	partner := newCA(t, partnerTD, time.Now).Bundle()
	var b Bundles // the zero value is ready
	empty, changed := b.snapshot()
	if len(empty.bundles) != 0 || len(empty.x509) != 0 || len(empty.jwks) != 0 {
		t.Fatalf("the zero Bundles holds %v", empty.bundles)
	}

	for i, step := range []struct {
		set     []*spiffebundle.Bundle
		changes bool
		x509    []string
	}{
		{set: []*spiffebundle.Bundle{own}, changes: true, x509: []string{"spiffe://cluster.local"}},
		{set: []*spiffebundle.Bundle{own.Clone(), nil}, changes: false, x509: []string{"spiffe://cluster.local"}},
		{set: []*spiffebundle.Bundle{partner, own}, changes: true, x509: []string{"spiffe://cluster.local", "spiffe://partner.example"}},
		// Of two bundles of one trust domain, the last wins.
		{set: []*spiffebundle.Bundle{spiffebundle.New(partnerTD), own, partner}, changes: false, x509: []string{"spiffe://cluster.local", "spiffe://partner.example"}},
		{set: []*spiffebundle.Bundle{own, spiffebundle.New(partnerTD)}, changes: true, x509: []string{"spiffe://cluster.local"}},
	} {
		if err := b.Set(step.set...); err != nil {
			t.Fatal(err)
		}
		if closed(changed) != step.changes {
			t.Fatalf("step %d: told of a change: %v, want %v", i, closed(changed), step.changes)
		}
		var cur *bundleSet
		cur, changed = b.snapshot()
		if len(cur.x509) != len(step.x509) {
			t.Fatalf("step %d: X.509 bundles of %d trust domains, want %v", i, len(cur.x509), step.x509)
		}
		for _, id := range step.x509 {
			if len(cur.x509[id]) == 0 || len(cur.jwks[id]) == 0 {
				t.Fatalf("step %d: no X.509 or JWT authorities for %s", i, id)
			}
		}
	}
	// Set kept copies: changing the caller's bundle changes nothing served.
	own.SetX509Authorities(nil)
	if cur, _ := b.snapshot(); len(cur.x509["spiffe://cluster.local"]) == 0 {
		t.Fatal("Set kept the caller's bundle, not a copy")
	}
}
