package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
	"roomengine/config"
	"roomengine/persistence/embedded"
	redisstore "roomengine/persistence/redis"
)

// redisStartupWait bounds how long start-up waits for Redis to answer. It covers Redis and
// the app being started together (a container or a unit started in parallel, or Redis still
// replaying its append-only file, when it answers -LOADING); an outage longer than that
// stops start-up with one line, and the supervisor (systemd, Kubernetes) restarts us. Once
// the app runs, a Redis outage no longer stops it: see the README's Redis section.
const redisStartupWait = 10 * time.Second

// redisLogEvery rate-limits go-redis's own log lines: during an outage it logs every failed
// dial, which would flood the log with one line per request.
const redisLogEvery = time.Second

// openStore opens the store cfg.store names and returns the bound of one store call, which
// is also how long a command waits for the store before it answers 503: redis.timeout for
// Redis, actors.askTimeout for the embedded file.
//
// onBreaker, if set, is told each change of the Redis store's circuit breaker.
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger, onBreaker func(from, to string)) (actors.Store, time.Duration, error) {
	switch cfg.Store {
	case config.StoreEmbedded:
		store, err := embedded.Open(filepath.Join(cfg.DataDir, "roomengine.db"), embedded.Options{})
		if err != nil {
			return nil, 0, fmt.Errorf("open store in %s: %w", cfg.DataDir, err)
		}
		return store, cfg.Actors.AskTimeout, nil
	case config.StoreRedis:
		goredis.SetLogger(newRedisLogger(log.With("component", "redis"), cfg.Redis.Password, cfg.Redis.Sentinel.Password))
		opts, err := redisOptions(cfg)
		if err != nil {
			return nil, 0, err
		}
		opts.Logger = log.With("component", "redis")
		opts.OnBreakerChange = func(from, to string) {
			// A state change is rare (an outage starts or ends): worth a line each time.
			opts.Logger.Warn("redis circuit breaker", "from", from, "to", to)
			if onBreaker != nil {
				onBreaker(from, to)
			}
		}
		store, err := openRedis(ctx, opts, redisStartupWait, log)
		if err != nil {
			return nil, 0, err
		}
		return store, cfg.Redis.Timeout, nil
	}
	return nil, 0, fmt.Errorf("unknown store %q", cfg.Store)
}

func redisOptions(cfg *config.Config) (redisstore.Options, error) {
	tlsConfig, err := redisTLS(cfg)
	if err != nil {
		return redisstore.Options{}, err
	}
	return redisstore.Options{
		Addr:      net.JoinHostPort(cfg.Redis.Host, strconv.Itoa(cfg.Redis.Port)),
		Username:  cfg.Redis.Username,
		Password:  cfg.Redis.Password,
		DB:        cfg.Redis.DB,
		KeyPrefix: cfg.Redis.KeyPrefix,
		Timeout:   cfg.Redis.Timeout,

		SentinelMaster:   cfg.Redis.Sentinel.Master,
		SentinelAddrs:    cfg.Redis.Sentinel.Addrs,
		SentinelPassword: cfg.Redis.Sentinel.Password,
		ClusterAddrs:     cfg.Redis.Cluster.Addrs,
		WaitReplicas:     cfg.Redis.WaitReplicas,
		FailoverGrace:    cfg.Redis.FailoverGrace,
		TLS:              tlsConfig,
	}, nil
}

// redisTLS is redis.tls.* as a TLS configuration (nil when off). A file that cannot be read
// is a configuration error naming its key.
func redisTLS(cfg *config.Config) (*tls.Config, error) {
	t := cfg.Redis.TLS
	if !t.Enabled {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cmp.Or(t.ServerName, cfg.Redis.Host)}
	if cfg.Redis.UsesCluster() {
		// Each node of a Redis Cluster is checked against its own host name (crypto/tls
		// takes it from the address dialled when ServerName is empty).
		c.ServerName = t.ServerName
	}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("config: redis.tls.ca: %v", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("config: redis.tls.ca: no PEM certificate in %s", t.CA)
		}
	}
	if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("config: redis.tls.cert/key: %v", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// openRedis connects, retrying with backoff for up to wait while Redis is unreachable or
// loading. An answer that retrying cannot change (a wrong password, a DB index out of range)
// fails at once.
func openRedis(ctx context.Context, opts redisstore.Options, wait time.Duration, log *slog.Logger) (*redisstore.Store, error) {
	deadline := time.Now().Add(wait)
	backoff := 100 * time.Millisecond
	warned := false
	for {
		store, err := redisstore.Open(ctx, opts)
		if err == nil {
			if warned {
				log.Info("redis answers", "addr", opts.Where())
			}
			return store, nil
		}
		cause := err
		if inner := errors.Unwrap(err); inner != nil {
			cause = inner // Open's error repeats the address
		}
		if !retryableRedisError(cause) {
			return nil, fmt.Errorf("redis %s refused the connection: %v", opts.Where(), cause)
		}
		if ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			return nil, fmt.Errorf("redis %s unreachable (waited %v): %v", opts.Where(), wait, cause)
		}
		if !warned {
			log.Warn("redis not answering, retrying", "addr", opts.Where(), "for", wait, "err", cause)
			warned = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// retryableRedisError tells a Redis that is not there yet (network errors, timeouts,
// -LOADING, -BUSY) from one that answered "no".
func retryableRedisError(err error) bool {
	var reply goredis.Error
	if !errors.As(err, &reply) {
		return true
	}
	msg := reply.Error()
	return strings.HasPrefix(msg, "LOADING") || strings.HasPrefix(msg, "BUSY") ||
		strings.HasPrefix(msg, "MASTERDOWN") || strings.HasPrefix(msg, "TRYAGAIN")
}

// redisLogger routes go-redis's log lines to our logger at WARN, at most one per
// redisLogEvery (the next line says how many were suppressed), with the password masked
// should go-redis ever print it.
type redisLogger struct {
	log     *slog.Logger
	secrets []string

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newRedisLogger(log *slog.Logger, secrets ...string) *redisLogger {
	return &redisLogger{log: log, secrets: secrets}
}

func (l *redisLogger) Printf(_ context.Context, format string, v ...any) {
	now := time.Now()
	l.mu.Lock()
	if !l.last.IsZero() && now.Sub(l.last) < redisLogEvery {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.last = now
	suppressed := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()

	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	for _, secret := range l.secrets {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, config.Mask)
		}
	}
	if suppressed > 0 {
		l.log.Warn(msg, "suppressed", suppressed)
		return
	}
	l.log.Warn(msg)
}
