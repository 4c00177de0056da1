package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roomengine/config"
)

// consoleScreenshot, when set, is where TestConsoleInChromium saves a PNG of the console
// (make console-screenshot writes docs/console.png).
var consoleScreenshot = flag.String("console.screenshot", "", "save a screenshot of the console page to this PNG file")

const consoleToken = "console-admin-token-never-logged"

// startConsoleApp runs the wired app in process (simulated CDN, WebSocket push, embedded
// store) on a free loopback port; it stops with the test. Its log is returned too.
func startConsoleApp(t *testing.T, extra ...string) (*proc, *syncBuffer) {
	t.Helper()
	port := freePort(t)
	env := append([]string{fmt.Sprint("APPSERVER_PORT=", port), "APPSERVER_IP=127.0.0.1",
		"APPSERVER_DATADIR=" + t.TempDir(), "APPSERVER_LOG_LEVEL=info"}, extra...)
	cfg, err := config.Load("", env)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", cfg.Addr())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	a, err := newApp(ctx, cfg, logs)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return &proc{base: fmt.Sprintf("http://127.0.0.1:%d", port), log: logs}, logs
}

func httpGet(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

// Without admin.token the console does not exist.
func TestConsoleOffWithoutAdminToken(t *testing.T) {
	p, _ := startConsoleApp(t)
	for _, path := range []string{"/console", "/console/", "/console/api/state", "/console/static/console.js"} {
		code, _ := httpGet(t, p.base+path, "Authorization", "Bearer anything")
		assert.Equal(t, http.StatusNotFound, code, path)
	}
}

// With admin.token the console answers tools that send it as a bearer token, and nobody else.
func TestConsoleBearerOnTheRealServer(t *testing.T) {
	p, logs := startConsoleApp(t, "APPSERVER_ADMIN_TOKEN="+consoleToken)
	code, body := httpGet(t, p.base+"/console/api/state")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, body = httpGet(t, p.base+"/console", "Authorization", "Bearer wrong")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, body, "login-form")

	uid := field(t, p.call(t, "/login", url.Values{"name": {"dora"}}), "id")
	room := field(t, p.call(t, "/live/create", url.Values{"uid": {uid}}), "roomId")
	code, body = httpGet(t, p.base+"/console/api/state", "Authorization", "Bearer "+consoleToken)
	require.Equal(t, http.StatusOK, code, body)
	var st struct {
		Rooms []struct{ ID, StatusText string }
		Push  struct{ Connections int }
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Len(t, st.Rooms, 1)
	assert.Equal(t, room, st.Rooms[0].ID)
	assert.Equal(t, "created", st.Rooms[0].StatusText)
	assert.NotContains(t, logs.String(), consoleToken)
}

// chromiumPath finds Debian's chromium (installed by make test-deps). The browser test is
// never skipped: without a browser it fails and says how to get one.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: the console test needs a headless Chromium. Run `make test-deps` " +
		"(or `apt-get install -y chromium`), or set CHROMIUM to a Chrome/Chromium binary.")
	return ""
}

