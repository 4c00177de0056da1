package http

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// spacedMessage is a MixResult Message with unencoded spaces, n bytes long.
func spacedMessage(n int) string {
	return strings.Repeat("mix failed ", n/11+1)[:n]
}

func TestRawSpaceRepairUpToTheLimit(t *testing.T) {
	addr := serveRaw(t, echo, true)
	prefix := "GET /x?Message="
	suffix := " HTTP/1.1"
	for _, n := range []int{4000, 4096, 5000, 20_000, maxRequestLine - len(prefix) - len(suffix)} {
		msg := spacedMessage(n)
		line := prefix + msg + suffix
		require.LessOrEqual(t, len(line), maxRequestLine)
		res := rawRequests(t, addr, line+"\r\nHost: x\r\n\r\n", 1)
		assert.Equal(t, http.StatusOK, res[0].StatusCode, "a %d-byte request line", len(line))
		assert.Equal(t, msg+"|", res[0].Header.Get("X-Body"), "a %d-byte request line", len(line))
	}
}

func TestRawSpaceRepairOnEveryKeptAliveRequest(t *testing.T) {
	addr := serveRaw(t, echo, true)
	longValid := "GET /x?Message=" + strings.Repeat("a", 10_000) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	longHeader := "GET /x?Message=b HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("h", 100_000) + "\r\n\r\n"
	longSpaced := "GET /x?Message=" + spacedMessage(30_000) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	raw := longValid + aliyunLine + longHeader + aliyunLine + longSpaced + aliyunLine
	res := rawRequests(t, addr, raw, 6)
	want := []string{strings.Repeat("a", 10_000), "mix stream not exist, retry later", "b",
		"mix stream not exist, retry later", spacedMessage(30_000), "mix stream not exist, retry later"}
	for i, r := range res {
		assert.Equal(t, http.StatusOK, r.StatusCode, "request %d", i+1)
		assert.Equal(t, want[i]+"|", r.Header.Get("X-Body"), "request %d", i+1)
	}
}

func TestRequestLineOverTheLimitGets414(t *testing.T) {
	addr := serveRaw(t, echo, true)
	for _, msg := range []string{strings.Repeat("a", maxRequestLine), spacedMessage(maxRequestLine + 1000), spacedMessage(500_000)} {
		res := rawRequests(t, addr, "GET /x?Message="+msg+" HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n", 1)
		assert.Equal(t, http.StatusRequestURITooLong, res[0].StatusCode)
		assert.True(t, res[0].Close, "Connection: close")
		var env struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		require.NoError(t, json.Unmarshal([]byte(res[0].Header.Get("X-Body")), &env))
		assert.Equal(t, 414, env.Code)
		assert.Contains(t, env.Message, "请求行过长")
	}
	// The listener still serves other connections.
	res := rawRequests(t, addr, aliyunLine, 1)
	assert.Equal(t, http.StatusOK, res[0].StatusCode)
}
