// Package embedded is the default actors.Store: a single bbolt file in the data directory,
// so a single-node deployment needs no external service and still survives a restart.
//
// bbolt allows one write transaction at a time and every commit costs two fsyncs, so one
// transaction per write would cap the store at a few hundred writes per second. Instead a
// single writer goroutine applies every write waiting in its queue in one transaction
// (group commit): the more callers wait during a commit, the larger the next batch, with
// no added latency when the store is idle.
package embedded

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"roomengine/actors"
)

var (
	bucketUsers     = []byte("users")     // user id -> User JSON
	bucketMeta      = []byte("meta")      // keyLastUserID -> uint64 big endian
	bucketRooms     = []byte("rooms")     // room id -> Room JSON
	bucketAudiences = []byte("audiences") // room id -> bucket of user id -> User JSON
	bucketCalls     = []byte("calls")     // call id -> Call JSON

	keyLastUserID = []byte("lastUserID")
)

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("embedded: store is closed")

// Options tunes Open. The zero value is what production wants.
type Options struct {
	// NoSync skips fsync on commit, so a nil error no longer means durable. For
	// benchmarks and tests only.
	NoSync bool
	// MaxBatch caps how many writes share one transaction (default 1000), which bounds
	// the latency one commit adds to the writes queued behind it.
	MaxBatch int
	// LockTimeout is how long Open waits for another process to release the file
	// (default 5s); bbolt would otherwise wait forever, hiding a second instance
	// started on the same data directory.
	LockTimeout time.Duration
}

// Store is the bbolt-backed actors.Store. Methods are safe for concurrent use.
//
// Writes (CreateUser, SaveRoom, DeleteRoom, AddAudience, RemoveAudience, Reset) return nil
// only once their transaction is committed and fsynced. If the caller's context ends
// first, the method returns ctx.Err() at once, but a write already queued may still be
// committed afterwards: the caller must treat the outcome as unknown, as after a network
// timeout. A write whose context has ended before the writer picks it up is dropped.
type Store struct {
	db       *bolt.DB
	ops      chan *op
	maxBatch int
	writerWG sync.WaitGroup

	// mu guards sending on ops against Close closing it. Senders hold it shared; they
	// never wait long because the writer keeps draining ops until it is closed.
	mu     sync.RWMutex
	closed atomic.Bool

	// testHookBatch, when set (only by tests, before the writer starts), is called by the
	// writer with each batch's size before it is applied, so tests can hold the writer
	// and observe how writes were grouped.
	testHookBatch func(n int)
}

// op is one queued write. apply runs inside the shared write transaction; it must leave
// no trace outside tx except in variables the submitter reads after done, because a
// batch may be rolled back and apply run again.
type op struct {
	ctx   context.Context
	apply func(tx *bolt.Tx) error
	done  chan error // buffered: the writer never waits for a caller that gave up
}

// Open opens or creates the store file at path, creating its directory if needed.
func Open(path string, opts Options) (*Store, error) {
	return open(path, opts, nil)
}

func open(path string, opts Options, hook func(n int)) (*Store, error) {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1000
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.LockTimeout,
		NoSync:  opts.NoSync,
		// Skipping the freelist write saves pages on every commit; bbolt rebuilds the
		// freelist by scanning on open, which is cheap at the size this store reaches.
		NoFreelistSync: true,
		// The array freelist degrades badly once the file is fragmented by Resets.
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("embedded: %s is locked by another process: %w", path, err)
		}
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketUsers, bucketMeta, bucketRooms, bucketAudiences, bucketCalls} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("embedded: init %s: %w", path, err)
	}
	s := &Store{
		db:       db,
		ops:      make(chan *op, opts.MaxBatch),
		maxBatch: opts.MaxBatch,

		testHookBatch: hook,
	}
	s.writerWG.Add(1)
	go s.writer()
	return s, nil
}

