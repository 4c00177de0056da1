package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sampleConfig is the commented configuration shipped in the release archives and as the
// Debian package's /etc/roomengine/app.yaml.
const sampleConfig = "../deploy/app.yaml"

// The sample configuration starts a server as it is (every setting commented out), and every
// setting it shows is a real key with its true default: uncommenting all of them changes
// nothing. Prose lines start with "##", settings with "# ".
func TestSampleConfigShowsTheDefaults(t *testing.T) {
	raw, err := os.ReadFile(sampleConfig)
	require.NoError(t, err)
	want, err := Load("", nil)
	require.NoError(t, err)

	asIs, err := Load(sampleConfig, nil)
	require.NoError(t, err, "the sample as shipped")
	assert.Equal(t, want.Redacted(), asIs.Redacted())

	var lines []string
	settings := 0
	for line := range strings.Lines(string(raw)) {
		switch {
		case strings.HasPrefix(line, "##") || strings.TrimSpace(line) == "":
		case strings.HasPrefix(line, "# "):
			lines = append(lines, strings.TrimPrefix(line, "# "))
			settings++
		default:
			t.Fatalf("%s: a line that is neither a ## comment nor a # setting: %q", sampleConfig, line)
		}
	}
	require.Greater(t, settings, 40, "the sample shows the settings an operator changes")
	path := filepath.Join(t.TempDir(), "app.yaml")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600))
	all, err := Load(path, nil)
	require.NoError(t, err, "every setting of the sample uncommented:\n%s", strings.Join(lines, ""))
	assert.Equal(t, want.Redacted(), all.Redacted(), "a value in the sample is not the default")
}
