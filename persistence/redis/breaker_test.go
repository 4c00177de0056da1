package redis

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"roomengine/persistence/redis/redistest"
)

// While Redis does not answer, the first calls each wait out the timeout; after
// BreakerFailures of them the breaker opens and calls fail at once with ErrUnavailable,
// sending nothing. Once Redis is back, a probe after BreakerOpen closes it again, and what
// was refused while it was open never happened.
func TestBreakerFailsFastWhileRedisDoesNotAnswer(t *testing.T) {
	srv := redistest.Start(t)
	var mu sync.Mutex
	var changes []string
	s := openT(t, Options{Addr: srv.Addr(), KeyPrefix: "brk", Timeout: 200 * time.Millisecond,
		BreakerOpen: 300 * time.Millisecond,
		OnBreakerChange: func(from, to string) {
			mu.Lock()
			changes = append(changes, from+">"+to)
			mu.Unlock()
		}})
	ctx := t.Context()
	first, err := s.CreateUser(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}

	srv.Freeze()
	t.Cleanup(srv.Thaw)
	// Each call may be several attempts (go-redis retries a read that timed out), so the
	// breaker opens after at most BreakerFailures calls.
	slow := 0
	for s.BreakerState() != "open" {
		_, err := s.GetUser(ctx, first.ID)
		if err == nil || errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d with Redis frozen and the breaker %s: %v, want a timeout", slow+1, s.BreakerState(), err)
		}
		if slow++; slow > DefaultBreakerFailures {
			t.Fatalf("breaker %q after %d timed-out calls, want open", s.BreakerState(), slow)
		}
	}
	if _, err := s.CreateUser(ctx, "refused"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("CreateUser with the breaker open: %v, want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping (readiness) with the breaker open: %v, want ErrUnavailable", err)
	}

	srv.Thaw()
	deadline := time.Now().Add(10 * time.Second)
	for s.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("breaker still %s 10 s after Redis came back", s.BreakerState())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := s.BreakerState(); got != "closed" {
		t.Fatalf("breaker %q after a successful call, want closed", got)
	}
	next, err := s.CreateUser(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if next.ID != "2" || first.ID != "1" {
		t.Fatalf("user ids %s then %s: the refused CreateUser must not have taken an id", first.ID, next.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"closed>open", "open>half-open", "half-open>closed"} {
		if !slices.Contains(changes, want) {
			t.Errorf("state changes %v lack %s", changes, want)
		}
	}
}

// Errors Redis answers with (a missing key, a script's refusal) and calls cut short by the
// caller's own deadline never open the breaker: Redis is there.
func TestBreakerIgnoresAnswersAndCallersDeadlines(t *testing.T) {
	srv := redistest.Start(t)
	s := openT(t, Options{Addr: srv.Addr(), KeyPrefix: "brk2", Timeout: time.Second})
	for range 3 * DefaultBreakerFailures {
		if _, err := s.GetUser(t.Context(), "404"); err == nil {
			t.Fatal("GetUser of an unknown id succeeded")
		}
	}
	srv.Freeze()
	t.Cleanup(srv.Thaw)
	for range 2 * DefaultBreakerFailures {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		_, err := s.GetUser(ctx, "1")
		cancel()
		if err == nil {
			t.Fatal("GetUser succeeded with Redis frozen")
		}
	}
	if got := s.BreakerState(); got != "closed" {
		t.Fatalf("breaker %q after not-found answers and callers' short deadlines, want closed", got)
	}
}
