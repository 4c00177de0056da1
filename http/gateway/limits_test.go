package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refusedDial dials and expects a refusal before the upgrade: it returns the HTTP status
// and the envelope.
func refusedDial(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, res, err := websocket.Dial(ctx, url, nil)
	if err == nil {
		c.CloseNow()
		t.Fatalf("%s: upgraded, want a refusal", url)
	}
	require.NotNil(t, res, "no HTTP answer: %v", err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var env map[string]any
	require.NoError(t, json.Unmarshal(raw, &env), "not an envelope: %q", raw)
	return res.StatusCode, env
}

func TestSubscriptionLimitsRefuseBeforeTheUpgrade(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, srv := startGateway(t, Options{Registerer: reg, MaxTags: 3, MaxTagLength: 8, MaxTopicLength: 12})

	cases := []struct {
		name, query, reason, msg string
	}{
		{"too many tags", "topic=r1&tags=a,b,c,d", RefusedTooManyTags, "tags过多（最多3个）"},
		{"thousands of tags", "topic=r1&tags=" + strings.Repeat("x,", 5000) + "a,b,c,d", RefusedTooManyTags, "tags过多"},
		{"long tag", "topic=r1&tags=a,123456789", RefusedTagTooLong, "tag过长（最多8字节）"},
		{"long topic", "topic=1234567890123", RefusedTopicTooLong, "topic过长（最多12字节）"},
	}
	for _, c := range cases {
		status, env := refusedDial(t, wsURL(srv, c.query))
		assert.Equal(t, http.StatusBadRequest, status, c.name)
		assert.EqualValues(t, 400, env["code"], c.name)
		assert.Contains(t, env["message"], c.msg, c.name)
	}
	st := g.Stats()
	assert.Equal(t, uint64(2), st.Refused[RefusedTooManyTags])
	assert.Equal(t, uint64(1), st.Refused[RefusedTagTooLong])
	assert.Equal(t, uint64(1), st.Refused[RefusedTopicTooLong])
	assert.Equal(t, 0, st.Connections)
	assert.Equal(t, 0, st.Topics, "a refused subscription leaves no topic behind")
	assert.Equal(t, map[string]float64{RefusedTooManyTags: 2, RefusedTagTooLong: 1, RefusedTopicTooLong: 1,
		RefusedTooManyConns: 0}, refusedMetric(t, reg), "every reason is exported from the start")

	// At the limits (and with repeated tags, which count once) the subscription works.
	c := dial(t, srv, "topic=123456789012&tags=a,b,12345678,a,b")
	defer c.CloseNow()
	waitSubscribers(t, g, "123456789012", 1)
	pubOf(g).Publish(newPush("123456789012", "12345678", 8, 6, `{"n":1}`))
	assert.Equal(t, "12345678", readFrame(t, c).Tag)
}

func TestConnectionsPerAddressAreLimited(t *testing.T) {
	g, srv := startGateway(t, Options{MaxConnsPerAddr: 3})
	var conns []*websocket.Conn
	for i := range 3 {
		conns = append(conns, dial(t, srv, fmt.Sprintf("topic=r%d", i)))
	}
	status, env := refusedDial(t, wsURL(srv, "topic=r9"))
	assert.Equal(t, http.StatusTooManyRequests, status)
	assert.EqualValues(t, 429, env["code"])
	assert.Contains(t, env["message"], "最多3个")
	assert.Equal(t, uint64(1), g.Stats().Refused[RefusedTooManyConns])

	// A closed connection frees its place.
	conns[0].Close(websocket.StatusNormalClosure, "")
	waitUntil(t, "the first connection to end", func() bool { return g.Stats().Connections == 2 })
	waitUntil(t, "a free place", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.perAddr["127.0.0.1"] == 2
	})
	c := dial(t, srv, "topic=r9")
	c.CloseNow()
	for _, c := range conns[1:] {
		c.CloseNow()
	}
	waitUntil(t, "no address counted", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.perAddr) == 0
	})

	// Refused for its parameters: no place is taken.
	for range 5 {
		refusedDial(t, wsURL(srv, "topic="+strings.Repeat("x", 1000)))
	}
	g.mu.Lock()
	assert.Empty(t, g.perAddr)
	g.mu.Unlock()
}

func TestNoConnectionLimitWhenNegative(t *testing.T) {
	g, srv := startGateway(t, Options{MaxConnsPerAddr: -1})
	for i := range 5 {
		c := dial(t, srv, fmt.Sprintf("topic=r%d", i))
		defer c.CloseNow()
	}
	waitUntil(t, "five connections", func() bool { return g.Stats().Connections == 5 })
}

func TestTagSetMatchesInConstantTime(t *testing.T) {
	assert.True(t, newTagSet(nil).match("anything"), "no tags: everything")
	small := newTagSet([]string{"room", "uid"})
	assert.Nil(t, small.set)
	assert.True(t, small.match("uid"))
	assert.False(t, small.match("other"))

	many := make([]string, 10_000)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	big := newTagSet(many)
	require.NotNil(t, big.set, "past a few tags the filter is a map")
	assert.True(t, big.match("t9999"))
	assert.False(t, big.match("t10000"))
	assert.False(t, big.match(""))
	// One lookup, however many tags: no allocation and no scan.
	assert.Zero(t, testing.AllocsPerRun(100, func() { big.match("t5000") }))
}

// BenchmarkFanOutManyTags publishes to 100 subscribers of 16 tags each, none matching
// but the last: the filter's cost per message and subscriber.
func BenchmarkFanOutManyTags(b *testing.B) {
	g := New(Options{Logger: quietLogger(), SeqOrigin: zeroOrigin})
	tags := make([]string, DefaultMaxTags)
	for i := range tags {
		tags[i] = fmt.Sprint("user", i)
	}
	for range 100 {
		g.subscribe("r", newTagSet(tags), 0, false)
	}
	p := newPush("r", "nobody", 8, 6, `{"n":1}`)
	b.ResetTimer()
	for range b.N {
		pubOf(g).Publish(p)
	}
}

// refusedMetric reads roomengine_ws_refused_total by reason.
func refusedMetric(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "roomengine_ws_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}
