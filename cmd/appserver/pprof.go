package main

import (
	"errors"
	"net"
	nethttp "net/http"
	"net/http/pprof"
	"time"
)

// startPprof serves Go's profiler on debug.pprofAddr (config: loopback only, never the
// public port) while the server runs; it returns the function that stops it. Off (a no-op)
// when the key is empty. The handlers are on a mux of their own: importing net/http/pprof
// registers them on http.DefaultServeMux too, which no listener of this server serves.
func (a *app) startPprof() func() {
	addr := a.cfg.Debug.PprofAddr
	if addr == "" {
		return func() {}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		a.log.Warn("pprof listener not started", "addr", addr, "err", err)
		return func() {}
	}
	mux := nethttp.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &nethttp.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	a.log.Info("pprof listening", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, nethttp.ErrServerClosed) {
			a.log.Warn("pprof listener stopped", "err", err)
		}
	}()
	return func() { _ = srv.Close() }
}
