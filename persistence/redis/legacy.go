package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"roomengine/actors"
)

// This file reads the data of the old Node.js server and imports its users into
// this store with their ids. The old server's keys, under its redis.keyprefix (default
// "mns", written {L} here), on the same Redis or another:
//
//	{L}/user/list       hash: user id -> JSON {id, name}
//	{L}_user_ID_Index   string: the last user id it allocated (INCR)
//	{L}/live/list       hash: room id -> JSON room object (uid, name, roomId, rtmpUrl,
//	                    status, type, isMixReady, isMixed, mixedStatus, description,
//	                    createTime "yyyy-MM-dd HH:mm:ss" local time, ...)
//	{L}/inviter/list    hash: co-streaming call records (only counted)
//
// The old server wrote numbers and strings interchangeably ("uid": 1 and "uid": "1"), so
// every field is decoded leniently. None of these keys is under this store's own
// namespace ({p}:...), so both can live on one Redis.

// DefaultLegacyPrefix is the old server's default redis.keyprefix.
const DefaultLegacyPrefix = "mns"

// LegacySource names the old server's Redis.
type LegacySource struct {
	Addr     string // host:port
	Password string
	DB       int
	Prefix   string        // default DefaultLegacyPrefix
	Timeout  time.Duration // bounds each round trip; default 5 s
}

// LegacyRoom is one record of {L}/live/list as the old server wrote it.
type LegacyRoom struct {
	RoomID      string
	UID         string
	Name        string
	RtmpURL     string
	Status      int
	Type        int
	IsMixReady  bool
	IsMixed     bool
	MixedStatus int
	Description string
	CreateTime  string // "yyyy-MM-dd HH:mm:ss", local time
}

// LegacyData is everything ReadLegacy found.
type LegacyData struct {
	Users []actors.User // ordered by numeric id; ids are canonical decimals
	// LastID is the old server's id counter ({L}_user_ID_Index), 0 when absent.
	LastID uint64
	Rooms  []LegacyRoom // ordered by room id
	// Calls is the number of co-streaming records in {L}/inviter/list.
	Calls int
	// Skipped describes each record that could not be decoded; it was left out.
	Skipped []string
}