// Close commits every write already queued, then closes the file. Later calls on the
// store return ErrClosed; Close itself may be called again and returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil
	}
	s.closed.Store(true)
	close(s.ops)
	s.mu.Unlock()
	s.writerWG.Wait()
	// bbolt's Close waits for read transactions still running.
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("embedded: close: %w", err)
	}
	return nil
}

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.db.Path() }

// Ping checks that the store is open and its file readable.
func (s *Store) Ping(ctx context.Context) error {
	return s.view(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers) == nil || tx.Bucket(bucketMeta) == nil ||
			tx.Bucket(bucketRooms) == nil || tx.Bucket(bucketAudiences) == nil || tx.Bucket(bucketCalls) == nil {
			return errors.New("embedded: buckets missing")
		}
		return nil
	})
}

// CreateUser allocates the id from the counter inside the write transaction, so ids are
// gap-free and the counter and the user are committed together.
func (s *Store) CreateUser(ctx context.Context, name string) (actors.User, error) {
	var u actors.User
	err := s.submit(ctx, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		last, err := lastUserID(meta)
		if err != nil {
			return err
		}
		next := last + 1
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], next)
		if err := meta.Put(keyLastUserID, buf[:]); err != nil {
			return err
		}
		user := actors.User{ID: strconv.FormatUint(next, 10), Name: name}
		val, err := json.Marshal(user)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketUsers).Put([]byte(user.ID), val); err != nil {
			return err
		}
		u = user
		return nil
	})
	if err != nil {
		return actors.User{}, err
	}
	return u, nil
}

func lastUserID(meta *bolt.Bucket) (uint64, error) {
	v := meta.Get(keyLastUserID)
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	default:
		return 0, fmt.Errorf("embedded: corrupt user id counter (%d bytes)", len(v))
	}
}

// GetUser returns an error wrapping actors.ErrNotFound for an unknown id.
func (s *Store) GetUser(ctx context.Context, id string) (actors.User, error) {
	var u actors.User
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if id == "" {
			return fmt.Errorf("user %q: %w", id, actors.ErrNotFound)
		}
		v := tx.Bucket(bucketUsers).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("user %s: %w", id, actors.ErrNotFound)
		}
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("embedded: user %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return actors.User{}, err
	}
	return u, nil
}

// SaveRoom stores the snapshot as JSON with its times in UTC, so every load returns the
// same representation whatever zone the caller used.
func (s *Store) SaveRoom(ctx context.Context, room actors.Room) error {
	if err := checkKey("room id", room.ID); err != nil {
		return err
	}
	room.CreateTime = room.CreateTime.UTC()
	room.NoPublishDeadline = room.NoPublishDeadline.UTC()
	room.TopicDeleteDeadline = room.TopicDeleteDeadline.UTC()
	// Marshal outside the writer: it is the costliest part and needs no transaction.
	val, err := json.Marshal(room)
	if err != nil {
		return fmt.Errorf("embedded: room %s: %w", room.ID, err)
	}
	key := []byte(room.ID)
	return s.submit(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRooms).Put(key, val)
	})
}

// DeleteRoom is idempotent: deleting an unknown room succeeds.
func (s *Store) DeleteRoom(ctx context.Context, roomID string) error {
	if err := checkKey("room id", roomID); err != nil {
		return err
	}
	key := []byte(roomID)
	return s.submit(ctx, func(tx *bolt.Tx) error {
		return deleteRoom(tx, key)
	})
}

func deleteRoom(tx *bolt.Tx, key []byte) error {
	if err := tx.Bucket(bucketRooms).Delete(key); err != nil {
		return err
	}
	return deleteAudience(tx, key)
}

func deleteAudience(tx *bolt.Tx, roomKey []byte) error {
	err := tx.Bucket(bucketAudiences).DeleteBucket(roomKey)
	if errors.Is(err, bolterrors.ErrBucketNotFound) {
		return nil
	}
	return err
}

