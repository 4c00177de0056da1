package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// ServeHTTP handles GET /ws?topic=ROOMID&tags=T1,T2&since=SEQ. The Origin is not checked,
// on purpose: native mobile clients send none, and the channel carries only what the room
// broadcasts to anyone who knows its topic (the same trust model as the MNS WebSocket
// endpoint it replaces): there is no cookie-borne authority a cross-site page could borrow.
// No extension or subprotocol is negotiated. Parameter errors are
// answered with the usual JSON envelope before any upgrade, so old clients and curl alike
// see what was wrong; so are subscriptions over a limit (limits.go), with HTTP 400 or 429.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// What the caller took for this connection (OnConnEnd) is given back when the handler
	// returns, unless the connection was served: then when the connection ends.
	callerRelease, _ := r.Context().Value(connEndKey{}).(func())
	if callerRelease == nil {
		callerRelease = func() {}
	}
	handedOver := false
	defer func() {
		if !handedOver {
			callerRelease()
		}
	}()
	q := r.URL.Query()
	topic := strings.TrimSpace(q.Get("topic"))
	if topic == "" {
		writeEnvelope(w, http.StatusOK, 20001, "topic不能为空")
		return
	}
	if rf := g.checkTopic(topic); rf != nil {
		g.refuse(w, rf)
		return
	}
	var since uint64
	replay := false
	// An empty since is treated as absent, like an empty tags, because URL builders
	// commonly leave the key in.
	if s := strings.TrimSpace(q.Get("since")); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeEnvelope(w, http.StatusOK, 20001, "since必须是非负整数")
			return
		}
		since, replay = n, true
	}
	tags, rf := g.parseTags(q.Get("tags"))
	if rf != nil {
		g.refuse(w, rf)
		return
	}

	if !isUpgrade(r) {
		writeEnvelope(w, http.StatusUpgradeRequired, 426, "需要WebSocket升级")
		return
	}
	if !g.admit() {
		writeEnvelope(w, http.StatusServiceUnavailable, 503, "服务正在关闭")
		return
	}
	// What admit and enter took is given back when the handler returns, unless the
	// connection was served: it then belongs to the connection, which gives it back when
	// it ends (serve), long after this handler has returned.
	served := false
	defer func() {
		if !served {
			g.running.Done()
		}
	}()
	addr := clientAddr(r)
	if rf := g.enter(addr); rf != nil {
		g.refuse(w, rf)
		return
	}
	defer func() {
		if !served {
			g.leave(addr)
		}
	}()

	if he := checkHandshake(r); he != nil {
		// RFC 6455 4.4: the versions the server speaks, whatever was wrong.
		w.Header().Set("Sec-WebSocket-Version", "13")
		writeEnvelope(w, he.status, he.status, he.message)
		return
	}

	// Subscribe before the handshake completes: a client that sees its upgrade succeed and
	// then causes a push (a comment, say) must receive it.
	c, t, missed, err := g.subscribeAny(r.Context(), topic, newTagSet(tags), since, replay)
	if err != nil {
		g.log.Warn("push history unavailable", "topic", topic, "err", err)
		writeEnvelope(w, http.StatusServiceUnavailable, 503, "推送历史暂不可用")
		return
	}
	sk, early, err := upgrade(w, r, g.opts.WriteTimeout)
	if err != nil {
		// The client is gone, or the server cannot hand over the connection.
		g.unsubscribe(t, c)
		g.log.Debug("websocket upgrade failed", "err", err)
		return
	}
	c.sock = sk
	served, handedOver = true, true
	g.serve(c, t, missed, topic, early, func() {
		g.leave(addr)
		callerRelease()
		g.running.Done()
	})
}

// connEndKey carries OnConnEnd's function in a request's context.
type connEndKey struct{}

// OnConnEnd returns r carrying release, which the gateway calls once the WebSocket that r
// opens ends — or when it refuses r. ServeHTTP returns as soon as the connection is
// upgraded, so what a caller holds for the connection's lifetime (a per-user socket
// count) cannot be given back by a defer around it.
func OnConnEnd(r *http.Request, release func()) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), connEndKey{}, release))
}

// isUpgrade is a cheap pre-check so a plain GET gets an envelope rather than the
// library's plain-text 426.
func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func writeEnvelope(w http.ResponseWriter, status, code int, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, message})
}
