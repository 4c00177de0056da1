package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
)

// FeedHandler receives the cluster feed's entries ({p}:feed: room changes and resets; the
// pushes go by topic, subscriber.go) in stream order. Its methods are called from the
// follower's goroutine, one at a time.
type FeedHandler interface {
	// Room is a room snapshot a fenced save appended (k=room).
	Room(room actors.Room)
	// RoomDeleted is a fenced room deletion (k=roomdel).
	RoomDeleted(id string)
	// Reset: the store was wiped (key "": everything, else one room or user) by /reset on
	// the member whose incarnation is from; every node forgets what it held of it.
	Reset(key, from string)
	// Gap says entries were trimmed from the feed before this follower read them: whatever
	// the node derived from the feed may have missed changes (reload it). Following goes on
	// from the oldest entry left.
	Gap()
}

// Follower defaults.
const (
	feedBlock = time.Second // how long one XREAD waits for news
	feedCount = 512         // entries per read
)

// FollowerOptions configures a Follower.
type FollowerOptions struct {
	// Name is the Redis client name of the follower's connection (CLIENT LIST), so an
	// operator can tell it apart. Default "roomengine-feed".
	Name   string
	Logger *slog.Logger
}

// Follower tails the cluster feed with XREAD BLOCK on a connection of its own and hands
// each entry to a FeedHandler. It survives a lost connection by reading on from its last
// id, and detects when its position was trimmed away meanwhile.
type Follower struct {
	key  string
	log  *slog.Logger
	opts Options
	conn connSettings

	mu       sync.Mutex
	lastID   string
	behind   time.Time     // zero when caught up; else the time of the oldest unread news
	progress chan struct{} // closed (and replaced) whenever lastID moves
}

// NewFollower prepares a follower; Run follows.
func (s *Store) NewFollower(opts FollowerOptions) *Follower {
	if opts.Name == "" {
		opts.Name = "roomengine-feed"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// A connection of its own: a blocking read must not hold one of the store's, and its
	// read timeout must outlast the block (pipelines use the client's ReadTimeout).
	cs := connSettings{name: opts.Name, readTimeout: feedBlock + s.timeout, poolSize: 1}
	return &Follower{opts: s.opts, conn: cs, key: s.prefix + "feed", log: opts.Logger, lastID: "0-0",
		progress: make(chan struct{})}
}

// FeedHead returns the id of the feed's last entry ("0-0" while it is empty). A node takes
// it before it loads the state the feed updates, then follows from it: nothing written
// after the load began is missed, and anything applied twice is applied idempotently.
func (s *Store) FeedHead(ctx context.Context) (string, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return "", err
	}
	defer cancel()
	msgs, err := s.rc.XRevRangeN(ctx, s.prefix+"feed", "+", "-", 1).Result()
	if err != nil {
		return "", err
	}
	if len(msgs) == 0 {
		return "0-0", nil
	}
	return msgs[0].ID, nil
}

// Run follows the feed from the entry after from until ctx ends (it then returns nil).
// A read that fails is retried with backoff from the last id handled.
func (f *Follower) Run(ctx context.Context, from string, h FeedHandler) error {
	rdb := newUniversalClient(f.opts, f.conn)
	defer rdb.Close()
	// A blocked XREAD does not watch its context; closing the connection ends it, so a
	// node leaving does not wait out the block.
	stop := context.AfterFunc(ctx, func() { rdb.Close() })
	defer stop()
	f.moved(from)
	backoff := 20 * time.Millisecond
	for ctx.Err() == nil {
		msgs, gap, err := f.read(ctx, rdb, from)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			f.fellBehind()
			f.log.Warn("push feed: read failed, retrying", "err", err, "from", from)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 20 * time.Millisecond
		if gap {
			f.log.Warn("push feed: entries were trimmed before this node read them", "from", from)
			h.Gap()
		}
		for _, m := range msgs {
			dispatch(h, m, f.log)
			from = m.ID
		}
		f.handled(from, len(msgs) == feedCount)
	}
	return nil
}