// SaveCall stores the call snapshot as JSON.
func (s *Store) SaveCall(ctx context.Context, call actors.Call) error {
	if err := checkKey("call id", call.ID); err != nil {
		return err
	}
	call.CreateTime = call.CreateTime.UTC()
	val, err := json.Marshal(call)
	if err != nil {
		return fmt.Errorf("embedded: call %s: %w", call.ID, err)
	}
	key := []byte(call.ID)
	return s.submit(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCalls).Put(key, val)
	})
}

// DeleteCall is idempotent: deleting an unknown call succeeds.
func (s *Store) DeleteCall(ctx context.Context, callID string) error {
	if err := checkKey("call id", callID); err != nil {
		return err
	}
	key := []byte(callID)
	return s.submit(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCalls).Delete(key)
	})
}

// LoadCalls returns the calls ordered by id.
func (s *Store) LoadCalls(ctx context.Context) ([]actors.Call, error) {
	var calls []actors.Call
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCalls).ForEach(func(k, v []byte) error {
			if err := ctxCheck(ctx, len(calls)); err != nil {
				return err
			}
			var c actors.Call
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("embedded: call %s: %w", k, err)
			}
			calls = append(calls, c)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return calls, nil
}

// LoadRooms returns the rooms ordered by id.
func (s *Store) LoadRooms(ctx context.Context) ([]actors.Room, error) {
	var rooms []actors.Room
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRooms)
		return b.ForEach(func(k, v []byte) error {
			if err := ctxCheck(ctx, len(rooms)); err != nil {
				return err
			}
			var r actors.Room
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("embedded: room %s: %w", k, err)
			}
			rooms = append(rooms, r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return rooms, nil
}

// AddAudience does not require the room to be saved first: the room actor owns both
// records and decides their order.
func (s *Store) AddAudience(ctx context.Context, roomID string, member actors.User) error {
	if err := checkKey("room id", roomID); err != nil {
		return err
	}
	if err := checkKey("user id", member.ID); err != nil {
		return err
	}
	val, err := json.Marshal(member)
	if err != nil {
		return fmt.Errorf("embedded: audience member %s: %w", member.ID, err)
	}
	roomKey, uidKey := []byte(roomID), []byte(member.ID)
	return s.submit(ctx, func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketAudiences).CreateBucketIfNotExists(roomKey)
		if err != nil {
			return err
		}
		return b.Put(uidKey, val)
	})
}

// RemoveAudience is idempotent, including for an unknown room.
func (s *Store) RemoveAudience(ctx context.Context, roomID, uid string) error {
	if err := checkKey("room id", roomID); err != nil {
		return err
	}
	if err := checkKey("user id", uid); err != nil {
		return err
	}
	roomKey, uidKey := []byte(roomID), []byte(uid)
	return s.submit(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudiences).Bucket(roomKey)
		if b == nil {
			return nil
		}
		if err := b.Delete(uidKey); err != nil {
			return err
		}
		// Dropping the emptied bucket keeps rooms that once had viewers from leaving
		// empty buckets behind forever.
		if k, _ := b.Cursor().First(); k == nil {
			return deleteAudience(tx, roomKey)
		}
		return nil
	})
}

// LoadAudience returns an empty list for an unknown room. bbolt orders keys bytewise
// ("10" before "9"), so the members are sorted numerically after reading.
func (s *Store) LoadAudience(ctx context.Context, roomID string) ([]actors.User, error) {
	var users []actors.User
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if roomID == "" {
			return nil
		}
		b := tx.Bucket(bucketAudiences).Bucket([]byte(roomID))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if err := ctxCheck(ctx, len(users)); err != nil {
				return err
			}
			var u actors.User
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("embedded: audience %s member %s: %w", roomID, k, err)
			}
			users = append(users, u)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(users, func(a, b actors.User) int { return actors.CompareIDs(a.ID, b.ID) })
	return users, nil
}

