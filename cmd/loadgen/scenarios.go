package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
)

// A scenario is prepared once (setup), then each worker gets its own request function.
type scenario interface {
	// newWorker returns the function worker w calls for every request; it owns c.
	newWorker(w int, c *caller) func(ctx context.Context) error
}

// commentScenario: one room with an optional set of subscribers, hammered with comments.
type commentScenario struct {
	uid, roomID string
}

func setupComment(ctx context.Context, c *caller, runID string) (*commentScenario, error) {
	host, err := login(ctx, c, "lg-host-"+runID)
	if err != nil {
		return nil, err
	}
	roomID, err := createRoom(ctx, c, host, "loadgen comment room")
	if err != nil {
		return nil, err
	}
	// Publishing keeps the room alive past live.noPublishTimeout on long runs. It pushes a
	// frame, but before any subscriber connects, so the subscribers only see comments.
	if _, err := c.get(ctx, "/ali/stream/notify?action=publish&id="+roomID); err != nil {
		return nil, fmt.Errorf("publish callback: %w", err)
	}
	viewer, err := login(ctx, c, "lg-viewer-"+runID)
	if err != nil {
		return nil, err
	}
	return &commentScenario{uid: viewer, roomID: roomID}, nil
}

func (s *commentScenario) newWorker(w int, c *caller) func(ctx context.Context) error {
	body, _ := json.Marshal(map[string]string{
		"uid": s.uid, "roomId": s.roomID, "comment": "load test comment from worker " + strconv.Itoa(w),
	})
	return func(ctx context.Context) error {
		_, err := c.postJSON(ctx, "/live/comment", body)
		return err
	}
}

// listScenario: R listed rooms (publishing and mix-ready), hammered with GET /live/list.
type listScenario struct {
	listed int // rooms the list returned after setup
	bytes  int // size of that answer
}

func setupList(ctx context.Context, client *caller, newCaller func() *caller, runID string, rooms, parallel int) (*listScenario, error) {
	// Each room has its own host, as in production; rooms are set up a few at a time.
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range rooms {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := setupListedRoom(ctx, newCaller(), runID, i); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("room %d: %w", i, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	body, err := client.get(ctx, "/live/list")
	if err != nil {
		return nil, fmt.Errorf("list after setup: %w", err)
	}
	var env struct {
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("decode list: %w", err)
	}
	return &listScenario{listed: len(env.Data), bytes: len(body)}, nil
}

func setupListedRoom(ctx context.Context, c *caller, runID string, i int) error {
	host, err := login(ctx, c, "lg-host-"+runID+"-"+strconv.Itoa(i))
	if err != nil {
		return err
	}
	roomID, err := createRoom(ctx, c, host, "loadgen list room "+strconv.Itoa(i))
	if err != nil {
		return err
	}
	if _, err := c.get(ctx, "/ali/stream/notify?action=publish&id="+roomID); err != nil {
		return fmt.Errorf("publish callback: %w", err)
	}
	if _, err := c.get(ctx, "/ali/mix/availability/notify?Event=MixAvailable&Stream="+roomID+"_mix"); err != nil {
		return fmt.Errorf("mix callback: %w", err)
	}
	return nil
}

func (s *listScenario) newWorker(_ int, c *caller) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.get(ctx, "/live/list")
		return err
	}
}

// playScenario: one publishing room and one viewer per worker; each worker plays its
// viewer into the room again and again (POST /live/play). A play of a viewer already in the
// audience is answered like the first one, so every request goes through the room's owner.
type playScenario struct {
	roomID  string
	viewers []string // by worker
}

func setupPlay(ctx context.Context, c *caller, newCaller func() *caller, runID string, workers, parallel int) (*playScenario, error) {
	host, err := login(ctx, c, "lg-host-"+runID)
	if err != nil {
		return nil, err
	}
	roomID, err := createRoom(ctx, c, host, "loadgen play room")
	if err != nil {
		return nil, err
	}
	if _, err := c.get(ctx, "/ali/stream/notify?action=publish&id="+roomID); err != nil {
		return nil, fmt.Errorf("publish callback: %w", err)
	}
	s := &playScenario{roomID: roomID, viewers: make([]string, workers)}
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range workers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			id, err := login(ctx, newCaller(), "lg-viewer-"+runID+"-"+strconv.Itoa(i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			s.viewers[i] = id
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return s, nil
}

func (s *playScenario) newWorker(w int, c *caller) func(ctx context.Context) error {
	body, _ := json.Marshal(map[string]string{"uid": s.viewers[w], "roomId": s.roomID})
	return func(ctx context.Context) error {
		_, err := c.postJSON(ctx, "/live/play", body)
		return err
	}
}

// loginScenario: POST /login with a name never used before, so every request creates (and
// durably stores) a user. Ids are checked for uniqueness up to maxTrackedIDs.
type loginScenario struct {
	runID string

	mu         sync.Mutex
	ids        map[string]struct{}
	duplicates uint64
	untracked  uint64 // ids not checked because the set was full
	missing    uint64 // successful answers without an id
}

const maxTrackedIDs = 1_000_000

func newLoginScenario(runID string) *loginScenario {
	return &loginScenario{runID: runID, ids: make(map[string]struct{})}
}

func (s *loginScenario) newWorker(w int, c *caller) func(ctx context.Context) error {
	prefix := `{"name":"lg-` + s.runID + "-" + strconv.Itoa(w) + "-"
	var i uint64
	buf := make([]byte, 0, 64)
	return func(ctx context.Context) error {
		i++
		buf = strconv.AppendUint(append(buf[:0], prefix...), i, 10)
		buf = append(buf, `"}`...)
		body, err := c.postJSON(ctx, "/login", buf)
		if err != nil {
			return err
		}
		s.track(loginID(body))
		return nil
	}
}

func (s *loginScenario) track(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch _, seen := s.ids[id]; {
	case id == "":
		s.missing++
	case seen:
		s.duplicates++
	case len(s.ids) >= maxTrackedIDs:
		s.untracked++
	default:
		s.ids[id] = struct{}{}
	}
}

func login(ctx context.Context, c *caller, name string) (string, error) {
	body, err := json.Marshal(map[string]string{"name": name})
	if err != nil {
		return "", err
	}
	ans, err := c.postJSON(ctx, "/login", body)
	if err != nil {
		return "", fmt.Errorf("login %s: %w", name, err)
	}
	return dataField(ans, "id")
}

func createRoom(ctx context.Context, c *caller, uid, desc string) (string, error) {
	body, err := json.Marshal(map[string]string{"uid": uid, "desc": desc})
	if err != nil {
		return "", err
	}
	ans, err := c.postJSON(ctx, "/live/create", body)
	if err != nil {
		return "", fmt.Errorf("create room: %w", err)
	}
	return dataField(ans, "roomId")
}
