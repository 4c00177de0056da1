package redis

import (
	"context"
	"errors"
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
//
// An entity deleted by a node that died between the fenced delete and its due and feed step
// (fenced.go) would stay due for ever, woken every sweep. Its owner hash tells: only a
// delete gives an owner hash a TTL. Due runs the missed step for such entries — removing
// the deadline and, for a room, appending the deletion the read models missed — guarded by
// the deleting epoch like the step itself, and leaves them out.
func (m *Member) Due(ctx context.Context, now time.Time, limit int) ([]actors.DueEntity, error) {
	out, err := run(ctx, m, func(ctx context.Context) ([]actors.DueEntity, error) {
		zs, err := m.s.rc.ZRangeByScoreWithScores(ctx, m.s.dueKey, &goredis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(limit),
		}).Result()
		if err != nil || len(zs) == 0 {
			return nil, err
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
		return m.s.dropDeleted(ctx, out)
	})
	if err != nil {
		return nil, fmt.Errorf("redis: due: %w", err)
	}
	return out, nil
}

// dropDeleted completes the due and feed step of the entries whose owner hash has a TTL
// (deleted: Due above) and returns the others.
func (s *Store) dropDeleted(ctx context.Context, due []actors.DueEntity) ([]actors.DueEntity, error) {
	ttls := make([]*goredis.DurationCmd, len(due))
	epochs := make([]*goredis.StringCmd, len(due))
	_, err := s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, d := range due {
			ttls[i] = p.PTTL(ctx, s.ownerKey(d.Kind, d.ID))
			epochs[i] = p.HGet(ctx, s.ownerKey(d.Kind, d.ID), "epoch")
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, err
	}
	kept := due[:0]
	for i, d := range due {
		if ttls[i].Val() <= 0 || epochs[i].Val() == "" {
			kept = append(kept, d)
			continue
		}
		feed := ""
		if d.Kind == actors.KindRoom {
			feed = "roomdel"
		}
		err := guardDue.Run(ctx, s.rc, []string{s.dueKey, s.fencesKey, s.feedKey, s.goneKey},
			d.Kind+":"+d.ID, epochs[i].Val(), "", feed, d.ID, "", feedMaxLen, "1", ownerKeep).Err()
		if err != nil {
			return nil, err
		}
	}
	return kept, nil
}
