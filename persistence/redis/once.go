package redis

import (
	"context"
	"fmt"
	"time"
)

// FirstSeen records key for ttl and reports whether it was not recorded already: one SET NX
// under {p}:once:, so every node of a deployment agrees on what was seen first (a signed
// callback replayed to another node, a WebSocket ticket used on two nodes). The key should
// be a digest: it is stored as given.
func (s *Store) FirstSeen(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	ok, err := s.rc.SetNX(ctx, s.prefix+"once:"+key, 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("redis: once: %w", err)
	}
	return ok, nil
}
