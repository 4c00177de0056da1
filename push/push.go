// Package push is the seam between the room actors' pushes and the WebSocket gateway: a
// push goes from an actors.Publisher to a numbered feed, and from the feed to the gateway,
// on one node and in a cluster alike. Memory (memory.go) is the feed of a single node;
// persistence/redis is the cluster's (its Publisher numbers in Redis, its Subscriber
// delivers by interest). The gateway receives frames one way only: Sink.Deliver.
//
// Like centrifuge's Broker, a feed keeps a per-topic history numbered by seq, so a
// subscriber that reconnects with since recovers what it missed: seqs of a topic are
// consecutive within one life, and a topic's next life (after a deletion) numbers above
// its previous one.
package push

import "context"

// Frame is one numbered push of a topic.
type Frame struct {
	Topic      string
	Seq        uint64
	Tag        string
	Importance int
	Type       int // the push's type, for logs only (0 when the feed does not carry it)
	Body       []byte
}

// Sink receives a feed's frames: per topic in seq order, from one goroutine per topic at
// a time. The gateway is the sink.
type Sink interface {
	// Deliver hands one frame over. A seq at or below the topic's last one is a repeat.
	Deliver(f Frame)
	// EndTopic: the topic was deleted, after its last frame.
	EndTopic(topic string)
	// Resync: the feed may have lost frames of any topic (its position was trimmed away);
	// the sink's clients reconnect with since and recover them from the history.
	Resync()
}

// Feed is where a node's frames come from.
type Feed interface {
	// Attach names the sink the feed delivers to; the gateway calls it once, in New.
	Attach(s Sink)
	// Follow declares a local subscriber of topic; it returns once every frame numbered
	// after it returns reaches the sink. Unfollow withdraws one. A feed that delivers by
	// interest receives a topic only between a first Follow and the matching last Unfollow.
	Follow(ctx context.Context, topic string) error
	Unfollow(topic string)
	// DeliversAll reports that every frame of every topic reaches the sink whether
	// followed or not (a single node's Memory): the sink's own copy of a topic is then its
	// history, and ReadHistory is never needed.
	DeliversAll() bool
	// ReadHistory calls frame, oldest first, for each frame of topic's history with a seq
	// above since, and returns the since it applied: 0 when since is above the topic's
	// current seq (the client saw a previous life of the topic, so everything held is news
	// to it). deleted reports a topic deleted a moment ago whose history is still kept.
	ReadHistory(ctx context.Context, topic string, since uint64,
		frame func(seq uint64, tag string, importance int, body []byte)) (applied uint64, deleted bool, err error)
}
