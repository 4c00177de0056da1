package main

import (
	"io"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roomengine/aliyun/livetest"
)

// With live.reconcileAliyun, Aliyun's DescribeLiveStreamsOnlineList is the stream list: a
// listed stream is left alone, a failing poll changes nothing (and leaves the mix's circuit
// breaker closed), and a stream gone from the list gets its missed publish_done.
func TestReconcileWithAliyunOnlineList(t *testing.T) {
	fake := livetest.New(liveKeyID, liveSecret)
	t.Cleanup(fake.Close)
	p := startLiveApp(t, fake, "APPSERVER_LIVE_RECONCILEALIYUN=true", "APPSERVER_LIVE_RECONCILEINTERVAL=100ms",
		"APPSERVER_ALI_BREAKEROPENTIMEOUT=500ms")
	uid := field(t, p.call(t, "/login", url.Values{"name": {"host"}}), "id")
	room := field(t, p.call(t, "/live/create", url.Values{"uid": {uid}}), "roomId")
	w := watchTopic(t, p.base, room)
	fake.SetOnline("play.example", "DemoApp", room)
	p.call(t, "/ali/stream/notify", url.Values{"action": {"publish"}, "id": {room}})
	waitUntil(t, "push 9", func() bool { return w.count(9) == 1 })
	polls := func() int { return len(fake.Calls(livetest.ActionOnline)) }
	after := polls() + 3
	waitUntil(t, "three polls", func() bool { return polls() >= after })
	assert.Zero(t, w.count(10), "a listed stream is left alone")
	for _, c := range fake.Calls(livetest.ActionOnline) {
		assert.Equal(t, "play.example", c.Params.Get("DomainName"))
		assert.Equal(t, "DemoApp", c.Params.Get("AppName"))
	}

	// The stream is gone, but Aliyun fails: nothing changes, and mixing is not affected.
	fake.FailWith(livetest.ActionOnline, 503, "ServiceUnavailable", "try later")
	fake.SetOnline("play.example", "DemoApp")
	failing := polls() + 3
	waitUntil(t, "three failed polls", func() bool { return polls() >= failing })
	assert.Zero(t, w.count(10), "a failed poll changes nothing")
	assert.Equal(t, 0, metricValue(t, p.base, `roomengine_breaker_open{api="cdn"}`), "the mix's breaker stays closed")

	fake.Succeed()
	start := time.Now()
	waitUntil(t, "push 10 from the reconciliation", func() bool { return w.count(10) == 1 })
	t.Logf("publish_done applied %v after the list answered again", time.Since(start).Round(time.Millisecond))
	require.Equal(t, 0, p.roomsByID(t)[room])
}

// metricValue reads one series of /metrics, named with its labels (-1 when absent).
func metricValue(t *testing.T, base, name string) int {
	t.Helper()
	res, err := client.Get(base + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return int(f)
		}
	}
	return -1
}
