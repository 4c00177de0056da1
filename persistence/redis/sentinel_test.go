package redis

import (
	"errors"
	"testing"
	"time"

	"roomengine/actors"
	"roomengine/persistence/redis/redistest"
	"roomengine/persistence/storetest"
)

func openSentinelT(t *testing.T, sen *redistest.Sentinel, wait int, timeout time.Duration) *Store {
	t.Helper()
	return openT(t, Options{SentinelMaster: redistest.SentinelMaster, SentinelAddrs: sen.Addrs(),
		KeyPrefix: newPrefix("sentinel"), WaitReplicas: wait, Timeout: timeout})
}

// The whole store contract holds on a primary found through Sentinel with every write
// waiting for a replica.
func TestContractOnSentinelWaitingForAReplica(t *testing.T) {
	sen := redistest.StartSentinel(t, 1, 1)
	storetest.Run(t, func(t *testing.T) actors.Store { return openSentinelT(t, sen, 1, testTimeout) })
}

// A write that fewer replicas than waitReplicas confirm in time fails with
// ErrNotReplicated: the client must not be told it was saved. A replica that is frozen
// (SIGSTOP) stops confirming; once it runs again, writes succeed again.
func TestWriteNotConfirmedByReplicasFails(t *testing.T) {
	sen := redistest.StartSentinel(t, 1, 1)
	s := openSentinelT(t, sen, 1, 300*time.Millisecond)
	ctx := t.Context()
	if err := s.SaveRoom(ctx, actors.Room{ID: "1", UID: "1", Name: "before"}); err != nil {
		t.Fatalf("SaveRoom with the replica up: %v", err)
	}

	replica := sen.Servers[1]
	replica.Freeze()
	start := time.Now()
	err := s.SaveRoom(ctx, actors.Room{ID: "2", UID: "1", Name: "unconfirmed"})
	took := time.Since(start)
	replica.Thaw()
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("SaveRoom with the replica frozen = %v, want ErrNotReplicated", err)
	}
	if took > time.Second {
		t.Errorf("the refused write took %v, want about redis.timeout (300ms)", took)
	}
	if _, err := s.CreateUser(ctx, "x"); err != nil && !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("CreateUser: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.SaveRoom(ctx, actors.Room{ID: "3", UID: "1", Name: "after"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SaveRoom after the replica thawed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill -9 of the primary under writers: the sentinels promote a replica, the store
// follows it without being reopened, and every write that was acknowledged before, during
// and after the failover is on the new primary.
func TestSentinelFailoverLosesNoAcknowledgedWrite(t *testing.T) {
	sen := redistest.StartSentinel(t, 2, 3)
	s := openSentinelT(t, sen, 1, 500*time.Millisecond)
	ctx := t.Context()

	a := startAckWriters(ctx, s, 500*time.Millisecond)
	waitWithin(t, 10*time.Second, "writes before the kill", func() bool { n, _ := a.acked(); return n >= 50 })

	old := sen.Primary()
	if old == nil {
		t.Fatal("the sentinels name no primary")
	}
	old.Stop() // SIGKILL
	firstDown := time.Now()
	before, _ := a.acked()
	waitWithin(t, 20*time.Second, "a write acknowledged by the new primary", func() bool {
		n, last := a.acked()
		return last.After(firstDown) && n > before
	})
	_, last := a.acked()
	t.Logf("writes again %v after the kill (%d acknowledged before)", last.Sub(firstDown).Round(time.Millisecond), before)
	waitWithin(t, 10*time.Second, "more writes on the new primary", func() bool { n, _ := a.acked(); return n >= before+50 })
	a.halt()
	t.Logf("%d writes failed during the failover", a.failed)
	if p := sen.Primary(); p == nil || p == old {
		t.Fatalf("no replica was promoted")
	}

	requireAcknowledged(t, s, a.users, a.rooms)
	t.Logf("%d users and %d rooms acknowledged, all present", len(a.users), len(a.rooms))
}

func waitWithin(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requireAcknowledged checks, as a fresh process would read them, that every acknowledged
// user and room survived the failover (a lost write answers ErrNotFound, not slowly).
func requireAcknowledged(t *testing.T, s *Store, users map[string]string, rooms []string) {
	t.Helper()
	ctx := t.Context()
	stored, err := s.LoadRooms(ctx)
	if err != nil {
		t.Fatalf("LoadRooms: %v", err)
	}
	have := map[string]bool{}
	for _, r := range stored {
		have[r.ID] = true
	}
	for _, id := range rooms {
		if !have[id] {
			t.Errorf("acknowledged room %s lost in the failover", id)
		}
	}
	for id, name := range users {
		if u, err := s.GetUser(ctx, id); err != nil || u.Name != name {
			t.Errorf("acknowledged user %s (%s) after the failover: %+v, %v", id, name, u, err)
		}
	}
}
