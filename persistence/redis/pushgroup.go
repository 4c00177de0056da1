package redis

import (
	"context"
	"errors"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
)

// A batch's pushes go to Redis as one script call per run of consecutive pushes that share a
// topic and a fence: a busy room's comments of one batch are one call, not one each. What a call does
// once — the dedup marker, the fence and membership checks, the topic's life — it then pays
// once per batch instead of once per push, and Redis runs one script instead of dozens
// (issue 23: the push script was most of Redis's CPU per comment). Every call touches one
// topic's slot.

var errUnexpectedReply = errors.New("push script: unexpected reply")

// pushCall is one queued script call and the batch indexes of the ops it carries.
type pushCall struct {
	cmd *goredis.Cmd
	ops []int
}

// results is the script's answer per op: the push's seq, 0 refused (fence or membership),
// -1 applied before, -2 dropped (an unowned push to a deleted topic). A deletion answers
// one of 1, 0 or -1.
func (c pushCall) results() ([]int64, error) {
	v, err := c.cmd.Result()
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case int64:
		return []int64{v}, nil
	case []any:
		out := make([]int64, len(v))
		for i, x := range v {
			n, ok := x.(int64)
			if !ok {
				return nil, errUnexpectedReply
			}
			out[i] = n
		}
		return out, nil
	}
	return nil, errUnexpectedReply
}

// pushMode is what the push script checks before numbering a group's pushes. What it
// cannot check in the topic's slot the publisher checked just before (precheck): the
// sender's membership for an unfenced push, and a fence of another entity than the topic's.
func pushMode(push actors.Push) string {
	switch {
	case push.IfLive:
		return "2" // that the topic's room is live
	case sameSlotFence(push):
		return "1" // the fence's owner hash
	default:
		return "0" // nothing more
	}
}

// queueCalls adds the batch's script calls to pipe in queue order: a run of consecutive
// pushes of one topic with the same fence and mode is one call; a deletion is a call of its
// own. Runs keep the order of everything, across topics too (what one publisher sends
// reaches a node subscribed to several topics in Publish order), and a busy room's pushes
// of one batch are consecutive in the common case that matters — many comments to one room.
func (p *Publisher) queueCalls(ctx context.Context, pipe goredis.Pipeliner, batch []pushOp, idx []int, inc, after string) []pushCall {
	type group struct {
		key  string // topic, mode and fence: what the ops share ("" for a deletion)
		ops  []int
		args []any
	}
	var groups []*group
	for _, i := range idx {
		op := batch[i]
		if op.drop {
			groups = append(groups, &group{ops: []int{i}})
			continue
		}
		f := op.p.Fence
		key := op.p.Topic + "|" + pushMode(op.p) + "|" + f.Kind + "|" + f.ID + "|" + f.Node +
			"|" + strconv.FormatInt(f.Epoch, 10)
		var g *group
		if n := len(groups); n > 0 && groups[n-1].key == key {
			g = groups[n-1]
		} else {
			g = &group{key: key}
			groups = append(groups, g)
		}
		a := "-"
		if op.p.Changed {
			a = after
		}
		g.ops = append(g.ops, i)
		g.args = append(g.args, op.n, op.p.Tag, op.p.Importance, op.p.Body, a)
	}
	calls := make([]pushCall, len(groups))
	for j, g := range groups {
		first := batch[g.ops[0]]
		if first.drop {
			calls[j] = pushCall{ops: g.ops, cmd: topicDelScript.EvalSha(ctx, pipe, p.deleteKeys(first.p.Topic), first.n,
				dedupTTL.Milliseconds(), "", "", "", p.nonce, topicGrace.Milliseconds())}
			continue
		}
		calls[j] = pushCall{ops: g.ops, cmd: p.evalGroup(ctx, pipe, first, inc, g.args)}
	}
	return calls
}

