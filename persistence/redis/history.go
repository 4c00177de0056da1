package redis

import (
	"context"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"
)

// ReadHistory calls frame, oldest first, for each push of topic's shared history
// ({p}:topic:{topic}) with a seq above since, and returns the since it applied: 0 when
// since is above the topic's current seq (the client saw a previous life of the topic,
// so everything held is news to it). deleted reports a topic deleted less than a minute
// ago (its keys expire). It is the gateway's HistorySource in a cluster.
func (s *Store) ReadHistory(ctx context.Context, topic string, since uint64,
	frame func(seq uint64, tag string, importance int, body []byte)) (applied uint64, deleted bool, err error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, false, err
	}
	defer cancel()
	keys := []string{topicKey(s.prefix, "seq", topic), topicKey(s.prefix, "topic", topic)}
	res, err := historyScript.Run(ctx, s.rc, keys, strconv.FormatUint(since, 10)).Slice()
	if err != nil {
		return 0, false, fmt.Errorf("redis: read history of %s: %w", topic, err)
	}
	if len(res) != 3 {
		return 0, false, fmt.Errorf("redis: read history of %s: unexpected reply", topic)
	}
	applied, _ = strconv.ParseUint(fmt.Sprint(res[0]), 10, 64)
	deleted = res[1] == int64(1)
	entries, _ := res[2].([]any)
	// The script collected newest first, so it could stop at since.
	for i := len(entries) - 1; i >= 0; i-- {
		seq, tag, imp, body, ok := historyEntry(entries[i])
		if ok {
			frame(seq, tag, imp, body)
		}
	}
	return applied, deleted, nil
}

// historyEntry reads one entry's field list (s, g, i, b in any order).
func historyEntry(e any) (seq uint64, tag string, importance int, body []byte, ok bool) {
	fields, _ := e.([]any)
	var seqOK bool
	for j := 0; j+1 < len(fields); j += 2 {
		v, _ := fields[j+1].(string)
		switch fields[j] {
		case "s":
			n, err := strconv.ParseUint(v, 10, 64)
			seq, seqOK = n, err == nil
		case "g":
			tag = v
		case "i":
			importance, _ = strconv.Atoi(v)
		case "b":
			body = []byte(v)
		}
	}
	return seq, tag, importance, body, seqOK
}

// historyScript: KEYS seq, history; ARGV since. Returns {since applied, deleted (0/1),
// field lists of the entries above since, newest first}. The filtering runs in Redis so a
// reconnect storm reads only what the clients missed, not whole histories.
var historyScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local since = tonumber(ARGV[1])
if not cur or since > tonumber(cur) then since = 0 end
local deleted = 0
if redis.call('PTTL', KEYS[1]) >= 0 then deleted = 1 end
local out = {}
for _, e in ipairs(redis.call('XREVRANGE', KEYS[2], '+', '-')) do
  local f = e[2]
  local s
  for j = 1, #f, 2 do if f[j] == 's' then s = tonumber(f[j + 1]) end end
  if s and s <= since then break end
  out[#out + 1] = f
end
if since == 0 then return {'0', deleted, out} end
return {ARGV[1], deleted, out}
`)
