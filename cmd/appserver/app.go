package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	nethttp "net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"roomengine/actors"
	"roomengine/aliyun"
	"roomengine/cluster"
	"roomengine/config"
	"roomengine/ffmpeg"
	apihttp "roomengine/http"
	"roomengine/http/gateway"
	"roomengine/internal/logcap"
	"roomengine/internal/version"
	"roomengine/mediaserver"
	redisstore "roomengine/persistence/redis"
)

// errExpelled ends serve when the cluster declared this node dead (it was frozen or cut off
// from Redis past cluster.memberTTL): the process exits non-zero for its supervisor to
// start it again as a new member. It never acts under its old membership again.
var errExpelled = errors.New("cluster membership lapsed: this node was declared dead and stops")

// drainTimeout bounds how long SIGTERM waits for in-flight requests.
const drainTimeout = 15 * time.Second

// readTimeout bounds reading a request's headers and, separately, its body. There is no
// whole-connection ReadTimeout: it would cut the long-lived /ws connections.
const readTimeout = 10 * time.Second

type app struct {
	cfg       *config.Config
	log       *slog.Logger
	store     actors.Store
	engine    *actors.Engine
	gateway   *gateway.Gateway
	mns       *aliyun.MNSPublisher // nil unless push includes mns
	simulator *aliyun.Simulator    // nil unless mix: simulator
	ffmpeg    *ffmpeg.Mixer        // nil unless mix: ffmpeg
	// reconciler polls the media server's stream list; nil unless media.statUrl or
	// media.srsApiUrl is set.
	reconciler *mediaserver.Reconciler
	// engineReady is closed once engine is set: the mixer's failure events wait for it.
	engineReady chan struct{}
	server      *nethttp.Server
	connLimit   *apihttp.ConnLimit // http.maxConns; nil without a limit
	// topo is how this node is deployed: alone, or one node of a cluster (package cluster).
	topo     cluster.Topology
	breakers map[string]func() string // circuit breaker states by API, for the console
}

// historySize is how many frames of a topic are kept for replay with since (per node on a
// single node; in Redis, shared, in a cluster).
const historySize = 256

// newLogger cuts every long value and rate-limits repeated warnings (logcap): what clients
// send reaches log lines in many places.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.SlogLevel()}
	if cfg.Log.Format == "json" {
		return logcap.Wrap(slog.New(slog.NewJSONHandler(w, opts)))
	}
	return logcap.Wrap(slog.New(slog.NewTextHandler(w, opts)))
}

