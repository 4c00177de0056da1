package main

import (
	nethttp "net/http"
	"slices"
	"strings"

	"roomengine/actors"
	"roomengine/config"
	"roomengine/http/console"
)

// console builds the operator console at /console, or nil (404) while admin.token is unset.
func (a *app) console(engine *actors.Engine) nethttp.Handler {
	if a.cfg.Admin.Token == "" {
		return nil
	}
	opts := console.Options{
		Token:    a.cfg.Admin.Token,
		Domain:   engine,
		Breakers: a.breakerStates,
		Timeout:  a.cfg.HTTP.RequestTimeout,
		Logger:   a.log.With("component", "console"),
		// Cluster: the hook for the members and room owners of a cluster; nil shows "single
		// node" (see consoleCluster).
		Cluster: a.consoleCluster(),
	}
	if a.gateway != nil && a.cfg.HasPush(config.PushWebSocket) {
		opts.Push = a.gateway
	}
	return console.New(opts)
}

// consoleCluster is where a cluster node hands the console its members and room owners
// (console.Cluster). A single node has none: nil, and the console shows "single node".
func (a *app) consoleCluster() console.Cluster { return a.topo.ConsoleView() }

// addBreaker records a circuit breaker for the console.
func (a *app) addBreaker(name string, state func() string) {
	if a.breakers == nil {
		a.breakers = map[string]func() string{}
	}
	a.breakers[name] = state
}

// breakerStates lists the breakers' current states, by name.
func (a *app) breakerStates() []console.Breaker {
	out := make([]console.Breaker, 0, len(a.breakers))
	for name, state := range a.breakers {
		out = append(out, console.Breaker{Name: name, State: state()})
	}
	slices.SortFunc(out, func(x, y console.Breaker) int { return strings.Compare(x.Name, y.Name) })
	return out
}
