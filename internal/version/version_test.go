package version

import (
	"runtime"
	"testing"
)

func TestGetFallsBackWhenNotStamped(t *testing.T) {
	got := Get()
	if got.Version == "" || got.Commit == "" || got.GoVersion != runtime.Version() {
		t.Errorf("Get() = %+v, want every field set and the running Go version", got)
	}
}

func TestString(t *testing.T) {
	got := Info{Version: "v0.1.0", Commit: "abc123", GoVersion: "go1.26.8"}.String()
	if want := "kzero v0.1.0 (commit abc123, go1.26.8)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