// newApp wires the parts. ctx bounds start-up (the wait for Redis).
func newApp(ctx context.Context, cfg *config.Config, logOut io.Writer) (*app, error) {
	log := newLogger(cfg, logOut)
	build := version.Get()
	// The first line says which build this is, so a log alone tells which version misbehaved.
	log.Info("starting roomengine", "version", build.Version, "commit", build.Commit, "built", build.Date,
		"go", build.GoVersion, "config", cfg)

	// The Redis breaker's gauge exists only once the registry does, after the store.
	var redisBreaker atomic.Pointer[prometheus.Gauge]
	store, storeTimeout, err := openStore(ctx, cfg, log, func(_, to string) {
		if g := redisBreaker.Load(); g != nil {
			(*g).Set(breakerValue(to))
		}
	})
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: log, store: store, engineReady: make(chan struct{})}
	a.topo, err = cluster.New(ctx, cluster.Options{Config: cfg, Store: store, Logger: log, HistorySize: historySize,
		StartupWait: redisStartupWait})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	fail := func(err error) (*app, error) {
		a.topo.Stop(false)
		_ = store.Close()
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	liveRooms := prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomengine_live_rooms", Help: "Rooms that exist and have not ended."})
	reg.MustRegister(liveRooms, buildInfoGauge(build))

	breakers := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roomengine_breaker_open",
		Help: "1 while the circuit breaker of an Aliyun API or of Redis is open (0.5 half-open)."}, []string{"api"})
	reg.MustRegister(breakers)
	if rs, ok := store.(*redisstore.Store); ok {
		g := breakers.WithLabelValues("redis")
		redisBreaker.Store(&g)
		g.Set(breakerValue(rs.BreakerState()))
		a.addBreaker("redis", rs.BreakerState)
	}
	// 1,024 queued frames per client ride out a 50 ms stall at 20,000 messages/s.
	gwOpts := gateway.Options{QueueSize: 1024, HistorySize: historySize, Logger: log.With("component", "gateway"), Registerer: reg,
		MaxTags: cfg.HTTP.WS.MaxTags, MaxTagLength: cfg.HTTP.WS.MaxTagLength, MaxTopicLength: cfg.HTTP.WS.MaxTopicLength,
		MaxConnsPerAddr: wsConnLimit(cfg.HTTP.WS.MaxConnsPerAddr),
		IdleTopicTTL:    cfg.HTTP.WS.IdleTopicTTL, MaxHistoryBytes: historyCap(cfg.HTTP.WS.MaxHistoryBytes)}
	a.topo.Gateway(&gwOpts)
	a.topo.Register(reg)
	gw := gateway.New(gwOpts)
	a.gateway = gw
	publisher, err := a.publisher(reg, breakers)
	if err != nil {
		return fail(err)
	}
	mixer, mixerReady, err := a.mixer(breakers)
	if err != nil {
		return fail(err)
	}
	urls := newURLs(cfg)
	engine, err := actors.NewEngine(actors.EngineConfig{
		Cluster: a.topo.Engine(),
		Room: actors.RoomConfig{NoPublishTimeout: cfg.Live.NoPublishTimeout, TopicDeleteDelay: cfg.Live.TopicDeleteDelay,
			// CreateMixStream and ffmpeg mix live streams: a room is ready once it publishes.
			MixReadyOnPublish: cfg.Mix == config.MixAliyunLive || cfg.Mix == config.MixFFmpeg},
		// ffmpeg jobs die with the process: a restarted (or taken-over) call starts them again.
		ResumeMixes: cfg.Mix == config.MixFFmpeg,
		Store:       store,
		Publisher:   publisher,
		Mixer:       mixer,
		MixerReady:  mixerReady,
		URLs:        urls,
		Logger:      log.With("component", "actors"),
		// An API request waits for its actor at most http.requestTimeout.
		AskTimeout:   min(cfg.Actors.AskTimeout, cfg.HTTP.RequestTimeout),
		StoreTimeout: storeTimeout,
		LoadTimeout:  30 * time.Second, // start-up reads every room and call, not one key
		OnLiveRooms:  func(n int) { liveRooms.Set(float64(n)) },
		IdleTimeout:  cfg.Actors.IdleTimeout,
	})
	if err != nil {
		return fail(err)
	}
	secret := []byte(cfg.Auth.Secret)
	if len(secret) == 0 {
		// Without auth.secret, tokens are signed with a per-process key: they work until the
		// next restart. auth.required demands a configured secret (config validation).
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	handler := apihttp.NewHandler(apihttp.Options{
		Cluster:      a.topo.AdminView(engine),
		Engine:       engine,
		Gateway:      gw,
		Ready:        a.topo.Ready(store),
		URLs:         urls,
		Tokens:       apihttp.NewTokenSigner(secret, cfg.Auth.TokenTTL),
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes,
		AdminToken:   cfg.Admin.Token,
		Console:      a.console(engine),
		AuthRequired: cfg.Auth.Required,
		RateLimit:    cfg.HTTP.RateLimit,
		RateBurst:    cfg.HTTP.RateBurst,
		CORSOrigins:  cfg.HTTP.CORSOrigins,
		TemplateName: cfg.Videocall.TemplateName,

		TrustedProxies:    trustedProxies(cfg.HTTP.TrustedProxies),
		MaxWSConnsPerUser: cfg.HTTP.WS.MaxConnsPerUser,
		TicketSecret:      secret,
		FirstSeen:         firstSeen(store),
		Logger:            log.With("component", "http"),
		Registerer:        reg,
		Gatherer:          reg,

		// A client sending less than its Content-Length is answered and cut off.
		BodyReadTimeout: readTimeout,

		MNSInfo: apihttp.MNSInfo{
			AccessKeyID: cfg.Ali.AccessKeyID, AccessKeySecret: cfg.Ali.AccessKeySecret,
			OwnerID: cfg.Ali.OwnerID, Region: cfg.MNSRegionName(), Version: cfg.Ali.MNSVersion,
			TopicWebsocketServerIP: cfg.Ali.MNSTopic.TopicWebsocketServerIP, PublicURL: cfg.HTTP.PublicURL,
		},
		CallbackAuthKey:  cfg.Ali.CallbackAuthKey,
		CallbackRtmpHost: cfg.RtmpHost,
		CallbackMaxSkew:  cfg.Ali.CallbackMaxSkew,
		Media:            a.mediaHooks(),
	})
	if a.simulator != nil {
		// The simulated CDN's MixResult callback goes through the same route, parameter
		// decoding and handler as Aliyun's real one.
		a.simulator.Notify = func(query string) {
			req, err := nethttp.NewRequest("GET", "/ali/mix/status/notify?"+query, nil)
			if err != nil {
				log.Warn("simulated mix callback not sent", "err", err)
				return
			}
			// Signed like Aliyun's when ali.callbackAuthKey is set (no-op otherwise).
			apihttp.SignCallback(req, cfg.RtmpHost, cfg.Ali.CallbackAuthKey, time.Now())
			handler.ServeHTTP(discardResponse{header: nethttp.Header{}}, req)
		}
	}
	a.engine = engine
	close(a.engineReady)
	a.reconciler = a.newReconciler(reg)
	a.topo.Start(engine)
	a.connLimit = apihttp.NewConnLimit(cfg.HTTP.MaxConns)
	a.server = &nethttp.Server{
		Handler:           handler,
		ConnState:         a.connLimit.ConnState,
		ReadHeaderTimeout: readTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.With("component", "net/http").Handler(), slog.LevelWarn),
	}
	return a, nil
}