// read waits for entries after from, and reports whether entries after from were trimmed
// before this follower read them. The XINFO STREAM pipelined ahead of the XREAD tells:
// trimming removes a prefix of the stream, so while from (an entry this follower handled)
// is still at or after the first entry, nothing after it is gone. When from itself was
// trimmed, a gap is reported even if its successor happens to be left: the follower is a
// whole feed behind, and telling the two apart would need an entry count Redis does not
// give per id. From "0-0" (an empty feed at start) a gap is any entry ever trimmed.
// (Redis 7.0's max-deleted-entry-id would be the natural check, but trimming does not
// set it; only XDEL does.)
func (f *Follower) read(ctx context.Context, rdb goredis.UniversalClient, from string) ([]goredis.XMessage, bool, error) {
	pipe := rdb.Pipeline()
	info := pipe.XInfoStream(ctx, f.key)
	xr := pipe.XRead(ctx, &goredis.XReadArgs{Streams: []string{f.key, from}, Count: feedCount, Block: feedBlock})
	_, _ = pipe.Exec(ctx)
	streams, err := xr.Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, false, err
	}
	gap := false
	if in, err := info.Result(); err == nil {
		if in.Length > 0 && compareIDs(in.FirstEntry.ID, from) > 0 {
			gap = from != "0-0" || in.EntriesAdded > in.Length
		}
	} else if !isServerError(err) { // "no such key": nothing written yet
		return nil, false, err
	}
	if len(streams) == 0 {
		return nil, gap, nil
	}
	return streams[0].Messages, gap, nil
}

func dispatch(h FeedHandler, m goredis.XMessage, log *slog.Logger) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	switch k := str("k"); k {
	case "room":
		var r actors.Room
		if err := json.Unmarshal([]byte(str("v")), &r); err != nil {
			log.Error("push feed: malformed room entry", "id", m.ID, "err", err)
			return
		}
		h.Room(r)
	case "roomdel":
		h.RoomDeleted(str("id"))
	case "reset":
		h.Reset(str("key"), str("inc"))
	default:
		// A newer node's entry kind: skipping it keeps a mixed-version cluster following.
		log.Debug("push feed: unknown entry kind", "id", m.ID, "k", k)
	}
}

// handled records the follower's position; full says the read was cut at feedCount, so
// more is waiting and the entry's age is the lag.
func (f *Follower) handled(id string, full bool) {
	f.mu.Lock()
	if full {
		f.behind = idTime(id)
	} else {
		f.behind = time.Time{}
	}
	f.mu.Unlock()
	f.moved(id)
}

// moved records the follower's position and wakes WaitPast.
func (f *Follower) moved(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == f.lastID {
		return
	}
	f.lastID = id
	close(f.progress)
	f.progress = make(chan struct{})
}

// Passed reports whether the follower has handled the entry id (or a later one).
func (f *Follower) Passed(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return compareIDs(f.lastID, id) >= 0
}

// WaitPast waits until the follower has handled the entry id; false if ctx ended first.
func (f *Follower) WaitPast(ctx context.Context, id string) bool {
	for {
		f.mu.Lock()
		passed, ch := compareIDs(f.lastID, id) >= 0, f.progress
		f.mu.Unlock()
		if passed {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// fellBehind starts counting lag from now when a read fails while caught up.
func (f *Follower) fellBehind() {
	f.mu.Lock()
	if f.behind.IsZero() {
		f.behind = time.Now()
	}
	f.mu.Unlock()
}

// LastID is the id of the last entry handled (or the from Run started at).
func (f *Follower) LastID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastID
}

// Lag is how far behind the feed's head the follower is: the age of the last entry it
// handled while more was waiting, or the time since its reads began to fail; 0 when
// caught up. It backs roomengine_push_feed_lag_seconds.
func (f *Follower) Lag() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.behind.IsZero() {
		return 0
	}
	return time.Since(f.behind)
}

// idTime is the time in a stream id ("ms-n").
func idTime(id string) time.Time {
	ms, _, _ := parseID(id)
	return time.UnixMilli(int64(ms))
}

func parseID(id string) (ms, n uint64, ok bool) {
	a, b, _ := strings.Cut(id, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	n, err2 := strconv.ParseUint(b, 10, 64)
	return ms, n, err1 == nil && err2 == nil
}

// compareIDs orders stream ids; an unparsable one counts as 0-0.
func compareIDs(a, b string) int {
	am, an, _ := parseID(a)
	bm, bn, _ := parseID(b)
	if c := cmp.Compare(am, bm); c != 0 {
		return c
	}
	return cmp.Compare(an, bn)
}
