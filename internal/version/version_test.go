package version

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The linker flags win; the build info fills what they leave empty; what neither has is
// "unknown", never an empty field.
func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"},
			{Key: "vcs.time", Value: "2026-12-07T10:00:00Z"}, {Key: "vcs.modified", Value: "false"}}}
	dirty := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}
	for name, tc := range map[string]struct {
		version, commit, date string
		bi                    *debug.BuildInfo
		want                  Info
	}{
		"ldflags win": {"0.0.0~git20261207.abc1234", "abc1234full", "2026-12-07T11:00:00Z", vcs,
			Info{"0.0.0~git20261207.abc1234", "abc1234full", "2026-12-07T11:00:00Z", "go1.26.8", ""}},
		"build info fallback": {"", "", "", vcs,
			Info{"v1.2.3", "abc123", "2026-12-07T10:00:00Z", "go1.26.8", ""}},
		"dirty tree": {"", "", "", dirty,
			Info{"(devel)", "abc123+dirty", Unknown, "go1.26.8", ""}},
		"nothing at all": {"", "", "", nil,
			Info{Unknown, Unknown, Unknown, runtime.Version(), ""}},
	} {
		t.Run(name, func(t *testing.T) {
			got := resolve(tc.version, tc.commit, tc.date, tc.bi)
			tc.want.Platform = runtime.GOOS + "/" + runtime.GOARCH
			assert.Equal(t, tc.want, got)
		})
	}
}