// publisher builds the push backends of cfg.push: the WebSocket gateway, Aliyun MNS, or both.
func (a *app) publisher(reg prometheus.Registerer, breakers *prometheus.GaugeVec) (actors.Publisher, error) {
	var backends actors.Publishers
	if a.cfg.HasPush(config.PushWebSocket) {
		// The numbered feed: the gateway's memory on a single node, Redis in a cluster.
		backends = append(backends, a.topo.Feed(a.gateway))
	}
	if a.cfg.HasPush(config.PushMNS) {
		endpoint := aliyun.MNSEndpoint(a.cfg.Ali.OwnerID, a.cfg.MNSRegionName(), a.cfg.Ali.MNSEndpoint)
		breakers.WithLabelValues("mns").Set(0)
		client, err := aliyun.NewMNSClient(aliyun.MNSConfig{
			Endpoint: endpoint, AccessKeyID: a.cfg.Ali.AccessKeyID, AccessKeySecret: a.cfg.Ali.AccessKeySecret,
			Version: a.cfg.Ali.MNSVersion, Timeout: a.cfg.Ali.Timeout, BreakerOpenTimeout: a.cfg.Ali.BreakerOpenTimeout,
			Logger:               a.log.With("component", "mns"),
			OnBreakerStateChange: func(_, to string) { breakers.WithLabelValues("mns").Set(breakerValue(to)) },
		})
		if err != nil {
			return nil, fmt.Errorf("push mns: %w", err)
		}
		a.addBreaker("mns", client.BreakerState)
		opts := aliyun.MNSPublisherOptions{
			SubscriptionEndpoint: a.cfg.Ali.MNSTopic.SubscriptionEndpoint,
			Logger:               a.log.With("component", "mns"), Registerer: reg,
			// A node the cluster expelled sends nothing more: its rooms are other nodes' now.
			Member: a.topo.Lease(),
		}
		a.mns = aliyun.NewMNSPublisher(client, opts)
		backends = append(backends, a.mns)
	}
	if len(backends) == 1 {
		return backends[0], nil
	}
	return backends, nil
}

