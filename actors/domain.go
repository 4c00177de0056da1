// Package actors is the domain of roomengine: live rooms, co-streaming calls and the user
// registry, written as pure state machines driven by thin protoactor actors. It declares the
// small interfaces it needs from the outside world (Store, Publisher, Clock, URLs) and imports
// none of the packages that implement them.
package actors

import (
	"cmp"
	"context"
	"errors"
	"time"
)

// User is immutable once created: the id is a decimal string allocated from 1 upwards.
type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// CompareIDs orders user ids numerically ("9" before "10") without parsing, so ids of any
// length compare right; ids that are not canonical decimals sort after them, by text.
func CompareIDs(a, b string) int {
	na, nb := IsDecimalID(a), IsDecimalID(b)
	switch {
	case na && nb:
		return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
	case na:
		return -1
	case nb:
		return 1
	default:
		return cmp.Compare(a, b)
	}
}

// IsDecimalID reports whether s is a canonical decimal (no sign, no leading zero), the only
// form user ids take.
func IsDecimalID(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Room statuses as the old clients know them.
const (
	StatusCreated    = 0  // created, not (or no longer) publishing
	StatusPublishing = 1  // the host's stream is live
	StatusEnded      = 2  // ended; kept only until its topic is deleted
	StatusCostream   = 10 // made by the server for a viewer who joined a co-streaming call
)

// Room types.
const (
	TypeViewer = 1
	TypeHost   = 2
)

// Room is the durable snapshot of one live room. Everything a room actor needs after a
// restart is here, including its deadlines as absolute times.
type Room struct {
	ID          string    `json:"id"`
	UID         string    `json:"uid"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreateTime  time.Time `json:"createTime"`
	Status      int       `json:"status"`
	Type        int       `json:"type"`
	// Publishing is true while the stream is live. For host rooms it mirrors Status 1; a
	// co-stream room keeps Status 10 and records publishing here.
	Publishing  bool `json:"publishing"`
	IsMixReady  bool `json:"isMixReady"`
	IsMixed     bool `json:"isMixed"`
	MixedStatus int  `json:"mixedStatus"`
	// PushURL is signed once at creation (auth_key expiry), so it is stored, not derived.
	PushURL string `json:"pushUrl"`
	// NoPublishDeadline: the room ends if it is not publishing by then. Zero when none.
	NoPublishDeadline time.Time `json:"noPublishDeadline,omitzero"`
	// TopicDeleteDeadline: set on an ended room; its topic is deleted then. Zero when none.
	TopicDeleteDeadline time.Time `json:"topicDeleteDeadline,omitzero"`
	// CallID names the co-streaming call the room is in, empty when none.
	CallID string `json:"callId,omitempty"`
	// CallHostRooms are the host rooms of that call: where its 9/10 pushes go.
	CallHostRooms []string `json:"callHostRooms,omitempty"`
	// LastMixResult is the last MixResult callback applied to the room outside a call
	// (main|mix|code), so a repeat changes and pushes nothing.
	LastMixResult string `json:"lastMixResult,omitempty"`
	// EndedCallPeer is the other room of the last call this room left. A MixResult for the
	// two of them that arrives after the call ended (late, or redelivered) is about a mix
	// that was stopped, so it changes nothing: the outcome does not depend on whether the
	// callback came before or after the close.
	EndedCallPeer string `json:"endedCallPeer,omitempty"`
}

// fromEndedCall reports whether n is about the pair of this room and the peer of the call
// it left last.
func (r *Room) fromEndedCall(n MixResultNotice) bool {
	return r.EndedCallPeer != "" && (n.MainMixStream == r.EndedCallPeer || n.MixStream == r.EndedCallPeer) &&
		(n.MainMixStream == r.ID || n.MixStream == r.ID)
}

// Ended reports whether the room no longer exists for the API (it only waits for its
// topic deletion).
func (r *Room) Ended() bool { return r.Status == StatusEnded }

// Store persists snapshots. Every method is safe for concurrent use; a nil error means the
// change is durable. Implementations: persistence/embedded, persistence/redis.
type Store interface {
	// CreateUser allocates the next user id atomically and durably stores the user. Ids are
	// never reused, not even after Reset or a restart.
	CreateUser(ctx context.Context, name string) (User, error)
	// GetUser returns ErrNotFound for an unknown id.
	GetUser(ctx context.Context, id string) (User, error)

	// SaveRoom upserts a room snapshot.
	SaveRoom(ctx context.Context, room Room) error
	// DeleteRoom removes a room snapshot and its audience.
	DeleteRoom(ctx context.Context, roomID string) error
	// LoadRooms returns every stored room snapshot (used at start-up).
	LoadRooms(ctx context.Context) ([]Room, error)

	// AddAudience and RemoveAudience are idempotent.
	AddAudience(ctx context.Context, roomID string, member User) error
	RemoveAudience(ctx context.Context, roomID, uid string) error
	// LoadAudience returns the members of a room's audience ordered by numeric id.
	LoadAudience(ctx context.Context, roomID string) ([]User, error)

	// SaveCall upserts a call snapshot; DeleteCall is idempotent; LoadCalls returns every
	// stored call (used at start-up).
	SaveCall(ctx context.Context, call Call) error
	DeleteCall(ctx context.Context, callID string) error
	LoadCalls(ctx context.Context) ([]Call, error)

	// Reset wipes users, rooms, audiences and calls (key == ""), or the one user or room
	// named by key. The user id counter survives, so ids are never reused.
	Reset(ctx context.Context, key string) error
	// Ping reports whether the store can serve requests now.
	Ping(ctx context.Context) error
	Close() error
}

// ErrNotFound is returned by a Store for an unknown key.
var ErrNotFound = errors.New("not found")

// Push is one message for the clients of a topic. Body is the JSON object
// {"data": {...}, "type": N, "time": ms} shared by every backend.
type Push struct {
	Topic      string
	Tag        string
	Importance int
	Type       int
	Body       []byte
	// Fence is the ownership token of the room or call that sends the push (zero in
	// single-node mode, and for pushes no entity owns, such as invitations). A cluster
	// backend refuses a push whose fence is stale, so a node that lost a room sends nothing
	// more for it.
	Fence Fence
	// Changed says the push follows a change of its room that the room list shows (a room
	// started, ended): a cluster delivers it on a node only once that node's read model has
	// the change.
	Changed bool
	// IfLive: number the push only if the room of its topic exists and has not ended (a
	// comment or like served by a node that does not own the room, comment_local.go).
	IfLive bool
}

// Publisher delivers pushes. Publish must not block on the network: a backend that talks
// to a remote service queues and retries on its own. Pushes to one topic are delivered in
// the order Publish was called.
type Publisher interface {
	Publish(p Push)
	// CreateTopic and DeleteTopic follow a room's life (MNS creates and deletes topics; the
	// WebSocket gateway drops its history).
	CreateTopic(topic string)
	DeleteTopic(topic string)
}

// Clock is the time source of every actor, so tests can drive timers.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d. The returned stop function prevents
	// the call if it has not started yet; callers still tolerate a late call.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// URLs builds the URLs handed to clients (docs/api.md, The room object).
type URLs interface {
	// PushURL is the RTMP push URL, signed with auth_key when configured.
	PushURL(roomID string, now time.Time) string
	// PlayURLs are the mixed-stream play URLs: FLV, HLS, RTMP.
	PlayURLs(roomID string) (flv, m3u8, rtmp string)
	// ShortDelayPlayURL is the unmixed low-latency URL a co-streaming partner plays.
	ShortDelayPlayURL(roomID string) string
	// MixPlayURL is the play URL of a stream the CDN mix returned.
	MixPlayURL(streamName string) string
	// TopicLocation is where clients subscribe to a room's topic.
	TopicLocation(topic string) string
}

// SystemClock is the real clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time { return time.Now() }

func (SystemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// MixRequest names the two streams of one CDN mix (docs/aliyun.md): the main stream (a host room)
// and the stream mixed into it (the partner's room). Template is the layout
// (picture_in_picture | side_by_side); it is used by Start only.
type MixRequest struct {
	MainStream string
	MixStream  string
	Template   string
	// MixID (Stop only) is the id the Start answered (MixStarted.ID), empty when the Start
	// had no answer (a timeout) or the driver has no ids (mix: aliyun, simulator).
	MixID string
	// Adopt (Start only) says the leg's previous Start may have created the mix (it failed
	// without a definite refusal, or the process restarted while it was in flight): a
	// driver whose Start is not idempotent reuses a running mix instead of making another.
	Adopt bool
	// Resume (Start only) restarts a mix that had started before this process (re)gained
	// the call (EngineConfig.ResumeMixes): the call does not wait for the answer, so a
	// driver reports a failure of it through its own events (push 14).
	Resume bool
}

// MixStarted is what a successful Start returned: the stream names the mix is playable
// under (MixStreamsInfoList of the CDN API) and, for drivers that have one, the mix's id (the
// Live API's MixStreamId), which the call stores and hands to Stop.
type MixStarted struct {
	Streams []string
	ID      string
}

// Mixer starts and stops CDN mixes (Aliyun CDN OpenAPI, or the simulator). Calls block for
// up to the configured Aliyun timeout, so actors make them off their mailbox and receive the
// result as a message. A failure is an *Error with code 3000, 3400, 3404 or 3500 (the CDN
// answered an error) or 503 (timeout, connection refused, or the circuit breaker is open).
type Mixer interface {
	StartMix(ctx context.Context, req MixRequest) (MixStarted, error)
	StopMix(ctx context.Context, req MixRequest) error
}

// MixResultNotice is Aliyun's MixResult callback (docs/api.md, /ali/mix/status/notify).
type MixResultNotice struct {
	MainMixDomain, MainMixApp, MainMixStream string
	MixDomain, MixApp, MixStream             string
	MixType, MixTemplate, Event              string
	Code, Message                            string
}

// MixEvent is a callback of the Live API's mix (CallbackConfig, /ali/mix/callback), as far
// as it was recognised: Aliyun does not document its body. It names its mix by MixID (the
// MixStreamId) or, failing that, by MainRoom (the output stream without the template
// suffix).
type MixEvent struct {
	MixID, MainRoom      string
	Event, Code, Message string
	// Failed marks an event recognised as the mix failing; ErrCode is its envelope code
	// (3000/3400/3404/3500) for push 14.
	Failed  bool
	ErrCode int
}

// Publishers is several backends as one (push: websocket,mns). Each backend queues on its
// own, so a slow one does not hold up the others.
type Publishers []Publisher

// Syncer is a Publisher that queues pushes on their way to a shared store (the cluster's
// feed): Sync returns once everything queued before it has been written there.
type Syncer interface {
	Sync(ctx context.Context) error
}

// Sync waits for every backend that queues toward a shared store.
func (ps Publishers) Sync(ctx context.Context) error {
	for _, b := range ps {
		if s, ok := b.(Syncer); ok {
			if err := s.Sync(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

func (ps Publishers) Publish(p Push) {
	for _, b := range ps {
		b.Publish(p)
	}
}

func (ps Publishers) CreateTopic(topic string) {
	for _, b := range ps {
		b.CreateTopic(topic)
	}
}

func (ps Publishers) DeleteTopic(topic string) {
	for _, b := range ps {
		b.DeleteTopic(topic)
	}
}
