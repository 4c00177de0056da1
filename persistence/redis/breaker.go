package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// ErrUnavailable is the answer to a call made while the store's circuit breaker is open:
// Redis failed several calls in a row (down, frozen, or a failover in progress), so the call
// was not sent at all. Nothing was written; the caller answers 503 at once instead of
// waiting Options.Timeout for a server that is not there.
var ErrUnavailable = errors.New("redis: unavailable (circuit breaker open after consecutive failures); call not sent")

// Defaults of Options.BreakerFailures and Options.BreakerOpen.
const (
	DefaultBreakerFailures = 5
	DefaultBreakerOpen     = time.Second
)

// breakerHook is a go-redis hook that puts one circuit breaker in front of every command
// and pipeline of the store's client: after BreakerFailures consecutive outage errors it
// opens, fails every call with ErrUnavailable for BreakerOpen, then lets one probe through
// (half-open); the probe's success closes it. A Sentinel failover (down-after 1 s, then the
// election) or a Redis Cluster failover (node timeout 2 s) therefore costs clients a few
// slow answers and then fast 503s until the new primary answers, instead of every request
// waiting out the store's timeout meanwhile and piling up behind it.
//
// Only outages count (outage below): an error Redis itself answered with — a script's
// refusal, WRONGTYPE, a write the replicas did not confirm — proves the server is there.
type breakerHook struct {
	cb *gobreaker.CircuitBreaker[struct{}]
	// patience is how long a call must have waited for a deadline to count as an outage:
	// a call cut short by its caller's own deadline (a request that queued too long) says
	// nothing about Redis.
	patience time.Duration
}

// errCutShort marks, for the breaker only, a call that ran out of its caller's time before
// Redis could have been judged slow.
var errCutShort = errors.New("redis: call cut short by its caller's deadline")

func newBreakerHook(failures int, open, patience time.Duration, onChange func(from, to string)) *breakerHook {
	s := gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,
		Timeout:     open,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(failures) },
		IsSuccessful: func(err error) bool {
			return !outage(err)
		},
		// A caller that gave up, or a client being closed, says nothing about the server.
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, goredis.ErrClosed) ||
				errors.Is(err, errCutShort)
		},
	}
	if onChange != nil {
		s.OnStateChange = func(_ string, from, to gobreaker.State) { onChange(from.String(), to.String()) }
	}
	return &breakerHook{cb: gobreaker.NewCircuitBreaker[struct{}](s), patience: patience}
}

func (b *breakerHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

// pastBreakerKey marks a call that goes to Redis whatever the breaker's state.
type pastBreakerKey struct{}

// pastBreaker makes the calls under ctx bypass the breaker (they neither wait for it nor
// count for it): for the membership renewals, rare and the one thing that must notice at
// once that Redis is back.
func pastBreaker(ctx context.Context) context.Context {
	return context.WithValue(ctx, pastBreakerKey{}, true)
}

func (b *breakerHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if ctx.Value(pastBreakerKey{}) != nil {
			return next(ctx, cmd)
		}
		return b.run(func() error { return next(ctx, cmd) }, cmd)
	}
}

func (b *breakerHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if ctx.Value(pastBreakerKey{}) != nil {
			return next(ctx, cmds)
		}
		err := b.run(func() error { return pipelineErr(next(ctx, cmds), cmds) }, nil)
		if errors.Is(err, ErrUnavailable) {
			for _, c := range cmds {
				c.SetErr(err)
			}
		}
		return err
	}
}

// run calls fn through the breaker. A refused call fails with ErrUnavailable (on cmd too,
// since go-redis callers read a command's own error).
func (b *breakerHook) run(fn func() error, cmd goredis.Cmder) error {
	var callErr error
	_, err := b.cb.Execute(func() (struct{}, error) {
		start := time.Now()
		callErr = fn()
		if errors.Is(callErr, context.DeadlineExceeded) && time.Since(start) < b.patience {
			return struct{}{}, errCutShort
		}
		return struct{}{}, callErr
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		err = fmt.Errorf("%w (%v)", ErrUnavailable, err)
		if cmd != nil {
			cmd.SetErr(err)
		}
		return err
	}
	return callErr
}

// pipelineErr is a pipeline's outcome for the breaker: go-redis returns the first failed
// command's error, which may be an answer (redis.Nil, a script error) rather than an outage;
// the breaker looks for an outage among all of them.
func pipelineErr(err error, cmds []goredis.Cmder) error {
	if err == nil || outage(err) {
		return err
	}
	for _, c := range cmds {
		if outage(c.Err()) {
			return c.Err()
		}
	}
	return err
}

// outage reports whether err means Redis did not serve the call: no connection, no answer
// in time, or a server that cannot take it now (loading its data, a replica that was the
// primary, a cluster or primary that is down).
func outage(err error) bool {
	if err == nil || errors.Is(err, goredis.Nil) {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrNotReplicated) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, goredis.ErrPoolTimeout) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return goredis.IsLoadingError(err) || goredis.IsReadOnlyError(err) ||
		goredis.IsClusterDownError(err) || goredis.IsMasterDownError(err)
}

// breakerSet is the store's breakers: one on one server or Sentinel, one per node on a
// Redis Cluster (a dead master must not fail the calls that go to the others). The store's
// state is the worst of them.
type breakerSet struct {
	failures       int
	open, patience time.Duration
	onChange       func(from, to string)
	mu             sync.Mutex
	states         []*atomic.Value // each breaker's last state, as its callback saw it
	last           string
}

func newBreakerSet(failures int, open, patience time.Duration, onChange func(from, to string)) *breakerSet {
	return &breakerSet{failures: failures, open: open, patience: patience, onChange: onChange, last: "closed"}
}

// add makes the breaker of one more client (a Redis Cluster node found later included).
func (bs *breakerSet) add() *breakerHook {
	st := &atomic.Value{}
	st.Store("closed")
	bs.mu.Lock()
	bs.states = append(bs.states, st)
	bs.mu.Unlock()
	// The callback runs with that breaker locked: it records the state it was told rather
	// than asking the breaker.
	return newBreakerHook(bs.failures, bs.open, bs.patience, func(_, to string) {
		st.Store(to)
		bs.changed()
	})
}

// state is the worst state of the set: open, else half-open, else closed.
func (bs *breakerSet) state() string {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.worstLocked()
}

func (bs *breakerSet) worstLocked() string {
	worst := "closed"
	for _, st := range bs.states {
		switch st.Load().(string) {
		case "open":
			return "open"
		case "half-open":
			worst = "half-open"
		}
	}
	return worst
}

// changed reports a change of the set's worst state to onChange.
func (bs *breakerSet) changed() {
	bs.mu.Lock()
	from, to := bs.last, bs.worstLocked()
	bs.last = to
	bs.mu.Unlock()
	if from != to && bs.onChange != nil {
		bs.onChange(from, to)
	}
}

// BreakerState is the store's circuit breaker state: "closed", "half-open" or "open" (on a
// Redis Cluster, the worst of its nodes' breakers).
func (s *Store) BreakerState() string { return s.breakers.state() }
