package gateway

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a frame did not reach a client, as the label of roomengine_push_dropped_total.
const (
	// ReasonQueueFullShed: a queued frame was evicted to make room for a more important one.
	ReasonQueueFullShed = "queue_full_shed"
	// ReasonQueueFullDropped: the incoming frame was dropped; nothing less important was queued.
	ReasonQueueFullDropped = "queue_full_dropped"
	// ReasonSlowClientClosed: an importance ≤ 5 frame could not be queued, so the connection
	// was closed with 1013 for the client to reconnect with since.
	ReasonSlowClientClosed = "slow_client_closed"
)

// metrics keeps atomics next to the Prometheus collectors so Stats works, and tests can
// assert, whether or not a registerer was given.
type metrics struct {
	connGauge   prometheus.Gauge
	published   prometheus.Counter
	framesSent  prometheus.Counter
	shedCtr     prometheus.Counter
	droppedCtr  prometheus.Counter
	closedCtr   prometheus.Counter
	endings     *prometheus.CounterVec
	refusals    *prometheus.CounterVec
	nRefused    sync.Map // reason → *atomic.Uint64
	connections atomic.Int64
	nPublished  atomic.Uint64
	nSent       atomic.Uint64
	nShed       atomic.Uint64
	nDropped    atomic.Uint64
	nClosed     atomic.Uint64
	// nEnded counts ended connections by cause; the map is filled once and only read after.
	nEnded map[string]*atomic.Uint64
}

func newMetrics(reg prometheus.Registerer) *metrics {
	connGauge := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "roomengine_ws_connections",
		Help: "WebSocket push connections currently subscribed.",
	})
	published := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roomengine_push_messages_total",
		Help: "Push messages published to the WebSocket gateway.",
	})
	framesSent := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roomengine_ws_frames_sent_total",
		Help: "WebSocket text frames written to clients, replays included.",
	})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roomengine_push_dropped_total",
		Help: "Frames that did not reach a client, by reason.",
	}, []string{"reason"})
	endings := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roomengine_ws_disconnects_total",
		Help: "WebSocket push connections that ended, by cause.",
	}, []string{"cause"})
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roomengine_ws_refused_total",
		Help: "WebSocket subscriptions refused before the upgrade, by reason (a limit of http.ws.*).",
	}, []string{"reason"})
	for _, reason := range refusalReasons {
		refusals.WithLabelValues(reason) // exported at zero from the start
	}
	nEnded := map[string]*atomic.Uint64{}
	for _, cause := range []string{EndClientGone, EndWriteFailed, EndQueueFull, EndShutdown, EndTopicDeleted, EndFeedGap} {
		endings.WithLabelValues(cause) // exported at zero from the start
		nEnded[cause] = new(atomic.Uint64)
	}
	if reg != nil {
		endings = register(reg, endings)
		refusals = register(reg, refusals)
		connGauge = register(reg, connGauge)
		published = register(reg, published)
		framesSent = register(reg, framesSent)
		dropped = register(reg, dropped)
	}
	return &metrics{
		connGauge:  connGauge,
		endings:    endings,
		refusals:   refusals,
		nEnded:     nEnded,
		published:  published,
		framesSent: framesSent,
		// Resolving the labels once also exports every reason at zero from the start,
		// which keeps rate() and alerts well defined.
		shedCtr:    dropped.WithLabelValues(ReasonQueueFullShed),
		droppedCtr: dropped.WithLabelValues(ReasonQueueFullDropped),
		closedCtr:  dropped.WithLabelValues(ReasonSlowClientClosed),
	}
}

// register reuses an identical collector already registered, so two gateways (or a
// gateway rebuilt in a test) can share one registry instead of failing to start.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

func (m *metrics) connOpened() {
	m.connections.Add(1)
	m.connGauge.Inc()
}

func (m *metrics) refused(reason string) {
	m.refusals.WithLabelValues(reason).Inc()
	n, _ := m.nRefused.LoadOrStore(reason, new(atomic.Uint64))
	n.(*atomic.Uint64).Add(1)
}

func (m *metrics) refusedCounts() map[string]uint64 {
	out := make(map[string]uint64, len(refusalReasons))
	for _, reason := range refusalReasons {
		out[reason] = 0
	}
	m.nRefused.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

func (m *metrics) ended(cause string) {
	if n := m.nEnded[cause]; n != nil {
		n.Add(1)
	}
	m.endings.WithLabelValues(cause).Inc()
}

// disconnects copies the per-cause counts of ended connections.
func (m *metrics) disconnects() map[string]uint64 {
	out := make(map[string]uint64, len(m.nEnded))
	for cause, n := range m.nEnded {
		out[cause] = n.Load()
	}
	return out
}

func (m *metrics) connClosed() {
	m.connections.Add(-1)
	m.connGauge.Dec()
}

func (m *metrics) publishedOne() {
	m.nPublished.Add(1)
	m.published.Inc()
}

func (m *metrics) sent(n int) {
	m.nSent.Add(uint64(n))
	m.framesSent.Add(float64(n))
}

func (m *metrics) pushed(r pushResult) {
	switch r {
	case pushShed:
		m.nShed.Add(1)
		m.shedCtr.Inc()
	case pushDropped:
		m.nDropped.Add(1)
		m.droppedCtr.Inc()
	case pushOverflow:
		m.nClosed.Add(1)
		m.closedCtr.Inc()
	}
}
