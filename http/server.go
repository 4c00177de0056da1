package http

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"roomengine/actors"
	"roomengine/aliyun"
	"roomengine/internal/logcap"
)

// Options configure the API handler.
type Options struct {
	Engine *actors.Engine
	// Gateway serves /ws (the WebSocket push gateway); nil leaves /ws unrouted.
	Gateway http.Handler
	// Ready reports whether the store and the actor system can serve (for /readyz).
	Ready func(ctx context.Context) error
	// URLs renders the URLs of room objects.
	URLs actors.URLs
	// Tokens signs the token /login hands out.
	Tokens *TokenSigner
	// MaxBodyBytes limits request bodies (http.maxBodyBytes).
	MaxBodyBytes int64
	// BodyReadTimeout bounds the time from a request's arrival at the handler to the end of
	// its body (default 10 s), so a client that sends less than its Content-Length cannot
	// hold a connection; a request without a body (such as a /ws upgrade) is not affected.
	BodyReadTimeout time.Duration
	// AdminToken enables /reset and /admin/cluster; empty disables them.
	AdminToken string
	// Cluster answers /admin/cluster; nil on a single node.
	Cluster ClusterView
	// Console serves the operator console at /console and below (package http/console);
	// nil leaves those paths unrouted (404), as when admin.token is unset.
	Console http.Handler
	// TemplateName is the mix template suffix stripped from mix callback stream names.
	TemplateName string
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	Gatherer     prometheus.Gatherer

	// MNSInfo is the Aliyun account /mns/topic/websocket/info signs for.
	MNSInfo MNSInfo
	// CallbackAuthKey (ali.callbackAuthKey), when set, makes every /ali/* callback need a
	// valid ALI-LIVE-TIMESTAMP / ALI-LIVE-SIGNATURE (docs/api.md, Callbacks); empty leaves them open.
	CallbackAuthKey string
	// CallbackRtmpHost is the push domain (rtmpHost) the callback signature covers.
	CallbackRtmpHost string
	// CallbackMaxSkew is how far a callback's timestamp may be from now, either way
	// (ali.callbackMaxSkew, default 5m).
	CallbackMaxSkew time.Duration
	// Now is the clock of callback checks and MNS dates (default time.Now); tests set it.
	Now func() time.Time

	// AuthRequired makes every user route need a token from /login, acting only as its
	// own user (auth.required, docs/api.md Security).
	AuthRequired bool
	// RateLimit is requests per second per client address (0 = off) with RateBurst.
	RateLimit float64
	RateBurst int
	// CORSOrigins allows browser pages from these origins ("*" = any); empty = CORS off.
	CORSOrigins []string
	// TrustedProxies are the proxies whose X-Forwarded-For / Forwarded headers name the
	// client (http.trustedProxies, clientaddr.go); empty: the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// MaxWSConnsPerUser bounds one signed-in user's open sockets (auth.required; 0 = none).
	MaxWSConnsPerUser int
	// TicketSecret signs the WebSocket tickets of POST /ws/ticket (auth.secret).
	TicketSecret []byte
	// FirstSeen, when set, records key for ttl across the deployment and reports whether
	// it was new (the Redis store's SET NX): a signed callback replayed to another node and
	// a ticket used on two nodes are caught too. Without it each node remembers its own.
	FirstSeen func(ctx context.Context, key string, ttl time.Duration) (bool, error)

	// Media configures the publish hooks of a self-hosted media server (/media/*).
	Media MediaHooks
}

// Handler is the whole HTTP surface.
type Handler struct {
	opts    Options
	router  *httprouter.Router
	metrics *httpMetrics
	log     *slog.Logger
	limiter *perIPLimiter
	outer   http.Handler // router behind rate limit and CORS

	tickets     *tickets // nil without auth.required
	userSockets userSockets
}

