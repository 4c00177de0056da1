package redis

import (
	"context"

	"roomengine/push"
)

// Subscriber is a node's push.Feed in a cluster: the pushes every node's Publisher numbers
// in Redis reach this node's gateway through it, and since is replayed from the topics'
// shared histories.
type Subscriber struct {
	store *Store
	sink  push.Sink
}

var _ push.Feed = (*Subscriber)(nil)

// NewSubscriber returns the node's subscriber; the gateway attaches itself as its sink.
func (s *Store) NewSubscriber() *Subscriber { return &Subscriber{store: s} }

// Attach sets the sink.
func (sub *Subscriber) Attach(s push.Sink) { sub.sink = s }

// Sink is the attached sink (the node's gateway).
func (sub *Subscriber) Sink() push.Sink { return sub.sink }

// Follow and Unfollow do nothing yet: the node's feed follower delivers every push.
func (sub *Subscriber) Follow(context.Context, string) error { return nil }
func (sub *Subscriber) Unfollow(string)                      {}

// DeliversAll is false: a client's since is replayed from the shared history, which holds
// frames numbered before this node saw the topic.
func (sub *Subscriber) DeliversAll() bool { return false }

// ReadHistory reads the topic's shared history (Store.ReadHistory).
func (sub *Subscriber) ReadHistory(ctx context.Context, topic string, since uint64,
	frame func(seq uint64, tag string, importance int, body []byte)) (uint64, bool, error) {
	return sub.store.ReadHistory(ctx, topic, since, frame)
}