// mixer builds the CDN mixer of cfg.mix and, for Aliyun, the readiness check of its breaker.
func (a *app) mixer(breakers *prometheus.GaugeVec) (actors.Mixer, func() error, error) {
	var client interface {
		actors.Mixer
		BreakerState() string
	}
	var err error
	onChange := func(_, _, to string) { breakers.WithLabelValues("cdn").Set(breakerValue(to)) }
	ali := a.cfg.Ali
	switch a.cfg.Mix {
	case config.MixAliyun:
		client, err = aliyun.NewCDNClient(aliyun.CDNConfig{
			URL: ali.URLs.CDN.URL, Version: ali.URLs.CDN.Version,
			AccessKeyID: ali.AccessKeyID, AccessKeySecret: ali.AccessKeySecret,
			AppName: a.cfg.AppName, PlayHost: a.cfg.PlayHost,
			Timeout: ali.Timeout, BreakerOpenTimeout: ali.BreakerOpenTimeout,
			Logger: a.log.With("component", "cdn"), OnBreakerStateChange: onChange,
		})
	case config.MixAliyunLive:
		callback := ""
		if base := strings.TrimSuffix(a.cfg.HTTP.PublicURL, "/"); base != "" {
			callback = base + "/ali/mix/callback"
		}
		client, err = aliyun.NewLiveClient(aliyun.LiveConfig{
			URL: ali.URLs.Live.URL, Version: ali.URLs.Live.Version, Region: ali.LiveRegion,
			AccessKeyID: ali.AccessKeyID, AccessKeySecret: ali.AccessKeySecret,
			AppName: a.cfg.AppName, PlayHost: a.cfg.PlayHost, TemplateName: a.cfg.Videocall.TemplateName,
			CallbackURL: callback, Timeout: ali.Timeout, BreakerOpenTimeout: ali.BreakerOpenTimeout,
			Logger: a.log.With("component", "live"), OnBreakerStateChange: onChange,
		})
	case config.MixFFmpeg:
		m, err := a.newFFmpegMixer()
		if err != nil {
			return nil, nil, fmt.Errorf("mix ffmpeg: %w", err)
		}
		a.ffmpeg = m
		return m, m.Ready, nil
	default:
		a.simulator = &aliyun.Simulator{Domain: a.cfg.PlayHost, App: a.cfg.AppName}
		return a.simulator, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("mix %s: %w", a.cfg.Mix, err)
	}
	breakers.WithLabelValues("cdn").Set(0)
	a.addBreaker("cdn", client.BreakerState)
	ready := func() error {
		if client.BreakerState() == aliyun.BreakerOpen {
			return errors.New("circuit breaker open")
		}
		return nil
	}
	return client, ready, nil
}