// NewHandler builds the router with every route and callback of docs/api.md.
func NewHandler(opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	if opts.BodyReadTimeout <= 0 {
		opts.BodyReadTimeout = 10 * time.Second
	}
	if opts.TemplateName == "" {
		opts.TemplateName = "_mix"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MNSInfo.Version == "" {
		opts.MNSInfo.Version = aliyun.DefaultMNSVersion
	}
	// Every value a client sends may reach a log line (a wrapped error, a route, a callback
	// body): the logger cuts each one and rate-limits repeated warnings.
	opts.Logger = logcap.Wrap(opts.Logger)
	h := &Handler{opts: opts, router: httprouter.New(), metrics: newHTTPMetrics(opts.Registerer), log: opts.Logger,
		userSockets: userSockets{max: opts.MaxWSConnsPerUser, n: map[string]int{}}}
	if opts.AuthRequired && len(opts.TicketSecret) > 0 {
		h.tickets = newTickets(opts.TicketSecret, opts.Now, opts.FirstSeen)
	}
	cb := newCallbackAuth(opts)
	r := h.router
	r.RedirectTrailingSlash, r.RedirectFixedPath = false, false
	r.HandleMethodNotAllowed = true
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeEnvelope(w, http.StatusNotFound, envelope{Code: http.StatusNotFound, Message: "Not Found: " + req.URL.Path})
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeEnvelope(w, http.StatusMethodNotAllowed, envelope{Code: http.StatusMethodNotAllowed,
			Message: "Method Not Allowed: " + req.Method + " " + req.URL.Path})
	})
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, p any) {
		h.log.Error("handler panicked", "route", req.URL.Path, "panic", p, "stack", logcap.Trusted(debug.Stack()))
		writeEnvelope(w, http.StatusOK, envelope{Code: 500, Message: "系统异常"})
	}

	h.api("POST", "/login", h.login)
	h.api("GET,POST", "/im/room/users", h.signedIn(anyUser, h.roomUsers))
	h.api("POST", "/live/create", h.signedIn(param("uid"), h.createLive))
	h.api("POST", "/live/play", h.signedIn(param("uid"), h.play))
	h.api("POST", "/live/audience/leave", h.signedIn(param("uid"), h.audienceLeave))
	h.api("POST", "/live/leave", h.signedIn(hostOf("roomId"), h.leave))
	h.api("POST", "/live/comment", h.signedIn(param("uid"), h.comment))
	h.api("POST", "/live/like", h.signedIn(param("uid"), h.like))
	h.api("GET,POST", "/live/list", h.signedIn(anyUser, h.list))
	h.api("POST", "/videocall/invite", h.signedIn(param("inviterUid"), h.invite))
	h.api("POST", "/videocall/feedback", h.signedIn(param("inviteeUid"), h.feedback))
	h.api("POST", "/videocall/close", h.signedIn(hostOf("closeRoomId", "closeRooomId"), h.closeCall))
	h.api("POST", "/reset", h.reset)
	h.api("GET", "/admin/cluster", h.adminCluster)
	h.api("POST", "/mns/topic/websocket/info", h.signedIn(anyUser, h.mnsTopicWebsocketInfo))
	// Aliyun calls back with GET; POST (query and/or form body) is answered the same way, so
	// no callback meets a 405 (docs/api.md: callbacks are always answered 200).
	h.api("GET,POST", "/ali/stream/notify", cb.wrap("/ali/stream/notify", h.streamNotify))
	h.api("GET,POST", "/ali/mix/availability/notify", cb.wrap("/ali/mix/availability/notify", h.mixAvailable))
	h.api("GET,POST", "/ali/mix/status/notify", cb.wrap("/ali/mix/status/notify", h.mixStatus))
	for _, m := range []string{"GET", "POST"} {
		r.Handle(m, mixCallbackRoute, h.mixCallback(cb))
	}

	r.POST(nginxRTMPRoute, h.nginxRTMPHook())
	r.POST(srsRoute, h.srsHook())
	r.HandlerFunc("GET", "/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeEnvelope(w, http.StatusOK, envelope{Code: 200, Message: "ok"})
	})
	r.HandlerFunc("GET", "/readyz", h.readyz)
	r.HandlerFunc("GET", "/openapi.json", h.openAPI)
	if opts.Gatherer != nil {
		r.Handler("GET", "/metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	if opts.Gateway != nil {
		r.Handler("GET", "/ws", h.signedInGateway(opts.Gateway))
		h.api("POST", "/ws/ticket", h.wsTicket)
	}
	if opts.Console != nil {
		for _, m := range []string{"GET", "POST"} {
			r.Handler(m, "/console", opts.Console)
			r.Handler(m, "/console/*rest", opts.Console)
		}
	}
	if opts.RateLimit > 0 {
		h.limiter = newPerIPLimiter(opts.RateLimit, opts.RateBurst)
	}
	h.outer = h.router
	if h.limiter != nil || len(opts.CORSOrigins) > 0 {
		h.outer = h.limitAndCORS(h.router)
	}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = withClientAddr(r, h.opts.TrustedProxies)
	if hasBody(r) {
		// The server has no ReadTimeout (it would cut WebSockets and slow handlers), so
		// the body gets its own deadline here. It stays set until the body is read (see
		// api), also for the routes that never read it: net/http then discards the rest of
		// the body before answering, and that read must not wait forever either.
		h.setReadDeadline(w, time.Now().Add(h.opts.BodyReadTimeout))
	}
	h.outer.ServeHTTP(w, r)
}

