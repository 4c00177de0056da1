package push

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"roomengine/actors"
)

// sink records what a feed delivers.
type sink struct {
	mu     sync.Mutex
	frames []Frame
	ended  []string
}

func (s *sink) Deliver(f Frame) {
	s.mu.Lock()
	s.frames = append(s.frames, f)
	s.mu.Unlock()
}

func (s *sink) EndTopic(topic string) {
	s.mu.Lock()
	s.ended = append(s.ended, topic)
	s.frames = append(s.frames, Frame{Topic: topic}) // marks the end's place
	s.mu.Unlock()
}

func (s *sink) Resync() {}

func TestMemoryNumbersEachTopicFromItsOrigin(t *testing.T) {
	origin := uint64(1000)
	m := NewMemory(MemoryOptions{SeqOrigin: func() uint64 { origin += 1000; return origin }})
	s := &sink{}
	m.Attach(s)
	m.Publish(actors.Push{Topic: "a", Tag: "x", Importance: 8, Type: 6, Body: []byte(`{}`)})
	m.Publish(actors.Push{Topic: "b"})
	m.Publish(actors.Push{Topic: "a"})
	m.DeleteTopic("a")
	m.Publish(actors.Push{Topic: "a"}) // its next life, above the previous one
	want := []struct {
		topic string
		seq   uint64
	}{{"a", 2001}, {"b", 3001}, {"a", 2002}, {"a", 0}, {"a", 4001}}
	if len(s.frames) != len(want) {
		t.Fatalf("delivered %+v", s.frames)
	}
	for i, w := range want {
		if f := s.frames[i]; f.Topic != w.topic || f.Seq != w.seq {
			t.Fatalf("frame %d = %s/%d, want %s/%d", i, f.Topic, f.Seq, w.topic, w.seq)
		}
	}
	if f := s.frames[0]; f.Tag != "x" || f.Importance != 8 || f.Type != 6 || string(f.Body) != `{}` {
		t.Fatalf("frame 0 = %+v", f)
	}
	if !m.DeliversAll() {
		t.Fatal("a single node's feed delivers every frame")
	}
}

// Publishers of one topic on several goroutines: the sink gets its seqs in order, each once.
func TestMemoryDeliversInSeqOrder(t *testing.T) {
	m := NewMemory(MemoryOptions{SeqOrigin: func() uint64 { return 0 }})
	s := &sink{}
	m.Attach(s)
	var wg sync.WaitGroup
	const per, workers = 500, 4
	for range workers {
		wg.Go(func() {
			for range per {
				m.Publish(actors.Push{Topic: "r"})
			}
		})
	}
	wg.Wait()
	for i, f := range s.frames {
		if f.Seq != uint64(i+1) {
			t.Fatalf("frame %d has seq %d", i, f.Seq)
		}
	}
	if len(s.frames) != per*workers {
		t.Fatalf("%d frames, want %d", len(s.frames), per*workers)
	}
}

// A topic idle for IdleTTL is forgotten when another topic is created: its next push
// starts a new life from the origin, above the previous seqs.
func TestMemoryForgetsIdleTopics(t *testing.T) {
	clock := uint64(0)
	m := NewMemory(MemoryOptions{SeqOrigin: func() uint64 { clock += 100; return clock }, IdleTTL: 2 * time.Millisecond})
	s := &sink{}
	m.Attach(s)
	m.Publish(actors.Push{Topic: "idle"})
	if err := m.Follow(t.Context(), "watched"); err != nil { // a quiet topic with a subscriber
		t.Fatal(err)
	}
	m.Publish(actors.Push{Topic: "watched"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Each new topic may sweep its shard; "idle" is forgotten once its shard is swept
		// twice without a push to it.
		for i := range 1000 {
			m.Publish(actors.Push{Topic: fmt.Sprint("t", i)})
		}
		sh := m.shard("idle")
		sh.mu.Lock()
		_, kept := sh.m["idle"]
		sh.mu.Unlock()
		if !kept {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle topic was never forgotten")
		}
		for i := range 1000 { // so that the next round creates topics again
			m.DeleteTopic(fmt.Sprint("t", i))
		}
		time.Sleep(time.Millisecond)
	}
	first := s.frames[0].Seq
	m.Publish(actors.Push{Topic: "idle"})
	if last := s.frames[len(s.frames)-1]; last.Topic != "idle" || last.Seq <= first+1 {
		t.Fatalf("after being forgotten: seq %d, first life's %d", last.Seq, first)
	}
	// The followed topic was swept as often and kept: its seqs go on by one.
	watched := s.frames[1].Seq
	m.Publish(actors.Push{Topic: "watched"})
	if last := s.frames[len(s.frames)-1]; last.Seq != watched+1 {
		t.Fatalf("followed topic: seq %d after %d", last.Seq, watched)
	}
	m.Unfollow("watched")
}
