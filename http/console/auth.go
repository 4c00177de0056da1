package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// CookieName is the browser session cookie.
const CookieName = "roomengine_console"

// CSRFHeader carries the session's CSRF token on a cookie-signed POST (a form may send it
// as the csrf field instead).
const CSRFHeader = "X-CSRF-Token"

// keys are derived from admin.token, so a session is valid on every node that has the same
// token, survives a restart, and ends when the token changes.
type keys struct {
	token   [32]byte // SHA-256 of the token: compared in constant time, whatever its length
	session []byte   // signs session cookies
	csrf    []byte   // derives the CSRF token of a session
}

func deriveKeys(token string) keys {
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, []byte(token))
		m.Write([]byte("roomengine console " + label))
		return m.Sum(nil)
	}
	return keys{token: sha256.Sum256([]byte(token)), session: derive("session v1"), csrf: derive("csrf v1")}
}

// tokenOK compares a presented token with admin.token in constant time.
func (k keys) tokenOK(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return got != "" && subtle.ConstantTimeCompare(sum[:], k.token[:]) == 1
}

var b64 = base64.RawURLEncoding

// newSession makes a cookie value: v1.<expiry unix>.<random nonce>.<HMAC of the rest>.
func (k keys) newSession(expires time.Time) string {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read never fails on supported platforms
	body := "v1." + strconv.FormatInt(expires.Unix(), 10) + "." + b64.EncodeToString(nonce[:])
	return body + "." + b64.EncodeToString(k.sign(k.session, body))
}

// sessionOK checks a cookie value's signature (in constant time) and expiry.
func (k keys) sessionOK(v string, now time.Time) bool {
	i := strings.LastIndexByte(v, '.')
	if i < 0 || !strings.HasPrefix(v, "v1.") {
		return false
	}
	body := v[:i]
	mac, err := b64.DecodeString(v[i+1:])
	if err != nil || !hmac.Equal(mac, k.sign(k.session, body)) {
		return false
	}
	parts := strings.Split(body, ".")
	if len(parts) != 3 {
		return false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	return err == nil && now.Unix() < exp
}

// csrfToken is the CSRF token of a session: only a page that read it from the state
// answer (same origin) can send it back.
func (k keys) csrfToken(session string) string {
	return b64.EncodeToString(k.sign(k.csrf, session))
}

func (k keys) csrfOK(session, got string) bool {
	want := k.csrfToken(session)
	return got != "" && hmac.Equal([]byte(got), []byte(want))
}

func (k keys) sign(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// credentials says how a request proved it holds the admin token.
type credentials struct {
	bearer  bool   // Authorization: Bearer <admin.token> (a tool)
	session string // the session cookie's value (a browser)
}

// authorized checks the Authorization header, else the session cookie. A request that
// sends an Authorization header is judged by it alone.
func (h *Handler) authorized(r *http.Request) (credentials, bool) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, token, ok := strings.Cut(strings.TrimSpace(auth), " ")
		if ok && strings.EqualFold(scheme, "Bearer") && h.keys.tokenOK(strings.TrimSpace(token)) {
			return credentials{bearer: true}, true
		}
		return credentials{}, false
	}
	c, err := r.Cookie(CookieName)
	if err != nil || !h.keys.sessionOK(c.Value, h.opts.Now()) {
		return credentials{}, false
	}
	return credentials{session: c.Value}, true
}

// signedIn lets only signed-in requests through: 401 otherwise. A POST signed by the
// session cookie must carry the session's CSRF token too (403 without it); a bearer token
// is never sent by a browser on its own, so it needs none.
func (h *Handler) signedIn(next func(http.ResponseWriter, *http.Request, credentials)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cred, ok := h.authorized(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="roomengine console"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Error: "sign in with the admin token"})
			return
		}
		if r.Method == http.MethodPost && !cred.bearer {
			got := r.Header.Get(CSRFHeader)
			if got == "" {
				r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
				got = r.PostFormValue("csrf")
			}
			if !h.keys.csrfOK(cred.session, got) {
				h.log.Warn("console: request without a valid CSRF token refused", "path", r.URL.Path)
				writeJSON(w, http.StatusForbidden, apiError{Error: "missing or invalid CSRF token"})
				return
			}
		}
		next(w, r, cred)
	}
}

// loginLimiter bounds wrong-token attempts across all clients: 10 at once, then one a second.
func newLoginLimiter() *rate.Limiter { return rate.NewLimiter(1, 10) }

// login checks the form's token and sets the session cookie. The token is never logged.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	token := r.PostFormValue("token")
	// While wrong tokens come faster than the limit, no token is even compared: the answer
	// must not tell a guesser anything.
	if h.failures.Tokens() < 1 {
		w.Header().Set("Retry-After", "1")
		h.loginForm(w, http.StatusTooManyRequests, "Too many attempts: wait a moment.")
		return
	}
	if !h.keys.tokenOK(token) {
		h.failures.Allow() // counts the failure
		h.log.Warn("console: sign-in refused (wrong admin token)", "remote", r.RemoteAddr)
		h.loginForm(w, http.StatusUnauthorized, "Wrong admin token.")
		return
	}
	now := h.opts.Now()
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: h.keys.newSession(now.Add(h.opts.SessionTTL)), Path: "/console",
		MaxAge: int(h.opts.SessionTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: secure(r),
	})
	h.log.Info("console: operator signed in", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/console", http.StatusSeeOther)
}

// logout clears the session cookie.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request, _ credentials) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/console", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r)})
	http.Redirect(w, r, "/console", http.StatusSeeOther)
}

// secure reports whether the browser reached us over HTTPS (directly or through a proxy
// that says so), so the cookie is sent over HTTPS only.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>roomengine console — sign in</title>
<link rel="stylesheet" href="/console/static/console.css">
</head>
<body class="login">
<main>
<h1>roomengine console</h1>
<form id="login-form" method="post" action="/console/login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button id="login-button" type="submit">Sign in</button>
{{if .}}<p id="login-error" class="error">{{.}}</p>{{end}}
</form>
<p class="hint">The token is <code>admin.token</code> of the server's configuration. Tools may send it as <code>Authorization: Bearer</code> instead.</p>
</main>
</body>
</html>
`))

// loginForm answers with the login form (and no data).
func (h *Handler) loginForm(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("WWW-Authenticate", `Bearer realm="roomengine console"`)
	w.WriteHeader(status)
	_ = loginPage.Execute(w, msg)
}