// hasBody reports whether the request comes with a body (Content-Length > 0 or chunked).
func hasBody(r *http.Request) bool { return r.Body != nil && r.Body != http.NoBody }

// setReadDeadline sets the read deadline of the request's connection (through the
// space-tolerant listener's connections too, which pass it to the socket). A writer that
// has no connection (an in-process request, a test recorder) cannot, and needs none.
func (h *Handler) setReadDeadline(w http.ResponseWriter, t time.Time) {
	err := http.NewResponseController(w).SetReadDeadline(t)
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		h.log.Debug("read deadline not set", "err", err)
	}
}

// apiFunc handles one API request: it returns the data to answer with, or an error.
type apiFunc func(ctx context.Context, p params, r *http.Request) (any, error)

// rawJSON is data that is already encoded.
type rawJSON []byte

// api registers fn for each of the comma-separated methods, wrapped with parameter decoding,
// the request timeout, the envelope and metrics.
// The request's context is passed as is: every engine call is bounded by the engine's ask
// timeout, which the server sets to http.requestTimeout at most.
func (h *Handler) api(methods, path string, fn apiFunc) {
	metrics := h.metrics.forRoute(path)
	// Aliyun's callbacks must not be lost over an odd byte: their text is made valid.
	strictUTF8 := !strings.HasPrefix(path, "/ali/")
	handle := func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: 200}
		defer func() { h.trace(r, path, rec.code, time.Since(start), metrics) }()
		p, err := decodeParams(r, h.opts.MaxBodyBytes, strictUTF8)
		if err != nil {
			var bad *badInput
			if errors.As(err, &bad) && bad.bodyUnread {
				// What is left of the body is still on the connection: close it after the
				// answer. The body deadline stays, so nothing waits for those bytes.
				w.Header().Set("Connection", "close")
			}
			writeError(rec, err)
			return
		}
		if hasBody(r) {
			h.setReadDeadline(w, time.Time{}) // the body is read: lift its deadline
		}
		data, err := fn(r.Context(), p, r)
		if err == nil && !readOnlyRoutes[path] {
			// In a cluster the pushes of this command are written to the shared feed before
			// the client is told it succeeded (a no-op on a single node).
			err = h.opts.Engine.Settle(r.Context())
		}
		if err != nil {
			if code := errorCode(err); code == actors.CodeInternal || code == actors.CodeUnavailable {
				// The client gets a short message; the reason (which may name internal
				// addresses) is only logged. Answers about the request itself (2002, 2003,
				// 3020, 4000...) are the client's business and are not logged.
				h.log.Warn("request failed", "route", path, "code", code, "err", err)
			}
			writeError(rec, err)
			return
		}
		if raw, ok := data.(rawJSON); ok {
			writeRawData(rec, raw)
			return
		}
		writeOK(rec, data)
	}
	for _, m := range strings.Split(methods, ",") {
		h.router.Handle(m, path, handle)
	}
}

// readOnlyRoutes cause no push: their answer need not wait for the push feed.
var readOnlyRoutes = map[string]bool{"/live/list": true, "/im/room/users": true,
	"/mns/topic/websocket/info": true, "/login": true, "/admin/cluster": true}

// trace records an answered request in the metrics and, with log.level debug, as one DEBUG
// line (method, route, envelope code, duration, client address; never parameters, which
// may carry tokens).
func (h *Handler) trace(r *http.Request, route string, code int, took time.Duration, metrics *routeMetrics) {
	metrics.observe(code, took)
	if h.log.Enabled(r.Context(), slog.LevelDebug) {
		h.log.Debug("request", "method", r.Method, "route", route, "code", code, "duration", took, "remote", r.RemoteAddr)
	}
}

// statusRecorder remembers the envelope code for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) setCode(code int) { s.code = code }

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.opts.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := h.opts.Ready(ctx); err != nil {
			writeEnvelope(w, http.StatusServiceUnavailable, envelope{Code: actors.CodeUnavailable, Message: "not ready: " + err.Error()})
			return
		}
	}
	writeEnvelope(w, http.StatusOK, envelope{Code: 200, Message: "ready"})
}

// checkAdmin accepts only the configured admin token, compared in constant time.
func (h *Handler) checkAdmin(r *http.Request) error {
	if h.opts.AdminToken == "" {
		return actors.Errorf(actors.CodeForbidden, "管理接口未启用（未配置admin.token）")
	}
	got, ok := bearerToken(r)
	if !ok || got == "" {
		return actors.Errorf(actors.CodeUnauthorized, "需要管理员令牌")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(h.opts.AdminToken)) != 1 {
		return actors.Errorf(actors.CodeForbidden, "管理员令牌错误")
	}
	return nil
}