// wsConnLimit maps http.ws.maxConnsPerAddr (0 = no limit) to the gateway's option (negative
// = no limit, 0 = its default).
func wsConnLimit(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func breakerValue(state string) float64 {
	switch state {
	case aliyun.BreakerOpen:
		return 1
	case aliyun.BreakerHalfOpen:
		return 0.5
	}
	return 0
}

// discardResponse receives the answer to an in-process callback.
type discardResponse struct{ header nethttp.Header }

func (d discardResponse) Header() nethttp.Header      { return d.header }
func (d discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (d discardResponse) WriteHeader(int)             {}

// serve listens until ctx ends, then drains: stop accepting, finish in-flight requests,
// close push connections, stop the actors (every acknowledged change is already durable)
// and close the store.
func (a *app) serve(ctx context.Context, ln net.Listener) error {
	ln = apihttp.SpaceTolerant(ln) // Aliyun's MixResult callback has raw spaces in its query
	ln = a.connLimit.Listener(ln)  // outermost: the server's ConnState sees its connections
	a.log.Info("listening", "addr", ln.Addr().String())
	defer a.startPprof()()
	errc := make(chan error, 1)
	go func() { errc <- a.server.Serve(ln) }()
	expelled := a.topo.Expelled() // nil (never ready) on a single node
	select {
	case err := <-errc:
		a.shutdownEngine(false)
		return err
	case <-ctx.Done():
	case <-expelled:
		a.abort()
		return errExpelled
	}
	a.log.Info("draining")
	// Peers stop sending this node requests for its rooms and find the next owner (a single
	// node has no peers: nothing changes).
	a.engine.BeginLeave()
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := a.server.Shutdown(dctx); err != nil {
		a.log.Warn("drain incomplete", "err", err)
	}
	if err := a.gateway.Shutdown(dctx); err != nil {
		a.log.Warn("push gateway shutdown incomplete", "err", err)
	}
	a.shutdownEngine(false)
	a.log.Info("stopped")
	return nil
}

// shutdownEngine stops the actors (every acknowledged change is already durable), lets the
// push backends finish, hands the node's rooms over to the cluster — or, for a node the
// cluster expelled, only stops: it owns nothing any more — and closes the store.
func (a *app) shutdownEngine(expelled bool) {
	if a.reconciler != nil {
		a.reconciler.Stop()
	}
	a.engine.Shutdown()
	if a.simulator != nil {
		a.simulator.Wait()
	}
	if a.ffmpeg != nil {
		// The calls stay mixed in the store: the next start (or the node that takes them
		// over) starts their mixes again.
		a.ffmpeg.Close()
	}
	if a.mns != nil && !expelled {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.mns.Close(ctx); err != nil {
			a.log.Warn("MNS queue not flushed", "err", err)
		}
		cancel()
	}
	a.topo.Stop(expelled)
	if err := a.store.Close(); err != nil {
		a.log.Warn("close store", "err", err)
	}
}

// abort stops a node the cluster declared dead, without a drain: whatever it would still
// write or push is refused by Redis anyway, and its clients are better served elsewhere.
func (a *app) abort() {
	a.log.Error("stopping: " + errExpelled.Error())
	_ = a.server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.gateway.Shutdown(ctx)
	a.shutdownEngine(true)
}

// gatewayURLs points topicLocation at the built-in gateway unless messages go to MNS, so a
// client always gets the place where its messages are.
type gatewayURLs struct {
	*aliyun.URLBuilder
	wsBase string
}

func (g gatewayURLs) TopicLocation(topic string) string {
	if loc := g.URLBuilder.TopicLocation(topic); loc != "" {
		return loc
	}
	return g.wsBase + "/ws?topic=" + topic
}

func newURLs(cfg *config.Config) actors.URLs {
	b := &aliyun.URLBuilder{
		AppName: cfg.AppName, RtmpHost: cfg.RtmpHost, PlayHost: cfg.PlayHost,
		TemplateName: cfg.Videocall.TemplateName, AuthKey: cfg.AuthKey, CenterPush: cfg.IsCenterPush,
		FLVTemplate: cfg.Media.PlayURL.FLV, HLSTemplate: cfg.Media.PlayURL.HLS, RTMPTemplate: cfg.Media.PlayURL.RTMP,
	}
	// topicLocation names the MNS topic only when messages go there: with WebSocket push
	// alone it is this server's /ws URL, even if the Aliyun account is configured.
	if cfg.HasPush(config.PushMNS) {
		b.TopicBase = aliyun.MNSEndpoint(cfg.Ali.OwnerID, cfg.MNSRegionName(), cfg.Ali.MNSEndpoint)
	}
	base := strings.TrimSuffix(cfg.HTTP.PublicURL, "/")
	if base == "" {
		host := cfg.IP
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "localhost"
		}
		base = "http://" + net.JoinHostPort(host, fmt.Sprint(cfg.Port))
	}
	base = "ws" + strings.TrimPrefix(base, "http")
	return gatewayURLs{URLBuilder: b, wsBase: base}
}

// trustedProxies parses http.trustedProxies (config validation has checked every entry).
func trustedProxies(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := config.ParseTrusted(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// historyCap is http.ws.maxHistoryBytes for the gateway, whose 0 means its default: 0 in
// the configuration means no cap.
func historyCap(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// firstSeen is the deployment-wide memory of callbacks and tickets used once: Redis's with
// the redis store (every node of a cluster shares it), else none (each node remembers its
// own, which on one node is all of them).
func firstSeen(store actors.Store) func(context.Context, string, time.Duration) (bool, error) {
	if rs, ok := store.(*redisstore.Store); ok {
		return rs.FirstSeen
	}
	return nil
}
