package aliyun

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrBreakerOpen is returned (wrapped with the breaker's name) by Breaker.Execute when the
// circuit is open, or half-open with its one probe already in flight: the call was not made.
var ErrBreakerOpen = errors.New("aliyun: circuit breaker open")

// Breaker states as reported by Breaker.State and BreakerOption callbacks.
const (
	BreakerClosed   = "closed"
	BreakerHalfOpen = "half-open"
	BreakerOpen     = "open"
)

// breakerTripAfter is how many consecutive failures open a breaker (docs/aliyun.md).
const breakerTripAfter = 5

// Breaker is a circuit breaker around one Aliyun API (CDN, MNS). It opens after 5
// consecutive failures, fails every call fast while open, half-opens after the open timeout
// and lets exactly one probe call through then: a success closes it, a failure opens it
// again. Safe for concurrent use.
//
// Which errors are failures is the caller's choice (isFailure). An error that is not a
// failure counts as a success: the API answered, so it is not an outage. An error wrapping
// context.Canceled (the caller gave up) counts as neither.
type Breaker struct {
	name string
	cb   *gobreaker.CircuitBreaker[struct{}]
}

// BreakerOption configures a Breaker.
type BreakerOption func(*gobreaker.Settings)

// WithStateChange has f called on every state change with the breaker's name and the old
// and new state (BreakerClosed, BreakerHalfOpen, BreakerOpen), e.g. to export a gauge. f runs
// while the breaker is locked: it must be quick and must not call the breaker.
func WithStateChange(f func(name, from, to string)) BreakerOption {
	return func(s *gobreaker.Settings) {
		if f == nil {
			return
		}
		s.OnStateChange = func(name string, from, to gobreaker.State) {
			f(name, from.String(), to.String())
		}
	}
}

// NewBreaker makes a breaker named name (used in errors and callbacks) that stays open for
// openTimeout before half-opening. A nil isFailure counts every non-nil error as a failure.
func NewBreaker(name string, openTimeout time.Duration, isFailure func(error) bool, opts ...BreakerOption) *Breaker {
	if isFailure == nil {
		isFailure = func(err error) bool { return err != nil }
	}
	s := gobreaker.Settings{
		Name:        name,
		MaxRequests: 1, // one probe in half-open
		Timeout:     openTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= breakerTripAfter },
		IsSuccessful: func(err error) bool {
			return err == nil || !isFailure(err)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	}
	for _, o := range opts {
		o(&s)
	}
	return &Breaker{name: name, cb: gobreaker.NewCircuitBreaker[struct{}](s)}
}

// Name is the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Execute calls fn unless the breaker is open, and records its outcome. When the breaker
// refuses, fn is not called and the error wraps ErrBreakerOpen; otherwise fn's error is
// returned unchanged.
func (b *Breaker) Execute(fn func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return fmt.Errorf("%s: %w", b.name, ErrBreakerOpen)
	}
	return err
}

// State is the current state: BreakerClosed, BreakerHalfOpen or BreakerOpen. An open
// breaker whose timeout has passed reports half-open.
func (b *Breaker) State() string { return b.cb.State().String() }