// ReadLegacy reads the old server's users, id counter and rooms. It only reads (HSCAN, GET,
// HLEN), so it can run against a Redis the old server still uses.
func ReadLegacy(ctx context.Context, src LegacySource) (*LegacyData, error) {
	if src.Prefix == "" {
		src.Prefix = DefaultLegacyPrefix
	}
	if src.Timeout <= 0 {
		src.Timeout = 5 * time.Second
	}
	rdb := goredis.NewClient(&goredis.Options{
		Addr: src.Addr, Password: src.Password, DB: src.DB,
		ContextTimeoutEnabled: true,
		DialTimeout:           src.Timeout, ReadTimeout: src.Timeout, WriteTimeout: src.Timeout,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	r := legacyReader{rdb: rdb, timeout: src.Timeout}
	out := &LegacyData{}

	counterKey := src.Prefix + "_user_ID_Index"
	last, err := withTimeout(ctx, src.Timeout, func(ctx context.Context) (string, error) {
		return rdb.Get(ctx, counterKey).Result()
	})
	switch {
	case errors.Is(err, goredis.Nil):
	case err != nil:
		return nil, fmt.Errorf("redis: read %s at %s: %w", counterKey, src.Addr, err)
	default:
		out.LastID, err = strconv.ParseUint(strings.TrimSpace(last), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("redis: %s at %s is %q, not a user id", counterKey, src.Addr, last)
		}
	}

	usersKey := src.Prefix + "/user/list"
	err = r.scan(ctx, usersKey, func(field, value string) {
		u, err := decodeLegacyUser(field, value)
		if err != nil {
			out.Skipped = append(out.Skipped, fmt.Sprintf("%s %s: %v", usersKey, field, err))
			return
		}
		out.Users = append(out.Users, u)
	})
	if err != nil {
		return nil, fmt.Errorf("redis: read %s at %s: %w", usersKey, src.Addr, err)
	}
	slices.SortFunc(out.Users, func(a, b actors.User) int { return actors.CompareIDs(a.ID, b.ID) })

	roomsKey := src.Prefix + "/live/list"
	err = r.scan(ctx, roomsKey, func(field, value string) {
		room, err := decodeLegacyRoom(field, value)
		if err != nil {
			out.Skipped = append(out.Skipped, fmt.Sprintf("%s %s: %v", roomsKey, field, err))
			return
		}
		out.Rooms = append(out.Rooms, room)
	})
	if err != nil {
		return nil, fmt.Errorf("redis: read %s at %s: %w", roomsKey, src.Addr, err)
	}
	slices.SortFunc(out.Rooms, func(a, b LegacyRoom) int { return strings.Compare(a.RoomID, b.RoomID) })

	callsKey := src.Prefix + "/inviter/list"
	n, err := withTimeout(ctx, src.Timeout, func(ctx context.Context) (int64, error) {
		return rdb.HLen(ctx, callsKey).Result()
	})
	if err != nil {
		return nil, fmt.Errorf("redis: read %s at %s: %w", callsKey, src.Addr, err)
	}
	out.Calls = int(n)
	return out, nil
}

type legacyReader struct {
	rdb     *goredis.Client
	timeout time.Duration
}

// scan walks a hash with HSCAN, batchSize fields per round trip. A key that is not a hash
// is an error; a missing key has no fields.
func (r legacyReader) scan(ctx context.Context, key string, fn func(field, value string)) error {
	var cursor uint64
	for {
		kv, next, err := func() ([]string, uint64, error) {
			ctx, cancel := context.WithTimeout(ctx, r.timeout)
			defer cancel()
			return r.rdb.HScan(ctx, key, cursor, "*", batchSize).Result()
		}()
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(kv); i += 2 {
			fn(kv[i], kv[i+1])
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// decodeLegacyUser takes the id from the hash field (the value's id, when present, must
// agree) and the name from the value.
func decodeLegacyUser(field, value string) (actors.User, error) {
	var v struct {
		ID   lenientString `json:"id"`
		Name lenientString `json:"name"`
	}
	if err := json.Unmarshal([]byte(value), &v); err != nil {
		return actors.User{}, fmt.Errorf("not a user object: %v", err)
	}
	id := strings.TrimSpace(field)
	if !actors.IsDecimalID(id) {
		return actors.User{}, fmt.Errorf("id %q is not a decimal user id", field)
	}
	if v.ID != "" && string(v.ID) != id {
		return actors.User{}, fmt.Errorf("field says id %s, value says %s", id, v.ID)
	}
	return actors.User{ID: id, Name: string(v.Name)}, nil
}

func decodeLegacyRoom(field, value string) (LegacyRoom, error) {
	var v struct {
		RoomID      lenientString `json:"roomId"`
		UID         lenientString `json:"uid"`
		Name        lenientString `json:"name"`
		RtmpURL     lenientString `json:"rtmpUrl"`
		Status      lenientInt    `json:"status"`
		Type        lenientInt    `json:"type"`
		IsMixReady  lenientBool   `json:"isMixReady"`
		IsMixed     lenientBool   `json:"isMixed"`
		MixedStatus lenientInt    `json:"mixedStatus"`
		Description lenientString `json:"description"`
		CreateTime  lenientString `json:"createTime"`
	}
	if err := json.Unmarshal([]byte(value), &v); err != nil {
		return LegacyRoom{}, fmt.Errorf("not a room object: %v", err)
	}
	if v.RoomID != "" && string(v.RoomID) != field {
		return LegacyRoom{}, fmt.Errorf("field says room %s, value says %s", field, v.RoomID)
	}
	return LegacyRoom{
		RoomID: field, UID: string(v.UID), Name: string(v.Name), RtmpURL: string(v.RtmpURL),
		Status: int(v.Status), Type: int(v.Type), IsMixReady: bool(v.IsMixReady), IsMixed: bool(v.IsMixed),
		MixedStatus: int(v.MixedStatus), Description: string(v.Description), CreateTime: string(v.CreateTime),
	}, nil
}

// lenientString accepts a JSON string or number (ids were written both ways); null is "".
type lenientString string

func (s *lenientString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = ""
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = lenientString(strings.TrimSpace(v))
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("want a string or a number, got %s", b)
		}
		*s = lenientString(n.String())
	}
	return nil
}

// lenientInt accepts a number or a numeric string; null and "" are 0.
type lenientInt int

func (n *lenientInt) UnmarshalJSON(b []byte) error {
	var s lenientString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	if s == "" {
		*n = 0
		return nil
	}
	v, err := strconv.Atoi(string(s))
	if err != nil {
		return fmt.Errorf("want an integer, got %s", b)
	}
	*n = lenientInt(v)
	return nil
}

// lenientBool accepts true/false, "true"/"false" and 1/0 (also as strings); null is false.
type lenientBool bool

func (v *lenientBool) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("true")) || bytes.Equal(b, []byte("false")) {
		*v = lenientBool(bytes.Equal(b, []byte("true")))
		return nil
	}
	var s lenientString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	switch s {
	case "true", "1":
		*v = true
	case "false", "0", "":
		*v = false
	default:
		return fmt.Errorf("want a boolean, got %s", b)
	}
	return nil
}

// ErrUserConflict is returned by ImportUsers when this store already holds a different user
// under an imported id.
var ErrUserConflict = errors.New("a different user already has this id")

// reserveUserIDs raises the counter KEYS[1] to ARGV[1] unless it is already higher.
var reserveUserIDs = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1]) or '0'
if #ARGV[1] > #cur or (#ARGV[1] == #cur and ARGV[1] > cur) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 0
`)

// ImportUsers stores users under their own ids (for import-legacy) and raises the id
// counter past them, so CreateUser never hands out an imported id. Each batch of batchSize
// users first raises the counter to its highest id (from then on only an import writes
// those ids), then checks every user of the batch and writes them only if none conflicts:
// a conflict (ErrUserConflict: this store already has another user under one of the ids)
// writes no user of that batch. Earlier batches stay, and re-running the import is harmless
// (users stored with the same name are skipped). The users are in their own slots, so a
// batch is not one transaction; the counter first makes that safe.
func (s *Store) ImportUsers(ctx context.Context, users []actors.User) error {
	for _, u := range users {
		if !actors.IsDecimalID(u.ID) {
			return fmt.Errorf("redis: import user %q: not a decimal id", u.ID)
		}
	}
	for batch := range slices.Chunk(users, batchSize) {
		top := batch[0].ID
		for _, u := range batch {
			if actors.CompareIDs(u.ID, top) > 0 {
				top = u.ID
			}
		}
		err := func() error {
			ctx, cancel, err := s.begin(ctx)
			if err != nil {
				return err
			}
			defer cancel()
			if err := reserveUserIDs.Run(ctx, s.rc, []string{s.counterKey}, top).Err(); err != nil {
				return err
			}
			have := make([]*goredis.StringCmd, len(batch))
			if _, err := s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for i, u := range batch {
					have[i] = p.HGet(ctx, s.userKey(u.ID), "name")
				}
				return nil
			}); err != nil && !errors.Is(err, goredis.Nil) {
				return err
			}
			var todo []actors.User
			for i, u := range batch {
				name, err := have[i].Result()
				switch {
				case errors.Is(err, goredis.Nil):
					todo = append(todo, u)
				case err != nil:
					return err
				case name != u.Name:
					return fmt.Errorf("redis: import user %s: %w", u.ID, ErrUserConflict)
				}
			}
			_, err = s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for _, u := range todo {
					p.HSet(ctx, s.userKey(u.ID), "name", u.Name)
				}
				return nil
			})
			return err
		}()
		if errors.Is(err, ErrUserConflict) {
			return err
		}
		if err != nil {
			return fmt.Errorf("redis: import users %s-%s: %w", batch[0].ID, batch[len(batch)-1].ID, err)
		}
	}
	return nil
}

// ReserveUserIDs raises the user id counter to last unless it is already higher, so the
// next CreateUser returns an id above last (for import-legacy: above every id the old
// server handed out, including users it had deleted).
func (s *Store) ReserveUserIDs(ctx context.Context, last uint64) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("redis: reserve user ids: %w", err)
	}
	defer cancel()
	if err := reserveUserIDs.Run(ctx, s.rc, []string{s.counterKey}, strconv.FormatUint(last, 10)).Err(); err != nil {
		return fmt.Errorf("redis: reserve user ids up to %d: %w", last, err)
	}
	return nil
}
