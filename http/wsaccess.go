package http

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"roomengine/actors"
	"roomengine/http/gateway"
)

// With auth.required a WebSocket client proves who it is before the upgrade. A browser or
// a client library cannot set a header on the upgrade request, so the credential travels
// in the URL, where proxies log it: POST /ws/ticket (with the Bearer token) hands out a
// ticket valid for TicketTTL and one use, and /ws?ticket= takes it. The 30-day token in
// /ws?token= keeps working (legacy). One user holds at most MaxWSConnsPerUser sockets.

// TicketTTL is how long a WebSocket ticket may wait for its one use.
const TicketTTL = 30 * time.Second

// wsTicket is the answer of POST /ws/ticket.
type wsTicket struct {
	Ticket    string `json:"ticket"`
	ExpiresIn int    `json:"expiresIn"` // seconds
}

// tickets issues and redeems WebSocket tickets: "nonce:uid" signed like a token (under a
// key derived from auth.secret, so a ticket is never a token), and each nonce redeemed
// once on this node.
type tickets struct {
	signer    *TokenSigner
	now       func() time.Time
	firstSeen func(ctx context.Context, key string, ttl time.Duration) (bool, error) // nil: this node only

	mu    sync.Mutex
	used  map[string]time.Time // nonce → when it may be forgotten
	sweep time.Time
}

func newTickets(secret []byte, now func() time.Time, firstSeen func(context.Context, string, time.Duration) (bool, error)) *tickets {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("roomengine websocket ticket"))
	s := NewTokenSigner(m.Sum(nil), TicketTTL)
	s.now = now
	return &tickets{signer: s, now: now, firstSeen: firstSeen, used: map[string]time.Time{}}
}

func (t *tickets) issue(uid string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return t.signer.Issue(hex.EncodeToString(b) + ":" + uid)
}

// redeem returns the ticket's user, once (across the deployment with firstSeen: a ticket
// whose single use cannot be checked there is refused, and the client asks for another).
func (t *tickets) redeem(ctx context.Context, ticket string) (string, bool) {
	payload, err := t.signer.Verify(ticket)
	if err != nil {
		return "", false
	}
	nonce, uid, ok := strings.Cut(payload, ":")
	if !ok || uid == "" {
		return "", false
	}
	if !t.useLocally(nonce) {
		return "", false
	}
	if t.firstSeen != nil {
		first, err := t.firstSeen(ctx, "ticket:"+nonce, TicketTTL+time.Second)
		if err != nil || !first {
			return "", false
		}
	}
	return uid, true
}

// useLocally records nonce as used on this node and reports false when it was already.
func (t *tickets) useLocally(nonce string) bool {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.After(t.sweep) {
		for n, until := range t.used {
			if now.After(until) {
				delete(t.used, n)
			}
		}
		t.sweep = now.Add(time.Second)
	}
	if _, seen := t.used[nonce]; seen {
		return false
	}
	t.used[nonce] = now.Add(TicketTTL + time.Second)
	return true
}

// wsTicket answers POST /ws/ticket: a ticket for the token's user.
func (h *Handler) wsTicket(_ context.Context, p params, r *http.Request) (any, error) {
	if !h.opts.AuthRequired || h.tickets == nil {
		return nil, actors.Errorf(actors.CodeBadState, "未启用登录（auth.required），/ws无需凭证")
	}
	uid, err := h.tokenUser(r, p)
	if err != nil {
		return nil, err
	}
	return wsTicket{Ticket: h.tickets.issue(uid), ExpiresIn: int(TicketTTL / time.Second)}, nil
}

// userSockets counts the open sockets of each user.
type userSockets struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func (u *userSockets) enter(uid string) bool {
	if u.max <= 0 {
		return true
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n[uid] >= u.max {
		return false
	}
	u.n[uid]++
	return true
}

func (u *userSockets) leave(uid string) {
	if u.max <= 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n[uid]--; u.n[uid] <= 0 {
		delete(u.n, uid)
	}
}

// signedInGateway puts the token check of auth.required in front of /ws.
func (h *Handler) signedInGateway(next http.Handler) http.Handler {
	if !h.opts.AuthRequired {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var uid string
		if ticket := strings.TrimSpace(q.Get("ticket")); ticket != "" {
			var ok bool
			if uid, ok = h.tickets.redeem(r.Context(), ticket); !ok {
				writeError(w, actors.Errorf(actors.CodeUnauthorized, "推送票据无效、已过期或已使用（POST /ws/ticket 重新获取）"))
				return
			}
		} else {
			var err error
			if uid, err = h.tokenUser(r, params{"token": q.Get("token")}); err != nil {
				writeError(w, err)
				return
			}
		}
		// A user reads its own messages only: those of the room (tag = room id) and those
		// addressed to it (tag = its uid). Without tags it gets exactly these two, not the
		// invitations and answers tagged for other users.
		topic := q.Get("topic")
		var tags []string
		for t := range strings.SplitSeq(q.Get("tags"), ",") {
			if t = strings.TrimSpace(t); t == "" {
				continue
			}
			if t != topic && t != uid {
				writeError(w, actors.Errorf(actors.CodeForbidden, "只能订阅房间消息和发给自己的消息（tags: 房间ID, 自己的uid）"))
				return
			}
			tags = append(tags, t)
		}
		if !h.userSockets.enter(uid) {
			w.Header().Set("Retry-After", "1")
			writeEnvelope(w, http.StatusTooManyRequests, envelope{Code: http.StatusTooManyRequests,
				Message: fmt.Sprintf("该用户的推送连接过多（最多%d个）", h.userSockets.max)})
			return
		}
		// The gateway gives the count back when the socket ends, not when its handler
		// returns (right after the upgrade).
		var once sync.Once
		r = gateway.OnConnEnd(r, func() { once.Do(func() { h.userSockets.leave(uid) }) })
		if len(tags) == 0 {
			r = r.Clone(r.Context())
			q.Set("tags", topic+","+uid)
			r.URL.RawQuery = q.Encode()
		}
		next.ServeHTTP(w, r)
	})
}
