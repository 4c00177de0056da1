package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roomengine/config"
	"roomengine/http/apitest"
)

// apiCheck validates every answer of the appservers the tests start (each is watched)
// against docs/openapi.yaml; TestMain reports what did not match.
var apiCheck = apitest.Install()

// startApp runs the wired app in process (config from env → store → engine → HTTP) on a
// free loopback port with the default simulated CDN, its log written to logOut; it stops
// with the test.
func startApp(t *testing.T, logOut io.Writer, env ...string) *proc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	env = append([]string{fmt.Sprint("APPSERVER_PORT=", port), "APPSERVER_IP=127.0.0.1",
		"APPSERVER_DATADIR=" + t.TempDir()}, env...)
	cfg, err := config.Load("", env)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := newApp(ctx, cfg, logOut)
	if err != nil {
		cancel()
		_ = ln.Close()
		require.NoError(t, err)
	}
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	p := &proc{base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	apiCheck.Watch(p.base)
	return p
}

// log.level debug shows request traces and actor events; info shows neither; log.format
// json writes the same lines as JSON objects.
func TestLogLevelDebug(t *testing.T) {
	for _, tc := range []struct {
		level, format string
		wantDebug     bool
	}{
		{"debug", "text", true},
		{"debug", "json", true},
		{"info", "text", false},
	} {
		t.Run(tc.level+"/"+tc.format, func(t *testing.T) {
			logs := &syncBuffer{}
			p := startApp(t, logs, "APPSERVER_LOG_LEVEL="+tc.level, "APPSERVER_LOG_FORMAT="+tc.format)
			uid := field(t, p.call(t, "/login", url.Values{"name": {"alice"}}), "id")
			room := field(t, p.call(t, "/live/create", url.Values{"uid": {uid}}), "roomId")
			p.call(t, "/live/comment", url.Values{"uid": {uid}, "roomId": {room}, "comment": {"hi"}})

			var debug []string // the DEBUG lines, as text
			for line := range strings.Lines(logs.String()) {
				if tc.format == "json" {
					var m map[string]any
					require.NoError(t, json.Unmarshal([]byte(line), &m), "a log line that is not JSON: %q", line)
					if m["level"] == "DEBUG" {
						debug = append(debug, fmt.Sprintf("msg=%q route=%v event=%v comment=%v", m["msg"], m["route"], m["event"], m["comment"]))
					}
				} else if strings.Contains(line, "level=DEBUG") {
					debug = append(debug, line)
				}
			}
			if !tc.wantDebug {
				assert.Empty(t, debug)
				return
			}
			text := strings.Join(debug, "\n")
			assert.Contains(t, text, "route=/live/comment", "a request trace per API request")
			assert.Contains(t, text, "room event", "actor events")
			assert.Contains(t, text, "event=evComment")
			assert.NotContains(t, text, "=hi", "parameters are not traced")
		})
	}
}
