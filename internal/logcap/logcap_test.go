package logcap_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roomengine/internal/logcap"
)

func newLogger(buf *bytes.Buffer, opts logcap.Options) *slog.Logger {
	return slog.New(logcap.New(slog.NewTextHandler(buf, nil), opts))
}

func TestCutNotesTheLength(t *testing.T) {
	assert.Equal(t, "short", logcap.Cut("short", 10))
	assert.Equal(t, "12345…(12 bytes)", logcap.Cut("123456789012", 5))
	// A cut never splits a character: 3 bytes each, max 4 keeps one.
	assert.Equal(t, "房…(9 bytes)", logcap.Cut("房间号", 4))
}

func TestEveryValueIsBounded(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, logcap.Options{MaxValue: 64})
	big := strings.Repeat("9", 100_000)
	wrapped := fmt.Errorf("outer: %w", fmt.Errorf("inner %s", big))
	log.With("fixed", big).WithGroup("g").Info(big, "s", big, "err", wrapped,
		slog.Group("grp", "inner", big), "any", []string{big}, "stringer", bytes.NewBufferString(big))
	out := buf.String()
	assert.Less(t, len(out), 2000, out)
	assert.Contains(t, out, "…(100000 bytes)")
	assert.Contains(t, out, "outer: inner 999")
	assert.Contains(t, out, "(100013 bytes)") // the error chain's whole length
}

func TestTrustedValuesStayWhole(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, logcap.Options{MaxValue: 16})
	stack := strings.Repeat("frame\n", 100)
	log.Error("panicked", "stack", logcap.Trusted(stack))
	assert.Contains(t, buf.String(), strings.Repeat(`frame\n`, 100))
}

func TestSmallValuesKeepTheirType(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(logcap.New(slog.NewJSONHandler(&buf, nil), logcap.Options{}))
	log.Info("m", "list", []string{"a", "b"}, "n", 3)
	assert.Contains(t, buf.String(), `"list":["a","b"],"n":3`)
}

func TestRepeatedWarningsAreRateLimited(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	log := newLogger(&buf, logcap.Options{Burst: 3, Every: time.Second, Now: clock})
	for i := range 100 {
		log.Warn("request failed", "i", i)
	}
	log.Warn("another warning") // a different message has its own budget
	log.Info("info is never limited")
	log.Info("info is never limited")
	assert.Equal(t, 3, strings.Count(buf.String(), "request failed"))
	assert.Equal(t, 1, strings.Count(buf.String(), "another warning"))
	assert.Equal(t, 2, strings.Count(buf.String(), "info is never limited"))

	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	buf.Reset()
	log.Warn("request failed", "i", 100)
	assert.Contains(t, buf.String(), "suppressed=97")

	// Loggers of other components (With) count apart.
	buf.Reset()
	for range 5 {
		log.With("component", "gateway").Warn("request failed")
	}
	assert.Equal(t, 3, strings.Count(buf.String(), "component=gateway"))
}

func TestWrapIsIdempotent(t *testing.T) {
	var buf bytes.Buffer
	l := logcap.Wrap(slog.New(slog.NewTextHandler(&buf, nil)))
	require.Same(t, l, logcap.Wrap(l))
	l.Info("x", "err", errors.New(strings.Repeat("a", 1000)))
	assert.Contains(t, buf.String(), "(1000 bytes)")
}
