package gateway

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A topic keeps its history for reconnects with since, but a topic nobody subscribes to and
// nobody publishes to any more (a room long ended whose deletion was lost, pushes to made-up
// topics relayed by the cluster feed) would keep it forever. The janitor, apart from the
// publishing path, looks at every topic each EvictInterval:
//
//   - a topic with no subscriber whose seq has not moved for IdleTopicTTL is forgotten
//     (a later push or subscriber starts it again; in a cluster since is replayed from the
//     shared history anyway);
//   - when the history of all topics together holds more than MaxHistoryBytes, the
//     subscriber-less topics are forgotten, the longest idle first, until it holds less.
//
// A topic with subscribers is never touched: its history is bounded by HistorySize.

// Defaults of the eviction options.
const (
	DefaultIdleTopicTTL    = 5 * time.Minute
	DefaultMaxHistoryBytes = 256 << 20
	defaultEvictInterval   = 10 * time.Second
)

// Reasons a topic was forgotten, as the label of roomengine_ws_topics_evicted_total.
const (
	EvictedIdle = "idle"
	EvictedCap  = "history_cap"
)

// idleMark is the janitor's own note on a topic (guarded by the topic's mu): the seq it
// saw last and since when it has not moved.
type idleMark struct {
	seq   uint64
	since time.Time
}

// evictMetrics are the janitor's gauges and counters.
type evictMetrics struct {
	bytes   atomic.Int64
	evicted *prometheus.CounterVec
}

func newEvictMetrics(reg prometheus.Registerer) *evictMetrics {
	m := &evictMetrics{evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roomengine_ws_topics_evicted_total",
		Help: "Topics without subscribers whose history was forgotten, by reason (idle, history_cap).",
	}, []string{"reason"})}
	for _, r := range []string{EvictedIdle, EvictedCap} {
		m.evicted.WithLabelValues(r)
	}
	if reg != nil {
		m.evicted = register(reg, m.evicted)
		register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "roomengine_ws_history_bytes",
			Help: "Bytes of push history the gateway holds over all topics (as of the last eviction pass).",
		}, func() float64 { return float64(m.bytes.Load()) }))
	}
	return m
}

// HistoryBytes is the history held over all topics as of the janitor's last pass.
func (g *Gateway) HistoryBytes() int64 { return g.evict.bytes.Load() }

// runJanitor evicts every interval until the gateway shuts down.
func (g *Gateway) runJanitor(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-g.shutdown:
			return
		case now := <-t.C:
			g.evictPass(now)
		}
	}
}

// candidate is a subscriber-less topic the cap may forget.
type candidate struct {
	t     *topic
	bytes int64
	idle  time.Time
}

// evictPass is one look at every topic.
func (g *Gateway) evictPass(now time.Time) {
	var total int64
	var idle []candidate
	for i := range g.topics.shards {
		s := &g.topics.shards[i]
		s.mu.Lock()
		for name, t := range s.m {
			t.mu.Lock()
			if t.seq != t.idle.seq || t.idle.since.IsZero() {
				t.idle = idleMark{seq: t.seq, since: now}
			}
			var n int64
			for _, f := range t.hist {
				if f != nil {
					n += int64(len(f.wire))
				}
			}
			switch {
			case t.subscribers() > 0:
				total += n
			case now.Sub(t.idle.since) >= g.opts.IdleTopicTTL:
				t.dead = true
				delete(s.m, name)
				g.evict.evicted.WithLabelValues(EvictedIdle).Inc()
			default:
				total += n
				idle = append(idle, candidate{t: t, bytes: n, idle: t.idle.since})
			}
			t.mu.Unlock()
		}
		s.mu.Unlock()
	}
	if g.opts.MaxHistoryBytes > 0 && total > g.opts.MaxHistoryBytes {
		slices.SortFunc(idle, func(a, b candidate) int { return a.idle.Compare(b.idle) })
		for _, c := range idle {
			if total <= g.opts.MaxHistoryBytes {
				break
			}
			if g.forget(c.t) {
				total -= c.bytes
				g.evict.evicted.WithLabelValues(EvictedCap).Inc()
			}
		}
	}
	g.evict.bytes.Store(total)
}

// forget removes t if it still has no subscriber.
func (g *Gateway) forget(t *topic) bool {
	s := g.topics.shard(t.name)
	s.mu.Lock()
	defer s.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dead || t.subscribers() > 0 || s.m[t.name] != t {
		return false
	}
	t.dead = true
	delete(s.m, t.name)
	return true
}
