// Package version tells which Remora this is.
package version

import "runtime/debug"

// version is set at build time with -ldflags "-X remora.dev/remora/internal/version.version=v1.2.3".
var version = ""

// Version is the release version, else the VCS revision the binary was built
// from, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if len(rev) > 12 {
			return "dev-" + rev[:12] + dirty
		}
	}
	return "dev"
}
