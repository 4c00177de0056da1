// Package version says which build of roomengine is running: the release packaging stamps
// Version, Commit and Date with -ldflags -X (scripts/package.sh); a plain `go build` leaves
// them empty and Get falls back to what the Go toolchain recorded in the binary (the module
// version and, inside a git checkout, the VCS revision and commit time).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by -ldflags "-X roomengine/internal/version.Version=…" (and Commit, Date) at release
// builds. Variables, not constants, so the linker can set them.
var (
	Version string
	Commit  string
	Date    string
)

// Unknown stands for a field neither the linker flags nor the build info provide.
const Unknown = "unknown"

// Info describes one build.
type Info struct {
	Version   string // "1.4.0", "0.0.0~git20261207.a943c98", or "(devel)"
	Commit    string // full commit hash, "+dirty" appended for an unclean tree
	Date      string // commit/build time, RFC 3339
	GoVersion string // "go1.26.8"
	Platform  string // "linux/amd64"
}

// Get returns the build's Info: the -ldflags values where set, else the build info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(Version, Commit, Date, bi)
}

// resolve merges the linker-set values with bi (nil when the binary has none).
func resolve(version, commit, date string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Commit: commit, Date: date,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if info.Version == "" {
			info.Version = bi.Main.Version
		}
		var revision, modified, vcsTime string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value
			case "vcs.time":
				vcsTime = s.Value
			}
		}
		if info.Commit == "" && revision != "" {
			info.Commit = revision
			if modified == "true" {
				info.Commit += "+dirty"
			}
		}
		if info.Date == "" {
			info.Date = vcsTime
		}
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
	}
	for _, f := range []*string{&info.Version, &info.Commit, &info.Date} {
		if *f == "" {
			*f = Unknown
		}
	}
	return info
}

// String is the one-line form: "0.0.0~git20261207.a943c98 (commit a943c98…, 2026-12-07T17:20:00Z, go1.26.8 linux/amd64)".
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, built %s, %s %s)", i.Version, i.Commit, i.Date, i.GoVersion, i.Platform)
}
