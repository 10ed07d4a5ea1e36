package authority

import (
	"fmt"
	"testing"
	"time"

	"kzero.dev/kzero/internal/ca/catest"
)

// Refusals of one source are audited one by one up to the burst, then at
// the rate; those in between are counted into the next one audited, and
// another source has an allowance of its own.
func TestRefusalAudit(t *testing.T) {
	clk := catest.NewClock(time.Unix(1800000000, 0))
	r := newRefusalAudit(clk.Now)
	for i := range refusalsPerSourceBurst {
		if note, ok := r.admit("address/10.244.0.9"); !ok || note != "" {
			t.Fatalf("refusal %d: %t %q, want audited with no note", i+1, ok, note)
		}
	}
	for range 7 {
		if _, ok := r.admit("address/10.244.0.9"); ok {
			t.Fatal("a refusal over the burst was audited")
		}
	}
	if _, ok := r.admit("node/node-a"); !ok {
		t.Error("another source's first refusal was not audited")
	}
	clk.Add(time.Second)
	note, ok := r.admit("address/10.244.0.9")
	want := " (and 7 more refusals of address/10.244.0.9 since the last one recorded, over the rate of 5 a second audited one by one)"
	if !ok || note != want {
		t.Errorf("a second later: %t %q, want audited with %q", ok, note, want)
	}
	if note, _ := r.admit("address/10.244.0.9"); note != "" {
		t.Errorf("the count was given twice: %q", note)
	}
}

// Past maxLimited callers, the one used least recently is forgotten: a
// flood of new addresses takes no one's allowance, and costs no memory.
func TestKeyedLimiterForgetsTheOldest(t *testing.T) {
	clk := catest.NewClock(time.Unix(1800000000, 0))
	k := newKeyedLimiter(1, 1, clk.Now)
	if !k.allow("agent") || k.allow("agent") {
		t.Fatal("a bucket of one did not allow one, then refuse")
	}
	for i := range maxLimited {
		clk.Add(time.Microsecond)
		if !k.allow(fmt.Sprint("address/10.0.", i/256, ".", i%256)) {
			t.Fatalf("new address %d refused", i)
		}
	}
	if len(k.callers) != maxLimited {
		t.Errorf("%d callers tracked, want %d", len(k.callers), maxLimited)
	}
	if !k.allow("agent") {
		t.Error("the oldest caller, forgotten, was refused: it should start with a full bucket")
	}
}
