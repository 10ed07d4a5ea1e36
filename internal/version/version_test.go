package version

import (
	"runtime"
	"testing"
)

func TestGetFallsBackWhenNotStamped(t *testing.T) {
	// A test binary is neither stamped nor built from a module version.
	want := Info{Version: "devel", Commit: "unknown", GoVersion: runtime.Version()}
	if got := Get(); got != want {
		t.Errorf("Get() = %+v, want %+v", got, want)
	}
}

func TestString(t *testing.T) {
	got := Info{Version: "v0.1.0", Commit: "abc123", GoVersion: "go1.26.8"}.String()
	if want := "kzero v0.1.0 (commit abc123, go1.26.8)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
