package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Interest, with real processes: a node receives a topic's pushes only while it has a
// subscriber of it. Comments flow through n1 (the room's owner, with a watcher); a client
// connects with since to n2 — which had no subscriber — while the pub/sub connections of
// every node are cut twice (CLIENT KILL TYPE pubsub): it gets every frame after since
// once, in seq order, as the watcher did. n3 never has a subscriber and receives no push.
func TestClusterInterestSinceSeam(t *testing.T) {
	c := newTestCluster(t, 3*time.Second)
	nodes := c.start("n1", "n2", "n3")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	host := field(t, n1.call(t, "/login", url.Values{"name": {"host"}}), "id")
	viewer := field(t, n1.call(t, "/login", url.Values{"name": {"viewer"}}), "id")
	room := field(t, n1.call(t, "/live/create", url.Values{"uid": {host}}), "roomId")
	n1.call(t, "/live/play", url.Values{"roomId": {room}, "uid": {viewer}})
	n1.get(t, "/ali/stream/notify?action=publish&id="+room)
	watcher := subscribe(t, n1, room, 0)
	comment := func(k int) error {
		_, err := n1.try("/live/comment", url.Values{"roomId": {room}, "uid": {viewer}, "comment": {fmt.Sprint("c", k)}})
		return err
	}
	for k := range 20 {
		require.NoError(t, comment(k))
	}
	first := watcher.waitFrames(t, 10*time.Second, "the first 20 comments", hasType(6, 20))
	since := first[len(first)-10].Seq
	assert.Contains(t, metricsText(t, n2), "roomengine_push_feed_received_total 0\n", "n2 before its subscriber")

	rdb := goredis.NewClient(&goredis.Options{Addr: c.redis.Addr()})
	t.Cleanup(func() { rdb.Close() })
	const total = 200
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for k := 20; k < total; k++ {
			if err := comment(k); err != nil {
				errs <- err
				return
			}
			if k == 80 || k == 140 {
				if err := rdb.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	late := subscribe(t, n2, room, since)
	require.NoError(t, <-errs)
	all := watcher.waitFrames(t, 20*time.Second, "every comment on n1", hasType(6, total))
	i := slices.IndexFunc(all, func(f clFrame) bool { return f.Seq > since })
	want := all[i:]
	got := late.waitFrames(t, 20*time.Second, "every frame after since on n2", func(fs []clFrame) bool { return len(fs) >= len(want) })
	requireStrictSeqs(t, all, "n1")
	requireStrictSeqs(t, got, "n2")
	assert.Equal(t, describeFrames(want), describeFrames(got), "n2's frames after since")
	for k, f := range got {
		require.Equal(t, want[k].Seq, f.Seq, "frame %d on n2", k)
	}
	assert.Contains(t, metricsText(t, n3), "roomengine_push_feed_received_total 0\n", "n3, without subscribers")
	assert.True(t, strings.Contains(metricsText(t, n2), "roomengine_push_feed_topics 1\n"), "n2 follows the room's topic")
}
