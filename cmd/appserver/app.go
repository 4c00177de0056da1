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
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"roomengine/actors"
	"roomengine/aliyun"
	"roomengine/config"
	apihttp "roomengine/http"
	"roomengine/http/gateway"
	"roomengine/persistence/embedded"
)

// drainTimeout bounds how long SIGTERM waits for in-flight requests.
const drainTimeout = 15 * time.Second

type app struct {
	cfg     *config.Config
	log     *slog.Logger
	store   actors.Store
	engine  *actors.Engine
	gateway *gateway.Gateway
	server  *nethttp.Server
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.SlogLevel()}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newApp wires the parts. Options that belong to later work (Redis, MNS, Aliyun mixing) are
// refused with one clear line instead of being silently ignored.
func newApp(cfg *config.Config, logOut io.Writer) (*app, error) {
	log := newLogger(cfg, logOut)
	if cfg.Store != config.StoreEmbedded {
		return nil, fmt.Errorf("store %q is not available in this build yet; use store: embedded", cfg.Store)
	}
	if cfg.HasPush(config.PushMNS) {
		return nil, errors.New("push backend mns is not available in this build yet; use push: websocket")
	}
	if cfg.Cluster.Enabled {
		return nil, errors.New("cluster mode is not available in this build yet")
	}
	log.Info("starting roomengine", "config", cfg)

	store, err := embedded.Open(filepath.Join(cfg.DataDir, "roomengine.db"), embedded.Options{})
	if err != nil {
		return nil, fmt.Errorf("open store in %s: %w", cfg.DataDir, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	liveRooms := prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomengine_live_rooms", Help: "Rooms that exist and have not ended."})
	reg.MustRegister(liveRooms)

	gw := gateway.New(gateway.Options{Logger: log.With("component", "gateway"), Registerer: reg})
	urls := newURLs(cfg)
	engine, err := actors.NewEngine(actors.EngineConfig{
		Room:         actors.RoomConfig{NoPublishTimeout: cfg.Live.NoPublishTimeout, TopicDeleteDelay: cfg.Live.TopicDeleteDelay},
		Store:        store,
		Publisher:    gw,
		URLs:         urls,
		Logger:       log.With("component", "actors"),
		AskTimeout:   cfg.Actors.AskTimeout,
		StoreTimeout: cfg.Actors.AskTimeout,
		OnLiveRooms:  func(n int) { liveRooms.Set(float64(n)) },
	})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	secret := []byte(cfg.Auth.Secret)
	if len(secret) == 0 {
		// Without auth.secret, tokens are signed with a per-process key: they work until the
		// next restart. auth.required demands a configured secret (config validation).
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	handler := apihttp.NewHandler(apihttp.Options{
		Engine:         engine,
		Gateway:        gw,
		Ready:          store.Ping,
		URLs:           urls,
		Tokens:         apihttp.NewTokenSigner(secret, cfg.Auth.TokenTTL),
		MaxBodyBytes:   cfg.HTTP.MaxBodyBytes,
		AdminToken:     cfg.Admin.Token,
		TemplateName:   cfg.Videocall.TemplateName,
		RequestTimeout: cfg.HTTP.RequestTimeout,
		Logger:         log.With("component", "http"),
		Registerer:     reg,
		Gatherer:       reg,
	})
	server := &nethttp.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.With("component", "net/http").Handler(), slog.LevelWarn),
	}
	return &app{cfg: cfg, log: log, store: store, engine: engine, gateway: gw, server: server}, nil
}

// serve listens until ctx ends, then drains: stop accepting, finish in-flight requests,
// close push connections, stop the actors (every acknowledged change is already durable)
// and close the store.
func (a *app) serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Addr())
	if err != nil {
		a.shutdownEngine()
		return err
	}
	a.log.Info("listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- a.server.Serve(ln) }()
	select {
	case err := <-errc:
		a.shutdownEngine()
		return err
	case <-ctx.Done():
	}
	a.log.Info("draining")
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := a.server.Shutdown(dctx); err != nil {
		a.log.Warn("drain incomplete", "err", err)
	}
	if err := a.gateway.Shutdown(dctx); err != nil {
		a.log.Warn("push gateway shutdown incomplete", "err", err)
	}
	a.shutdownEngine()
	a.log.Info("stopped")
	return nil
}

func (a *app) shutdownEngine() {
	a.engine.Shutdown()
	if err := a.store.Close(); err != nil {
		a.log.Warn("close store", "err", err)
	}
}

// gatewayURLs points topicLocation at the built-in gateway when no MNS endpoint is set, so a
// client always gets a place to subscribe.
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
		TopicBase: aliyun.MNSEndpoint(cfg.Ali.OwnerID, cfg.MNSRegionName(), cfg.Ali.MNSEndpoint),
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
