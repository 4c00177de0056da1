// Package console is the operator console at /console: one embedded page with plain
// JavaScript that polls /console/api/state and shows the live rooms, the co-streaming
// calls with their mix legs, the WebSocket push connections, the Aliyun circuit breakers and
// (in a cluster) the members and room owners, with actions to end a room or close a call.
//
// It is on only when admin.token is set. Tools send the token as "Authorization: Bearer";
// browsers sign in through the login form, which sets an HttpOnly, SameSite=Strict session
// cookie derived from the token (never the token itself). Every POST is refused when it
// comes from another origin, and a cookie-signed POST must also carry the session's CSRF
// token. See docs/console.md.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"roomengine/actors"
	"roomengine/http/gateway"
)

// Domain is what the console reads and does through the room engine; *actors.Engine
// implements it.
type Domain interface {
	// Rooms lists the live rooms (any status but ended), oldest first.
	Rooms(ctx context.Context) ([]actors.Room, error)
	// Audience lists who is watching a room.
	Audience(ctx context.Context, roomID string) ([]actors.User, error)
	// Calls lists the co-streaming calls, oldest first.
	Calls(ctx context.Context) ([]actors.Call, error)
	// Leave ends a room (push 8 to its topic).
	Leave(ctx context.Context, roomID string) error
	// CloseCall ends the call closeRoomID is in (pushes 4 and 15, the mixes stopped).
	CloseCall(ctx context.Context, closeRoomID, notifiedRoomID string) error
}

// Push is the WebSocket push gateway's counters; *gateway.Gateway implements it.
type Push interface {
	Stats() gateway.Stats
	// Subscribers is the number of connections subscribed to a topic (a room id).
	Subscribers(topic string) int
}

// Breaker is the state of one circuit breaker around an Aliyun API.
type Breaker struct {
	Name  string `json:"name"`
	State string `json:"state"` // closed, half-open, open
}

// Cluster is the hook through which a node of a cluster shows its members and the owner of
// each room. A nil Cluster (a single node) shows "single node".
type Cluster interface {
	ClusterView(ctx context.Context, roomIDs []string) (ClusterView, error)
}

// ClusterView is what the console shows of a cluster.
type ClusterView struct {
	Mode    string   `json:"mode"` // "single node", or a short description of the cluster
	Self    string   `json:"self,omitempty"`
	Members []Member `json:"members"`
	// Owners maps a room id to the name of the node that acts for it (rooms missing from
	// the map have no live owner).
	Owners map[string]string `json:"owners,omitempty"`
}

// Member is one node of a cluster.
type Member struct {
	Name  string `json:"name"`
	Addr  string `json:"addr,omitempty"`
	State string `json:"state,omitempty"`
	Self  bool   `json:"self,omitempty"`
}

// SingleNode is the cluster view of a node that is not part of a cluster.
var SingleNode = ClusterView{Mode: "single node", Members: []Member{}}

// Options configures the console.
type Options struct {
	// Token is admin.token. Empty turns the console off: every path answers 404.
	Token  string
	Domain Domain
	// Push, when set, adds the WebSocket connection counters and per-room subscribers.
	Push Push
	// Breakers, when set, reports the circuit breakers (none with the simulated CDN).
	Breakers func() []Breaker
	// Cluster, when set, shows the members and owners; nil shows "single node".
	Cluster Cluster
	// SessionTTL is how long a browser session lasts (default 12 h).
	SessionTTL time.Duration
	// MaxRooms bounds the rooms one state answer lists (default 500); each listed room is
	// asked for its audience.
	MaxRooms int
	// Timeout bounds one state answer or action (default 5 s).
	Timeout time.Duration
	Logger  *slog.Logger
	Now     func() time.Time
}

//go:embed static
var staticFiles embed.FS

// Handler serves /console and everything under it.
type Handler struct {
	opts    Options
	keys    keys
	handler http.Handler // the routes behind the cross-origin check
	static  http.Handler
	log     *slog.Logger
	// failures limits wrong-token sign-ins, so the login form is no guessing oracle.
	failures *rate.Limiter
}

// New builds the console. With an empty Token it answers 404 to everything.
func New(opts Options) *Handler {
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.MaxRooms <= 0 {
		opts.MaxRooms = 500
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic("console: embedded files: " + err.Error()) // the directory is embedded above
	}
	h := &Handler{opts: opts, keys: deriveKeys(opts.Token), log: opts.Logger,
		failures: newLoginLimiter(),
		static:   http.StripPrefix("/console/static/", http.FileServerFS(sub))}
	m := http.NewServeMux()
	m.HandleFunc("GET /console", h.page)
	m.HandleFunc("GET /console/{$}", h.page)
	m.HandleFunc("POST /console/login", h.login)
	m.HandleFunc("POST /console/logout", h.signedIn(h.logout))
	m.HandleFunc("GET /console/static/", h.asset)
	m.HandleFunc("GET /console/api/state", h.signedIn(h.state))
	m.HandleFunc("POST /console/api/rooms/{id}/end", h.signedIn(h.endRoom))
	m.HandleFunc("POST /console/api/calls/{id}/close", h.signedIn(h.closeCall))
	// Same-origin check of every unsafe request (Sec-Fetch-Site, else Origin against Host):
	// a page on another site cannot post here, whatever cookie the browser holds.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.log.Warn("console: cross-origin request refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"))
		writeJSON(w, http.StatusForbidden, apiError{Error: "cross-origin request refused"})
	}))
	h.handler = cop.Handler(m)
	return h
}

// On reports whether the console is enabled (admin.token set).
func (h *Handler) On() bool { return h.opts.Token != "" }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.On() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("Content-Security-Policy",
		"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.handler.ServeHTTP(w, r)
}

// asset serves the embedded script and style sheet; they hold no data, so the login page
// uses them too.
func (h *Handler) asset(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/") || strings.HasSuffix(r.URL.Path, ".html") {
		http.NotFound(w, r)
		return
	}
	h.static.ServeHTTP(w, r)
}

// page is the console itself, or the login form (401) without valid credentials.
func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.authorized(r); !ok {
		h.loginForm(w, http.StatusUnauthorized, "")
		return
	}
	b, err := staticFiles.ReadFile("static/index.html")
	if err != nil {
		http.Error(w, "console page missing", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b)
}

type apiError struct {
	Error string `json:"error"`
	Code  int    `json:"code,omitempty"` // the engine's code, when it refused
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeDomainError answers an engine error: its code and short message (never its internal
// cause), with an HTTP status that matches (404 for an unknown room, 503 when the engine
// cannot answer now).
func (h *Handler) writeDomainError(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Warn("console: action failed", "path", r.URL.Path, "err", err)
	status := http.StatusInternalServerError
	var e *actors.Error
	if errors.As(err, &e) {
		switch e.Code {
		case actors.CodeNoSuchRoom, actors.CodeNoSuchUser:
			status = http.StatusNotFound
		case actors.CodeUnavailable:
			status = http.StatusServiceUnavailable
		case actors.CodeBadState, actors.CodeInCall:
			status = http.StatusConflict
		}
		writeJSON(w, status, apiError{Error: e.Message, Code: e.Code})
		return
	}
	writeJSON(w, status, apiError{Error: "internal error"})
}
