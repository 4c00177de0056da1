package cluster

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"roomengine/actors"
)

// collector reports the cluster metrics when /metrics is read.
type collector struct {
	node     *Node
	members  *prometheus.Desc
	owned    *prometheus.Desc
	takeover *prometheus.Desc
	fenced   *prometheus.Desc
	received *prometheus.Desc
	recover  *prometheus.Desc
	waited   *prometheus.Desc
	topics   *prometheus.Desc
}

func newCollector(n *Node) *collector {
	return &collector{node: n,
		members: prometheus.NewDesc("roomengine_cluster_members", "Live members of the cluster, as this node reads them from Redis.", nil, nil),
		owned: prometheus.NewDesc("roomengine_owned_entities", "Rooms and calls this node owns.",
			[]string{"kind"}, nil),
		takeover: prometheus.NewDesc("roomengine_ownership_takeovers_total",
			"Rooms and calls this node took over from a dead owner.", nil, nil),
		fenced: prometheus.NewDesc("roomengine_fenced_writes_total",
			"Writes and pushes carrying this node's ownership, by result (refused: the node had lost the entity).",
			[]string{"result"}, nil),
		received: prometheus.NewDesc("roomengine_push_feed_received_total",
			"Pushes this node received from Redis pub/sub: only those of topics it has a subscriber of.", nil, nil),
		recover: prometheus.NewDesc("roomengine_push_feed_recovered_total",
			"Frames this node read from a topic's shared history to fill a gap in what pub/sub delivered.", nil, nil),
		waited: prometheus.NewDesc("roomengine_push_feed_held_total",
			"Pushes held until this node's read model had the room change they follow.", nil, nil),
		topics: prometheus.NewDesc("roomengine_push_feed_topics",
			"Topics this node follows in Redis (it has a subscriber of them).", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.members
	ch <- c.owned
	ch <- c.takeover
	ch <- c.fenced
	ch <- c.received
	ch <- c.recover
	ch <- c.waited
	ch <- c.topics
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if ms, err := c.node.store.Members(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(len(ms)))
	}
	if counts, err := c.node.member.OwnedCounts(ctx); err == nil {
		for _, kind := range []string{actors.KindRoom, actors.KindCall} {
			ch <- prometheus.MustNewConstMetric(c.owned, prometheus.GaugeValue, float64(counts[kind]), kind)
		}
	}
	st := c.node.store.ClusterStats()
	ch <- prometheus.MustNewConstMetric(c.takeover, prometheus.CounterValue, float64(st.Takeovers))
	var m dto.Metric
	refusedPushes := 0.0
	if err := c.node.pushRefused.Write(&m); err == nil {
		refusedPushes = m.GetCounter().GetValue()
	}
	ch <- prometheus.MustNewConstMetric(c.fenced, prometheus.CounterValue, float64(st.FencedWritesOK), "ok")
	ch <- prometheus.MustNewConstMetric(c.fenced, prometheus.CounterValue, float64(st.FencedWritesRefused)+refusedPushes, "refused")
	sub := c.node.subscriber
	ch <- prometheus.MustNewConstMetric(c.received, prometheus.CounterValue, float64(sub.Received()))
	ch <- prometheus.MustNewConstMetric(c.recover, prometheus.CounterValue, float64(sub.Recovered()))
	ch <- prometheus.MustNewConstMetric(c.waited, prometheus.CounterValue, float64(sub.Waited()))
	ch <- prometheus.MustNewConstMetric(c.topics, prometheus.GaugeValue, float64(sub.Following()))
}
