// Package version reports which kzero this is: the release version and
// commit stamped in at link time, and the Go toolchain that built it.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at link time with -ldflags "-X kzero.dev/kzero/internal/version.version=...
// -X kzero.dev/kzero/internal/version.commit=...". They are never written
// at run time.
var (
	version = ""
	commit  = ""
)

// Info describes a build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
}

// Get returns the build's Info. Without link-time values it falls back to
// the module's build information, and to "devel" and "unknown".
func Get() Info {
	info := Info{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && info.Commit == "" {
				info.Commit = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String is the one-line form `kzero version` prints.
func (i Info) String() string {
	return fmt.Sprintf("kzero %s (commit %s, %s)", i.Version, i.Commit, i.GoVersion)
}
