package http

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestDecodeParamsIsLinear decodes each adversarial shape at two sizes eight times apart:
// a linear decoder takes about eight times as long, a quadratic one sixty-four. The best
// of several runs is compared, and the bound is loose, so scheduling noise does not fail
// it. A shape measured above the bound is measured again, up to three times: under -race
// with every package's tests running at once, one stall in the small runs was enough to
// push a linear decoder to 30.3× (CI, 2026-12-07); a quadratic one stays near 64× every
// time.
func TestDecodeParamsIsLinear(t *testing.T) {
	const small, large = 8 << 10, 64 << 10
	best := func(c struct{ ctype, query, body string }) time.Duration {
		d := time.Duration(1<<63 - 1)
		for range 7 {
			req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(c.body))
			req.URL.RawQuery = c.query
			req.Header.Set("Content-Type", c.ctype)
			start := time.Now()
			_, _ = decodeParams(req, 1<<20, true)
			d = min(d, time.Since(start))
		}
		return max(d, time.Microsecond)
	}
	smalls, larges := adversarialInputs(small), adversarialInputs(large)
	for i := range smalls {
		ratio := 0.0
		for range 3 {
			if ratio = float64(best(larges[i])) / float64(best(smalls[i])); ratio < 30 {
				break
			}
		}
		assert.Less(t, ratio, 30.0, "shape %d: 8× the input took %.0f× as long", i, ratio)
	}
}
