package redis

import (
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// connSettings is what differs between the store's pool and a connection of its own (the
// feed follower's blocking read).
type connSettings struct {
	name        string
	readTimeout time.Duration
	poolSize    int // 0: go-redis's default
	// breakers, if set, puts a circuit breaker in front of the client (breaker.go): one,
	// or one per node of a Redis Cluster.
	breakers *breakerSet
}

// clusterStateReload bounds how long a Redis Cluster client keeps the slot map it has: one
// CLUSTER SLOTS a second costs nothing, and a promotion is followed within that.
const clusterStateReload = time.Second

// newUniversalClient is the store's client: a ClusterClient on a Redis Cluster (it learns
// every master and replica from the seeds, sends each command to the master of its key's
// slot and follows MOVED redirections, so a promoted replica takes over without a
// restart), otherwise newClient's.
func newUniversalClient(opts Options, cs connSettings) goredis.UniversalClient {
	if len(opts.ClusterAddrs) == 0 {
		return newClient(opts, cs)
	}
	co := universalOptions(opts, cs).Cluster()
	co.Addrs = opts.ClusterAddrs
	// A dead master sends no MOVED: the client learns that its replica took over only by
	// asking for the slots again, which it does when its view is older than this (the
	// default, a minute, would keep sending a failed-over slot to the dead node that long).
	co.ClusterStateReloadInterval = clusterStateReload
	cc := goredis.NewClusterClient(co)
	if cs.breakers != nil {
		cc.OnNewNode(func(c *goredis.Client) { c.AddHook(cs.breakers.add()) })
	}
	return cc
}

// newClient connects to the primary: at Addr, or the one the sentinels name. A client on
// Sentinel asks the sentinels for the primary when it connects and again whenever they
// announce a failover, so the store follows a promotion without a restart.
func newClient(opts Options, cs connSettings) *goredis.Client {
	uo := universalOptions(opts, cs)
	if opts.SentinelMaster != "" {
		fo := uo.Failover()
		fo.SentinelAddrs = opts.SentinelAddrs // Failover() would take them from Addrs
		return withBreaker(goredis.NewFailoverClient(fo), cs)
	}
	return withBreaker(goredis.NewClient(uo.Simple()), cs)
}

func universalOptions(opts Options, cs connSettings) *goredis.UniversalOptions {
	readTimeout := opts.Timeout
	if cs.readTimeout > 0 {
		readTimeout = cs.readTimeout
	}
	return &goredis.UniversalOptions{
		Addrs:            []string{opts.Addr},
		MasterName:       opts.SentinelMaster,
		SentinelPassword: opts.SentinelPassword,
		Username:         opts.Username,
		Password:         opts.Password,
		DB:               opts.DB,
		TLSConfig:        opts.TLS,
		ClientName:       cs.name,
		PoolSize:         cs.poolSize,
		// Every call carries a deadline (see begin); the socket timeouts are the
		// same bound for a connection that is stuck regardless of the context.
		ContextTimeoutEnabled: true,
		DialTimeout:           opts.Timeout,
		ReadTimeout:           readTimeout,
		WriteTimeout:          opts.Timeout,
		PoolTimeout:           opts.Timeout,
		// The pool's own dial retries would only spend the call's deadline on a server
		// that refused the first dial; the caller or the next call retries instead.
		DialerRetries: 1,
		// Maintenance notifications are for Redis Enterprise / Cloud; with "auto" every
		// new connection against a plain redis-server pays a failing command.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// Where names the Redis these options reach, for a log line or an error; it holds no secret.
func (o Options) Where() string {
	if len(o.ClusterAddrs) > 0 {
		return "cluster " + strings.Join(o.ClusterAddrs, ",")
	}
	if o.SentinelMaster != "" {
		return "sentinel master " + o.SentinelMaster
	}
	return o.Addr
}

func withBreaker(c *goredis.Client, cs connSettings) *goredis.Client {
	if cs.breakers != nil {
		c.AddHook(cs.breakers.add())
	}
	return c
}