// Reset with a key deletes whatever that key names, a user, a room with its audience, or
// both: room ids (10 hex digits) and user ids can in principle coincide, and the admin
// asking for the key wiped expects nothing named by it to survive. The user id counter
// is never touched, so ids are not reused.
func (s *Store) Reset(ctx context.Context, key string) error {
	if key == "" {
		return s.submit(ctx, func(tx *bolt.Tx) error {
			// Dropping whole buckets frees their pages in one go rather than one
			// delete per key.
			for _, name := range [][]byte{bucketUsers, bucketRooms, bucketAudiences, bucketCalls} {
				if err := tx.DeleteBucket(name); err != nil {
					return err
				}
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := checkKey("key", key); err != nil {
		return err
	}
	k := []byte(key)
	return s.submit(ctx, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketUsers).Delete(k); err != nil {
			return err
		}
		return deleteRoom(tx, k)
	})
}

// checkKey rejects keys bbolt would refuse inside the batch, so one bad request is
// turned away before it can cost the batch it would have shared a transaction with.
func checkKey(what, k string) error {
	if k == "" {
		return fmt.Errorf("embedded: empty %s", what)
	}
	if len(k) > bolt.MaxKeySize {
		return fmt.Errorf("embedded: %s of %d bytes is too long", what, len(k))
	}
	return nil
}

// ctxCheck polls ctx every 256 items so that long scans stop soon after the caller gave up
// without paying for a channel check per key.
func ctxCheck(ctx context.Context, n int) error {
	if n%256 == 0 {
		return ctx.Err()
	}
	return nil
}

// view runs a read transaction directly: bbolt readers never wait for the writer, so
// reads need not queue behind writes.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return ErrClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed // Close won the race after the check above
	}
	return err
}

// submit queues a write for the writer and waits until it is durable or ctx ends.
func (s *Store) submit(ctx context.Context, apply func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{ctx: ctx, apply: apply, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed.Load() {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.ops <- o:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer is the only goroutine that writes to the db. It never waits to fill a batch:
// a lone write is committed at once, and the writes that arrive while that commit's
// fsync runs form the next batch.
func (s *Store) writer() {
	defer s.writerWG.Done()
	batch := make([]*op, 0, s.maxBatch)
	for {
		o, ok := <-s.ops
		if !ok {
			return
		}
		batch = append(batch[:0], o)
	fill:
		for len(batch) < s.maxBatch {
			select {
			case o, ok := <-s.ops:
				if !ok {
					break fill // commit what we have; the next receive sees the close
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		if s.testHookBatch != nil {
			s.testHookBatch(len(batch))
		}
		s.commit(batch)
		clear(batch) // let finished ops and their closures be collected
	}
}

// commit applies ops in order in one transaction and reports to each. If one op fails,
// the transaction is rolled back and the ops before it are committed without it, the
// failing op gets its error, and the ops after it are tried again, so a bad write never
// fails its neighbours and the order of the others is kept.
func (s *Store) commit(ops []*op) {
	live := ops[:0] // filtered in place: each op is replied to exactly once
	for _, o := range ops {
		if err := o.ctx.Err(); err != nil {
			o.done <- err // the caller has returned already; nothing else to undo
			continue
		}
		live = append(live, o)
	}
	for len(live) > 0 {
		failed := -1
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, o := range live {
				if err := o.apply(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		switch {
		case err == nil:
			reply(live, nil)
			return
		case failed < 0:
			// Begin or commit failed (disk full, fsync error): nothing was written.
			reply(live, fmt.Errorf("embedded: commit: %w", err))
			return
		default:
			if failed > 0 {
				s.commit(live[:failed])
			}
			live[failed].done <- fmt.Errorf("embedded: %w", err)
			live = live[failed+1:]
		}
	}
}

func reply(ops []*op, err error) {
	for _, o := range ops {
		o.done <- err
	}
}
