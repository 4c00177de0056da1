package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ErrNotReplicated is the answer to a write that the primary applied but that fewer than
// Options.WaitReplicas replicas confirmed within Options.Timeout. Its outcome is unknown to
// the caller, as after a timeout: a failover now could lose it, so it must not be reported
// as saved.
var ErrNotReplicated = errors.New("redis: write not confirmed by enough replicas in time")

// replicaWait is a go-redis hook that makes every write durable on `replicas` replicas
// before the caller sees it succeed. A promoted replica then holds every write a client
// was told about: no acknowledged user, room or call is lost, and no owner's epoch goes
// backwards (the claim that raised it was waited for like any other write).
//
// WAIT counts the writes of the connection it is sent on, and the store's connections are
// pooled, so after a write the hook sends one more small write and WAIT together, in one
// round trip on one connection: the primary's replication offset after that write is at
// least the offset of every write acknowledged before it, on any connection.
//
// On a Redis Cluster each master replicates its own slots, so the wait goes to the master
// of each slot written, and the marker write is to a key of that slot ({p}:replicated:{T},
// T a tag of the slot: hashslot.go).
type replicaWait struct {
	rdb      goredis.UniversalClient
	replicas int
	timeout  time.Duration
	markKey  string
}

// waitingKey marks the hook's own pipeline so that it does not wait for itself.
type waitingKey struct{}

func (w *replicaWait) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (w *replicaWait) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		if !wrote(err) || !isWrite(cmd) || ctx.Value(waitingKey{}) != nil {
			return err
		}
		if werr := w.waitFor(ctx, []goredis.Cmder{cmd}); werr != nil {
			return werr
		}
		return err
	}
}

func (w *replicaWait) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		if ctx.Value(waitingKey{}) != nil {
			return err
		}
		var written []goredis.Cmder
		for _, c := range cmds {
			if wrote(c.Err()) && isWrite(c) {
				written = append(written, c)
			}
		}
		if len(written) > 0 {
			if werr := w.waitFor(ctx, written); werr != nil {
				return werr
			}
		}
		return err
	}
}

// waitFor waits until the replicas have the writes cmds made: on the one primary, or on
// the master of each slot they wrote on a Redis Cluster.
func (w *replicaWait) waitFor(ctx context.Context, cmds []goredis.Cmder) error {
	cc, ok := w.rdb.(*goredis.ClusterClient)
	if !ok {
		return w.wait(ctx, w.rdb, w.markKey)
	}
	seen := map[*goredis.Client]bool{}
	for _, c := range cmds {
		key := firstKey(c)
		if key == "" {
			continue
		}
		marker := w.markKey + ":{" + slotTags()[keySlot(key)] + "}"
		master, err := cc.MasterForKey(ctx, marker)
		if err != nil {
			return fmt.Errorf("%w: waiting for %d: %v", ErrNotReplicated, w.replicas, err)
		}
		if seen[master] {
			continue
		}
		seen[master] = true
		if err := w.wait(ctx, master, marker); err != nil {
			return err
		}
	}
	return nil
}

// firstKey is the first key a command names ("" for none): where a Redis Cluster sent it.
func firstKey(cmd goredis.Cmder) string {
	args := cmd.Args()
	switch strings.ToLower(cmd.Name()) {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
		if len(args) > 3 && fmt.Sprint(args[2]) != "0" {
			return fmt.Sprint(args[3])
		}
		return ""
	case "multi", "exec", "ping", "wait":
		return ""
	}
	if len(args) > 1 {
		return fmt.Sprint(args[1])
	}
	return ""
}

// wait sends the marker write and WAIT in one round trip through c; WAIT blocks on the
// primary until the replicas acknowledge or the time left runs out.
func (w *replicaWait) wait(ctx context.Context, c goredis.UniversalClient, markKey string) error {
	d := w.timeout
	if dl, ok := ctx.Deadline(); ok {
		// Leave the reply time to come back before the caller's deadline.
		d = min(d, time.Until(dl)-w.timeout/10)
	}
	if d < time.Millisecond {
		return ErrNotReplicated
	}
	ctx = context.WithValue(ctx, waitingKey{}, true)
	var acked *goredis.Cmd
	_, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.Set(ctx, markKey, "1", time.Minute)
		acked = p.Do(ctx, "WAIT", w.replicas, d.Milliseconds())
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: waiting for %d: %v", ErrNotReplicated, w.replicas, err)
	}
	if n, err := acked.Int64(); err != nil || n < int64(w.replicas) {
		return fmt.Errorf("%w (%d of %d within %v)", ErrNotReplicated, n, w.replicas, d.Round(time.Millisecond))
	}
	return nil
}

// wrote reports whether a command succeeded (a nil reply, redis.Nil, is an answer too), so
// its caller is about to be told so. A command that failed is reported as failed anyway,
// whether or not it changed anything.
func wrote(err error) bool { return err == nil || errors.Is(err, goredis.Nil) }

// readOnly lists the commands the store sends that never write. Everything else — scripts
// included, since most of the store's scripts write — counts as a write; a read counted
// as one costs a round trip, a write counted as a read would be acknowledged unreplicated.
var readOnly = map[string]bool{
	"get": true, "mget": true, "hget": true, "hgetall": true, "hlen": true, "hscan": true,
	"smembers": true, "scard": true, "sismember": true, "scan": true, "exists": true,
	"zrangebyscore": true, "zrange": true, "xrange": true, "xrevrange": true, "xread": true,
	"xinfo": true, "ping": true, "info": true, "ttl": true, "pttl": true, "type": true,
	"script": true, "client": true, "hello": true, "auth": true, "select": true,
	"multi": true, "exec": true, "wait": true, "evalsha_ro": true, "eval_ro": true,
	"time": true, "dbsize": true, "llen": true, "lrange": true, "strlen": true,
}

func isWrite(cmd goredis.Cmder) bool { return !readOnly[strings.ToLower(cmd.Name())] }
