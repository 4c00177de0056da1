package http

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics counts API requests by route and envelope code (the code old clients read),
// and their latency by route.
type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomengine_http_requests_total",
			Help: "API requests by route and response envelope code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "roomengine_http_request_duration_seconds",
			Help:    "API request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency)
	}
	return m
}

// routeMetrics are one route's series, resolved once: looking label values up on every
// request is measurable on the comment path.
type routeMetrics struct {
	route   string
	ok      prometheus.Counter
	latency prometheus.Observer
	m       *httpMetrics
}

func (m *httpMetrics) forRoute(route string) *routeMetrics {
	return &routeMetrics{route: route, m: m, ok: m.requests.WithLabelValues(route, "200"),
		latency: m.latency.WithLabelValues(route)}
}

func (r *routeMetrics) observe(code int, took time.Duration) {
	if code == 200 {
		r.ok.Inc()
	} else {
		r.m.requests.WithLabelValues(r.route, strconv.Itoa(code)).Inc()
	}
	r.latency.Observe(took.Seconds())
}
