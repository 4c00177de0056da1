package docs

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestREADMEPushTable keeps the README's short push-type table in step with the reference
// in api.md: the same types, the same importance, and each README meaning the start of the
// reference's.
func TestREADMEPushTable(t *testing.T) {
	readme := pushTable(t, "../README.md")
	ref := pushTable(t, "api.md")
	require.NotEmpty(t, ref)

	var readmeTypes, refTypes []string
	for _, row := range readme {
		readmeTypes = append(readmeTypes, row[0])
	}
	for _, row := range ref {
		refTypes = append(refTypes, row[0])
	}
	require.Equal(t, refTypes, readmeTypes, "the README lists the push types of docs/api.md, in order")

	for i, row := range readme {
		want := ref[i]
		assert.Equal(t, want[2], row[2], "importance of type %s", row[0])
		assert.True(t, strings.HasPrefix(want[1], row[1]),
			"type %s: README says %q, docs/api.md %q", row[0], row[1], want[1])
	}
}

// pushTable returns the cells of the rows of the Markdown table in path whose header starts
// with "| type | meaning | importance |".
func pushTable(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var rows [][]string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "| type | meaning | importance |"):
			require.False(t, in || rows != nil, "%s: one push table", path)
			in = true
		case in && strings.HasPrefix(line, "| ---"):
		case in && strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(line, "|"), "|")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			require.GreaterOrEqual(t, len(cells), 3, "%s: %s", path, line)
			rows = append(rows, cells)
		default:
			in = false
		}
	}
	require.NotEmpty(t, rows, "%s: no push table", path)
	return rows
}