// browser starts a headless Chromium for the test and returns a context for its actions,
// bounded in time.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], // headless among them
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // tests run as root in containers, where the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1400, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	// The first action starts the browser, which lives as long as that action's context:
	// the test's, not a timeout's.
	require.NoError(t, chromedp.Do(browserCtx), "start chromium")
	ctx, cancel := context.WithTimeout(browserCtx, 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestConsoleInChromium drives the console in a real headless Chromium: the login form,
// a room created through the API appearing, and ending it from the page (with its
// confirmation), which a WebSocket client subscribed to the room sees as push 8.
func TestConsoleInChromium(t *testing.T) {
	started := time.Now()
	p, logs := startConsoleApp(t, "APPSERVER_ADMIN_TOKEN="+consoleToken)
	ctx := browser(t)

	// Not signed in: 401 and the login form, no data.
	res, err := chromedp.RunResponse(ctx, chromedp.Navigate(p.base+"/console"))
	require.NoError(t, err)
	assert.Equal(t, int64(http.StatusUnauthorized), res.Status)
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible("#login-form")))
	body, err := chromedp.Run(ctx, chromedp.OuterHTML("body"))
	require.NoError(t, err)
	assert.NotContains(t, body, "data-room-id")

	// A wrong token is refused by the form.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys("#token", "not-the-token"), chromedp.Click("#login-button"),
		chromedp.WaitVisible("#login-error")))

	// The right token signs in: an HttpOnly, SameSite=Strict cookie that is not the token.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys("#token", consoleToken), chromedp.Click("#login-button"),
		chromedp.WaitVisible("#rooms"), chromedp.WaitVisible("#rooms-empty")))
	jar, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{p.base + "/console"}})
	require.NoError(t, err)
	require.Len(t, jar.Cookies, 1)
	assert.True(t, jar.Cookies[0].HTTPOnly)
	assert.Equal(t, network.CookieSameSiteStrict, jar.Cookies[0].SameSite)
	assert.NotContains(t, jar.Cookies[0].Value, consoleToken)

	// Some life for the page (and the screenshot): two hosts in a mixed call, one with an
	// audience and a WebSocket viewer, and the room this test ends.
	alice := field(t, p.call(t, "/login", url.Values{"name": {"alice"}}), "id")
	bob := field(t, p.call(t, "/login", url.Values{"name": {"bob"}}), "id")
	carol := field(t, p.call(t, "/login", url.Values{"name": {"carol"}}), "id")
	roomA := field(t, p.call(t, "/live/create", url.Values{"uid": {alice}, "desc": {"Morning run"}}), "roomId")
	roomB := field(t, p.call(t, "/live/create", url.Values{"uid": {bob}, "desc": {"Cooking live"}}), "roomId")
	for _, name := range []string{"v1", "v2", "v3"} {
		viewer := field(t, p.call(t, "/login", url.Values{"name": {name}}), "id")
		p.call(t, "/live/play", url.Values{"roomId": {roomA}, "uid": {viewer}})
	}
	for _, room := range []string{roomA, roomB} {
		for _, cb := range []string{"/ali/stream/notify?action=publish&id=" + room, "/ali/mix/availability/notify?Stream=" + room + "_mix"} {
			code, _ := httpGet(t, p.base+cb)
			require.Equal(t, http.StatusOK, code, cb)
		}
	}
	p.call(t, "/videocall/feedback", url.Values{"status": {"1"}, "inviterUid": {alice}, "inviteeUid": {bob},
		"inviterType": {"2"}, "inviteeType": {"2"}, "type": {"side_by_side"}})
	watchTopic(t, p.base, roomA)

	room := field(t, p.call(t, "/live/create", url.Values{"uid": {carol}, "desc": {"Ends from the console"}}), "roomId")
	watch := watchTopic(t, p.base, room)
	row := `tr[data-room-id="` + room + `"]`
	require.NoError(t, chromedp.Do(ctx,
		chromedp.WaitVisible(row),
		chromedp.WaitVisible(`tr[data-call-id]`),
		// The page updates itself until the audience, the mixed call and both WebSocket
		// connections show.
		void(chromedp.Poll[bool](fmt.Sprintf(`(() => {
			const a = document.querySelector('tr[data-room-id="%s"] td[data-field="audience"]');
			const c = document.querySelector('tr[data-call-id]');
			return !!(a && a.textContent === "3" && c && c.textContent.includes("mixed") &&
				document.getElementById("count-conns").textContent === "2");
		})()`, roomA), chromedp.WithPollingTimeout(20*time.Second))),
	))
	text, err := chromedp.Run(ctx, chromedp.Text(row))
	require.NoError(t, err)
	assert.Contains(t, text, "carol")
	assert.Contains(t, text, "created")

	if *consoleScreenshot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		path, err := filepath.Abs(*consoleScreenshot)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("console screenshot saved to %s", path)
	}

	// What users typed is shown as text, never run as HTML.
	dave := field(t, p.call(t, "/login", url.Values{"name": {"<i>dave</i>"}}), "id")
	markup := `<img src=x onerror="document.body.dataset.pwned=1"><b>bold</b>`
	roomD := field(t, p.call(t, "/live/create", url.Values{"uid": {dave}, "desc": {markup}}), "roomId")
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(`tr[data-room-id="`+roomD+`"]`)))
	desc, err := chromedp.Run(ctx, chromedp.Text(`tr[data-room-id="`+roomD+`"] td.desc`))
	require.NoError(t, err)
	assert.Equal(t, markup, desc)
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("td.desc img, td.desc b") !== null || "pwned" in document.body.dataset`))
	require.NoError(t, err)
	assert.False(t, pwned, "markup in room data must not become elements")

	// End the room from the page: a confirmation first; cancelling it changes nothing.
	endButton := row + ` button[data-action="end-room"]`
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(endButton), chromedp.WaitVisible("#confirm")))
	question, err := chromedp.Run(ctx, chromedp.Text("#confirm-text"))
	require.NoError(t, err)
	assert.Contains(t, question, room)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click("#confirm-cancel"), chromedp.WaitNotVisible("#confirm"),
		chromedp.WaitVisible(row)))
	assert.Zero(t, watch.count(8), "cancelled: the room was not ended")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(endButton), chromedp.WaitVisible("#confirm"),
		chromedp.Click("#confirm-ok"),
		chromedp.WaitNotPresent(row)))
	waitUntil(t, "push 8 on the room's WebSocket", func() bool { return watch.count(8) == 1 })

	// Close the call from the page too.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(`tr[data-call-id] button[data-action="close-call"]`), chromedp.WaitVisible("#confirm"),
		chromedp.Click("#confirm-ok"), chromedp.WaitNotPresent(`tr[data-call-id]`)))

	// Signing out ends the session: back to the login form.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click("#logout"), chromedp.WaitVisible("#login-form")))
	assert.NotContains(t, logs.String(), consoleToken, "the admin token is never logged")
	t.Logf("console browser test took %s", time.Since(started).Round(time.Millisecond))
}

// void drops an action's value, so it can run among others with chromedp.Do.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}