// evalGroup queues one push script call for the ops whose per-op arguments are opArgs, all
// of first's topic, fence and mode.
func (p *Publisher) evalGroup(ctx context.Context, pipe goredis.Pipeliner, first pushOp, inc string, opArgs []any) *goredis.Cmd {
	t := first.p.Topic
	keys := []string{topicKey(p.prefix, "seq", t), topicKey(p.prefix, "topic", t), topicKey(p.prefix, "pushdedup", t),
		topicKey(p.prefix, "push", t)}
	f := first.p.Fence
	mode := pushMode(first.p)
	switch mode {
	case "2":
		// The topic is the room's id: the room's snapshot shares the topic's hash tag.
		keys = append(keys, p.roomKey(t))
	case "1":
		keys = append(keys, ownerKeyOf(p.prefix, f.Kind, f.ID))
	default:
		keys = append(keys, keys[0]) // unused, and in the topic's slot
	}
	args := make([]any, 0, 7+len(opArgs))
	args = append(args, dedupTTL.Milliseconds(), p.nonce, mode, f.Node, strconv.FormatInt(f.Epoch, 10), p.historyCap, inc)
	args = append(args, opArgs...)
	return pushScript.EvalSha(ctx, pipe, keys, args...)
}

// pushScript numbers a group of pushes of one topic.
// KEYS: seq, history, dedup hash, channel, and the fence's owner hash (mode "1"), the room's
// snapshot (mode "2") or the seq key again (unused).
// ARGV: dedup TTL, publisher nonce, mode, the fence's node and epoch (mode "1"), history cap,
// the publisher's incarnation ("" not checked); then five per push: queue number, tag,
// importance, body, after (the room-change feed id the push follows, or "-").
// Modes: "1" a push fenced by its topic's room: refused unless the owner hash still names the
// fence's node and epoch and the publisher's incarnation (a fence taken by an earlier
// incarnation of the node no longer counts; it is not refused merely because its node's
// membership lapsed — the member key is in another slot: until another node claims the
// entity, raising the epoch, nobody else acts for it); "2" numbered only while the topic's
// room exists and has not ended (a comment served by a node that does not own the room);
// "0" nothing more. The publisher checked the sender's membership of unfenced pushes, and
// fences in other slots, just before (precheck).
// Returns one result per push: its seq, 0 when refused, -1 when applied before (a resent
// batch), -2 when a mode "2" push found its room gone or ended.
var pushScript = goredis.NewScript(`
local count = (#ARGV - 7) / 5
local hw = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
local out = {}
local fresh = 0
for i = 1, count do
  if tonumber(ARGV[7 + 5 * (i - 1) + 1]) <= hw then out[i] = -1 else out[i] = 0; fresh = fresh + 1 end
end
if fresh == 0 then return out end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[7 + 5 * (count - 1) + 1])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
if ARGV[3] == '1' then
  local o = redis.call('HMGET', KEYS[5], 'node', 'epoch', 'inc')
  if o[1] ~= ARGV[4] or o[2] ~= ARGV[5] or not o[3] or o[3] == '' then return out end
  if ARGV[7] ~= '' and o[3] ~= ARGV[7] then return out end
elseif ARGV[3] == '2' then
  local room = redis.call('GET', KEYS[5])
  if not room or cjson.decode(room).status == ` + strconv.Itoa(actors.StatusEnded) + ` then
    for i = 1, count do if out[i] == 0 then out[i] = -2 end end
    return out
  end
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2])))
elseif ttl >= 0 then
  -- A push to a topic deleted less than a minute ago: its next life. The seq goes on
  -- (above the previous life), the previous life's history goes. A mode "2" push (a
  -- comment served by a node that does not own the room) never starts a next life.
  if ARGV[3] == '2' then
    for i = 1, count do if out[i] == 0 then out[i] = -2 end end
    return out
  end
  redis.call('PERSIST', KEYS[1])
  redis.call('DEL', KEYS[2])
end
-- One INCRBY numbers the whole run, one PUBLISH carries it to the subscribed nodes.
local next = tonumber(redis.call('INCRBY', KEYS[1], fresh)) - fresh + 1
local msg = {}
for i = 1, count do
  if out[i] == 0 then
    local b = 7 + 5 * (i - 1)
    local seq = string.format('%.0f', next)
    next = next + 1
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 's', seq, 'g', ARGV[b + 2], 'i', ARGV[b + 3], 'b', ARGV[b + 4])
    msg[#msg + 1] = 'P ' .. seq .. ' ' .. ARGV[b + 3] .. ' ' .. ARGV[b + 5] .. ' ' .. #ARGV[b + 2] .. ' ' .. #ARGV[b + 4] .. '\n'
    msg[#msg + 1] = ARGV[b + 2]
    msg[#msg + 1] = ARGV[b + 4]
    out[i] = tonumber(seq)
  end
end
redis.call('PUBLISH', KEYS[4], table.concat(msg))
return out
`)
