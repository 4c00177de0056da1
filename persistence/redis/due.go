package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
)

// Deadlines every node can see. A room's timers (no-publish, topic delete) and a call's
// unfinished Start or Stop live in the owning actor, which dies with its node; the zset
// {p}:due, written by the fenced write that changes them (fenced.go), lets any node's
// sweeper find what has fallen due and wake the entity through normal routing, where a
// new owner re-arms the timers from the snapshot.

// roomDue is the room's member score: the earliest of its deadlines in unix ms, "" when it
// has none (the fenced write then removes it from the set).
func roomDue(r actors.Room) string {
	var at time.Time
	for _, d := range []time.Time{r.NoPublishDeadline, r.TopicDeleteDeadline} {
		if !d.IsZero() && (at.IsZero() || d.Before(at)) {
			at = d
		}
	}
	if at.IsZero() {
		return ""
	}
	return strconv.FormatInt(at.UnixMilli(), 10)
}

// callDue is due at once while a Start or Stop is in flight: if the owner dies before the
// answers arrive, the next owner must re-issue or reconcile them. In any other phase the
// call waits for callbacks, which are routed to it anyway.
func callDue(c actors.Call, now time.Time) string {
	if c.Phase == actors.PhaseStarting || c.Phase == actors.PhaseClosing {
		return strconv.FormatInt(now.UnixMilli(), 10)
	}
	return ""
}

// Due returns up to limit entities whose deadline is at or before now, earliest first.
func (m *Member) Due(ctx context.Context, now time.Time, limit int) ([]actors.DueEntity, error) {
	zs, err := run(ctx, m, func(ctx context.Context) ([]goredis.Z, error) {
		return m.s.rc.ZRangeByScoreWithScores(ctx, m.s.dueKey, &goredis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(limit),
		}).Result()
	})
	if err != nil {
		return nil, fmt.Errorf("redis: due: %w", err)
	}
	out := make([]actors.DueEntity, 0, len(zs))
	for _, z := range zs {
		member, _ := z.Member.(string)
		kind, id, ok := strings.Cut(member, ":")
		if !ok {
			continue
		}
		out = append(out, actors.DueEntity{Kind: kind, ID: id, At: time.UnixMilli(int64(z.Score))})
	}
	return out, nil
}
