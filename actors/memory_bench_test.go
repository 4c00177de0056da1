package actors

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"roomengine/actors/fakeclock"
)

// snapshotlessStore keeps users (needed to create rooms) but drops room writes, so the
// benchmark measures the engine's memory, not a stand-in store's.
type snapshotlessStore struct{ *memStore }

func (snapshotlessStore) SaveRoom(context.Context, Room) error                 { return nil }
func (snapshotlessStore) AddAudience(context.Context, string, User) error      { return nil }
func (snapshotlessStore) LoadAudience(context.Context, string) ([]User, error) { return nil, nil }

type discardPublisher struct{}

func (discardPublisher) Publish(Push)       {}
func (discardPublisher) CreateTopic(string) {}
func (discardPublisher) DeleteTopic(string) {}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkRoomMemory reports the heap per active room (actor running, empty audience) and
// per passivated room (only the registry's snapshot and rendered view remain).
// Targets (issue 5): ≤ 20 KiB active, ≤ 2 KiB passivated.
func BenchmarkRoomMemory(b *testing.B) {
	const rooms = 10000
	for range b.N {
		clock := fakeclock.New(t0)
		store := snapshotlessStore{newMemStore()}
		eng, err := NewEngine(EngineConfig{Room: RoomConfig{NoPublishTimeout: time.Hour, TopicDeleteDelay: time.Minute},
			Store: store, Publisher: discardPublisher{}, Clock: clock, URLs: fakeURLs{}, Mixer: &fakeMixer{},
			Logger: slog.New(slog.DiscardHandler), IdleTimeout: 10 * time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		host, _ := eng.Login(bg, "host")
		before := heapAfterGC()
		for i := range rooms {
			r, err := eng.CreateRoom(bg, host.ID, fmt.Sprint("room ", i))
			if err != nil {
				b.Fatal(err)
			}
			_ = eng.StreamPublished(bg, r.ID) // no deadline: nothing but idleness stops it
		}
		active := heapAfterGC()
		clock.Advance(11 * time.Minute)
		for {
			n, _, _ := eng.ActiveRooms(bg)
			if n == 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		passive := heapAfterGC()
		b.ReportMetric(float64(active-before)/rooms, "B/active-room")
		b.ReportMetric(float64(int64(passive)-int64(before))/rooms, "B/passivated-room")
		eng.Shutdown()
	}
}

// BenchmarkRestoredRoomMemory reports the heap per room after a restart: rooms are loaded
// into the registry's read model and start no actor until a message or deadline needs one
// (the steady state of an idle room), and the time to be ready with that many rooms.
func BenchmarkRestoredRoomMemory(b *testing.B) {
	const rooms = 10000
	store := newMemStore()
	for i := range rooms {
		id := fmt.Sprintf("%010x", i)
		_ = store.SaveRoom(bg, Room{ID: id, UID: "1", Name: "host", Description: fmt.Sprint("room ", i),
			CreateTime: t0, Status: StatusPublishing, Type: TypeHost, Publishing: true, IsMixReady: i%2 == 0,
			PushURL: "rtmp://push/app/" + id + "?auth_key=1795680000-0-0-0123456789abcdef0123456789abcdef"})
	}
	for range b.N {
		before := heapAfterGC()
		start := time.Now()
		eng, err := NewEngine(EngineConfig{Room: testCfg, Store: store, Publisher: discardPublisher{},
			Clock: fakeclock.New(t0), URLs: fakeURLs{}, Mixer: &fakeMixer{}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := eng.List(bg, ListQuery{}); err != nil {
			b.Fatal(err)
		}
		ready := time.Since(start)
		after := heapAfterGC()
		b.ReportMetric(float64(after-before)/rooms, "B/restored-room")
		b.ReportMetric(ready.Seconds()*1000, "ms-ready-10k")
		eng.Shutdown()
	}
}
