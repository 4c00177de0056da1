package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roomengine/internal/version"
)

// stampVersion sets the linker-stamped build values for one test, as a release build would.
func stampVersion(t *testing.T) version.Info {
	old := [3]string{version.Version, version.Commit, version.Date}
	version.Version, version.Commit, version.Date = "1.2.3+4.gabc1234", "abc1234def5678", "2026-12-07T17:00:00Z"
	t.Cleanup(func() { version.Version, version.Commit, version.Date = old[0], old[1], old[2] })
	return version.Get()
}

// A release build says what it is in three places: `appserver version`, the first log line
// and the roomengine_build_info metric.
func TestVersionEverywhere(t *testing.T) {
	v := stampVersion(t)

	var out strings.Builder
	require.Equal(t, 0, runVersion(&out))
	first, rest, _ := strings.Cut(out.String(), "\n")
	assert.Equal(t, "appserver 1.2.3+4.gabc1234", first, "the version as it was built, nothing added")
	assert.Contains(t, rest, "commit:   abc1234def5678")
	assert.Contains(t, rest, "built:    2026-12-07T17:00:00Z")
	assert.Contains(t, rest, "go:       "+v.GoVersion+" "+v.Platform)

	logs := &syncBuffer{}
	p := startApp(t, logs, "APPSERVER_LOG_FORMAT=json")
	line, _, _ := strings.Cut(logs.String(), "\n")
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &m), "first log line: %q", line)
	assert.Equal(t, "starting roomengine", m["msg"])
	assert.Equal(t, "1.2.3+4.gabc1234", m["version"])
	assert.Equal(t, "abc1234def5678", m["commit"])
	assert.Equal(t, "2026-12-07T17:00:00Z", m["built"])
	assert.Equal(t, v.GoVersion, m["go"])

	resp, err := nethttp.Get(p.base + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	want := fmt.Sprintf(`roomengine_build_info{commit="abc1234def5678",date="2026-12-07T17:00:00Z",goversion=%q,version="1.2.3+4.gabc1234"} 1`, v.GoVersion)
	assert.Contains(t, string(body), want)
}

// `appserver healthcheck` finds the server from the same configuration as the server and
// exits 0 only when /readyz answers 2xx: what a compose health check on a scratch image runs.
func TestHealthcheckCommand(t *testing.T) {
	p := startApp(t, io.Discard)
	port := p.base[strings.LastIndex(p.base, ":")+1:]

	var out, errOut strings.Builder
	assert.Equal(t, 0, runHealthcheck(nil, []string{"APPSERVER_PORT=" + port}, &out, &errOut), errOut.String())
	assert.Contains(t, out.String(), "/readyz answered 200")

	// Nothing listening there any more: unhealthy.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	require.NoError(t, ln.Close())
	errOut.Reset()
	assert.Equal(t, 1, runHealthcheck(nil, []string{"APPSERVER_PORT=" + closed}, io.Discard, &errOut))
	assert.Contains(t, errOut.String(), "healthcheck:")

	// A path that is not 2xx: unhealthy, and it says what answered.
	errOut.Reset()
	assert.Equal(t, 1, runHealthcheck([]string{"-url", p.base + "/nothing-here"}, nil, io.Discard, &errOut))
	assert.Contains(t, errOut.String(), "answered 404")

	// A configuration the server would refuse: exit 2 with the server's message.
	errOut.Reset()
	assert.Equal(t, 2, runHealthcheck(nil, []string{"APPSERVER_PORT=http"}, io.Discard, &errOut))
	assert.Contains(t, errOut.String(), "APPSERVER_PORT")
}
