package console

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roomengine/actors"
	"roomengine/http/gateway"
)

const testToken = "admin-token-never-logged"

// fakeDomain is the engine as the console sees it.
type fakeDomain struct {
	mu     sync.Mutex
	rooms  []actors.Room
	calls  []actors.Call
	ended  []string
	closed []string
	gone   map[string]bool // rooms CloseCall answers 2002 for
}

func (f *fakeDomain) Rooms(context.Context) ([]actors.Room, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]actors.Room(nil), f.rooms...), nil
}

func (f *fakeDomain) Audience(_ context.Context, roomID string) ([]actors.User, error) {
	if roomID == "r1" {
		return []actors.User{{ID: "7", Name: "v1"}, {ID: "8", Name: "v2"}}, nil
	}
	return nil, actors.Errorf(actors.CodeUnavailable, "busy")
}

func (f *fakeDomain) Calls(context.Context) ([]actors.Call, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]actors.Call(nil), f.calls...), nil
}

func (f *fakeDomain) Leave(_ context.Context, roomID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rooms {
		if r.ID == roomID {
			f.rooms = append(f.rooms[:i], f.rooms[i+1:]...)
			f.ended = append(f.ended, roomID)
			return nil
		}
	}
	return actors.ErrNoSuchRoom(roomID)
}

func (f *fakeDomain) CloseCall(_ context.Context, closeRoomID, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone[closeRoomID] {
		return actors.Errorf(actors.CodeNoSuchUser, "%s直播记录不存在", closeRoomID)
	}
	f.closed = append(f.closed, closeRoomID)
	return nil
}

func (f *fakeDomain) endedRooms() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ended...)
}

type fakePush struct{}

func (fakePush) Stats() gateway.Stats {
	return gateway.Stats{Connections: 3, Topics: 2, Published: 10, FramesSent: 30,
		Dropped:     map[string]uint64{gateway.ReasonQueueFullShed: 1},
		Disconnects: map[string]uint64{gateway.EndClientGone: 4}}
}

func (fakePush) Subscribers(topic string) int {
	if topic == "r1" {
		return 3
	}
	return 0
}

type fakeCluster struct{}

func (fakeCluster) ClusterView(_ context.Context, rooms []string) (ClusterView, error) {
	owners := map[string]string{}
	for _, r := range rooms {
		owners[r] = "node-b"
	}
	return ClusterView{Mode: "cluster of 2", Self: "node-a",
		Members: []Member{{Name: "node-a", Self: true}, {Name: "node-b"}}, Owners: owners}, nil
}

// testConsole is a console over a fake domain, with a clock the test moves and a log it
// reads.
type testConsole struct {
	h      *Handler
	domain *fakeDomain
	now    time.Time
	logs   *bytes.Buffer
	mu     sync.Mutex
}

func newTestConsole(t *testing.T, token string, adjust ...func(*Options)) *testConsole {
	t.Helper()
	tc := &testConsole{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), logs: &bytes.Buffer{}}
	tc.domain = &fakeDomain{
		rooms: []actors.Room{
			{ID: "r1", UID: "1", Name: "alice", Description: "secret-room-description", Status: actors.StatusPublishing,
				Type: actors.TypeHost, IsMixReady: true, CallID: "call-1"},
			{ID: "r2", UID: "2", Name: "bob", Status: actors.StatusCreated, Type: actors.TypeHost, CallID: "call-1"},
		},
		calls: []actors.Call{{ID: "call-1", Phase: actors.PhaseMixed, Layout: actors.DefaultLayout,
			Inviter: actors.CallSide{RoomID: "r1", UID: "1", Type: actors.TypeHost},
			Invitee: actors.CallSide{RoomID: "r2", UID: "2", Type: actors.TypeHost},
			Legs:    []actors.MixLeg{{Main: "r1", Mix: "r2", State: "started"}, {Main: "r2", Mix: "r1", State: "failed", Code: 3500}}}},
	}
	opts := Options{Token: token, Domain: tc.domain, Push: fakePush{},
		Breakers: func() []Breaker { return []Breaker{{Name: "cdn", State: "open"}} },
		Logger:   slog.New(slog.NewTextHandler(syncWriter{tc}, nil)),
		Now: func() time.Time {
			tc.mu.Lock()
			defer tc.mu.Unlock()
			return tc.now
		}}
	for _, f := range adjust {
		f(&opts)
	}
	tc.h = New(opts)
	t.Cleanup(func() {
		if token != "" {
			assert.NotContains(t, tc.logText(), token, "the admin token must never be logged")
		}
	})
	return tc
}

type syncWriter struct{ tc *testConsole }

func (w syncWriter) Write(b []byte) (int, error) {
	w.tc.mu.Lock()
	defer w.tc.mu.Unlock()
	return w.tc.logs.Write(b)
}

func (tc *testConsole) logText() string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.logs.String()
}

func (tc *testConsole) advance(d time.Duration) {
	tc.mu.Lock()
	tc.now = tc.now.Add(d)
	tc.mu.Unlock()
}

// do serves one request; headers are name, value pairs.
func (tc *testConsole) do(method, target string, body io.Reader, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	tc.h.ServeHTTP(rec, req)
	return rec
}

func (tc *testConsole) login(t *testing.T, token string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"token": {token}}.Encode()
	return tc.do("POST", "/console/login", strings.NewReader(form),
		append([]string{"Content-Type", "application/x-www-form-urlencoded", "Origin", "http://example.com"}, headers...)...)
}

// session signs in through the form and returns the session cookie.
func (tc *testConsole) session(t *testing.T) *http.Cookie {
	t.Helper()
	rec := tc.login(t, testToken)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	cookies := rec.Result().Cookies()
	require.Len(t, cookies, 1)
	return cookies[0]
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

func cookieHeader(c *http.Cookie) []string { return []string{"Cookie", c.Name + "=" + c.Value} }

func decodeState(t *testing.T, rec *httptest.ResponseRecorder) State {
	t.Helper()
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var st State
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &st))
	return st
}

func TestOffWithoutAdminToken(t *testing.T) {
	tc := newTestConsole(t, "")
	for _, req := range []struct{ method, path string }{
		{"GET", "/console"}, {"GET", "/console/"}, {"GET", "/console/api/state"},
		{"GET", "/console/static/console.js"}, {"POST", "/console/login"}, {"POST", "/console/api/rooms/r1/end"},
	} {
		rec := tc.do(req.method, req.path, nil, bearer("")...)
		assert.Equal(t, http.StatusNotFound, rec.Code, "%s %s", req.method, req.path)
	}
	assert.Empty(t, tc.domain.endedRooms())
}

func TestUnauthorizedGetsTheLoginFormAndNoData(t *testing.T) {
	tc := newTestConsole(t, testToken)
	for _, headers := range [][]string{nil, bearer("wrong"), {"Authorization", "Basic " + testToken},
		{"Cookie", CookieName + "=" + testToken}, {"Cookie", CookieName + "=v1.99999999999.bm9uY2U.c2ln"}} {
		rec := tc.do("GET", "/console", nil, headers...)
		assert.Equal(t, http.StatusUnauthorized, rec.Code, "%v", headers)
		body := rec.Body.String()
		assert.Contains(t, body, `<form id="login-form" method="post" action="/console/login">`)
		assert.NotContains(t, body, "secret-room-description")
		assert.NotContains(t, body, "r1")

		rec = tc.do("GET", "/console/api/state", nil, headers...)
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
		assert.NotContains(t, rec.Body.String(), "secret-room-description")
		assert.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer")
	}
	rec := tc.do("POST", "/console/api/rooms/r1/end", nil)
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Empty(t, tc.domain.endedRooms())
}

func TestBearerTokenReadsAndActs(t *testing.T) {
	tc := newTestConsole(t, testToken)
	rec := tc.do("GET", "/console", nil, bearer(testToken)...)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), `<script src="/console/static/console.js"`)

	st := decodeState(t, tc.do("GET", "/console/api/state", nil, "Authorization", "bearer "+testToken))
	assert.Empty(t, st.CSRF, "a bearer request needs no CSRF token")
	require.Len(t, st.Rooms, 2)
	r1 := st.Rooms[0]
	assert.Equal(t, "r1", r1.ID)
	assert.Equal(t, "publishing", r1.StatusText)
	assert.Equal(t, 2, r1.Audience)
	assert.Equal(t, 3, r1.Subscribers)
	assert.Equal(t, "call-1", r1.CallID)
	assert.Equal(t, -1, st.Rooms[1].Audience, "an audience that cannot be read is unknown")
	assert.Equal(t, 2, st.RoomsTotal)
	require.Len(t, st.Calls, 1)
	assert.Equal(t, actors.PhaseMixed, st.Calls[0].Phase)
	assert.Equal(t, []LegRow{{Main: "r1", Mix: "r2", State: "started"}, {Main: "r2", Mix: "r1", State: "failed", Code: 3500}},
		st.Calls[0].Legs)
	require.NotNil(t, st.Push)
	assert.Equal(t, 3, st.Push.Connections)
	assert.Equal(t, uint64(4), st.Push.Disconnects[gateway.EndClientGone])
	assert.Equal(t, []Breaker{{Name: "cdn", State: "open"}}, st.Breakers)
	assert.Equal(t, "single node", st.Cluster.Mode)

	// Tools act with the bearer token alone: no cookie, no CSRF token.
	rec = tc.do("POST", "/console/api/rooms/r1/end", nil, bearer(testToken)...)
	assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, []string{"r1"}, tc.domain.endedRooms())
	rec = tc.do("POST", "/console/api/rooms/r1/end", nil, bearer(testToken)...)
	assert.Equal(t, http.StatusNotFound, rec.Code, "a room that is gone")
	assert.Contains(t, rec.Body.String(), `"code":2003`)

	rec = tc.do("POST", "/console/api/rooms/r2/end", nil, bearer("wrong")...)
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Equal(t, []string{"r1"}, tc.domain.endedRooms())
}

func TestCloseCall(t *testing.T) {
	tc := newTestConsole(t, testToken)
	rec := tc.do("POST", "/console/api/calls/call-1/close", nil, bearer(testToken)...)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, []string{"r1"}, tc.domain.closed, "closed for the inviter's room")

	tc.domain.gone = map[string]bool{"r1": true}
	rec = tc.do("POST", "/console/api/calls/call-1/close", nil, bearer(testToken)...)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, []string{"r1", "r2"}, tc.domain.closed, "the invitee's room when the inviter's is gone")

	rec = tc.do("POST", "/console/api/calls/call-x/close", nil, bearer(testToken)...)
	assert.Equal(t, http.StatusNotFound, rec.Code)
}

func TestLoginSetsAStrictHttpOnlySessionCookie(t *testing.T) {
	tc := newTestConsole(t, testToken)
	rec := tc.login(t, "wrong")
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Empty(t, rec.Result().Cookies())
	assert.Contains(t, rec.Body.String(), "Wrong admin token")

	rec = tc.login(t, testToken)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	assert.Equal(t, "/console", rec.Header().Get("Location"))
	cookies := rec.Result().Cookies()
	require.Len(t, cookies, 1)
	c := cookies[0]
	assert.Equal(t, CookieName, c.Name)
	assert.True(t, c.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, c.SameSite)
	assert.Equal(t, "/console", c.Path)
	assert.False(t, c.Secure, "plain HTTP: a Secure cookie would never come back")
	assert.Positive(t, c.MaxAge)
	assert.NotContains(t, c.Value, testToken, "the cookie is derived from the token, never the token")
	assert.NotEqual(t, tc.session(t).Value, c.Value, "each sign-in gets its own session value")

	// Behind a TLS-terminating proxy the cookie is Secure.
	rec = tc.login(t, testToken, "X-Forwarded-Proto", "https")
	require.Len(t, rec.Result().Cookies(), 1)
	assert.True(t, rec.Result().Cookies()[0].Secure)

	// The cookie opens the page and the data; the state hands out its CSRF token.
	assert.Equal(t, http.StatusOK, tc.do("GET", "/console", nil, cookieHeader(c)...).Code)
	st := decodeState(t, tc.do("GET", "/console/api/state", nil, cookieHeader(c)...))
	assert.NotEmpty(t, st.CSRF)

	// A tampered cookie is refused, and so is one past its expiry.
	tampered := *c
	tampered.Value = strings.Replace(c.Value, "v1.", "v1.9", 1)
	assert.Equal(t, http.StatusUnauthorized, tc.do("GET", "/console/api/state", nil, cookieHeader(&tampered)...).Code)
	tc.advance(12*time.Hour + time.Second)
	assert.Equal(t, http.StatusUnauthorized, tc.do("GET", "/console/api/state", nil, cookieHeader(c)...).Code)
}

func TestCookieSessionNeedsCSRFTokenAndSameOrigin(t *testing.T) {
	tc := newTestConsole(t, testToken)
	c := tc.session(t)
	st := decodeState(t, tc.do("GET", "/console/api/state", nil, cookieHeader(c)...))
	require.NotEmpty(t, st.CSRF)

	// No CSRF token, or another session's: refused, nothing done.
	rec := tc.do("POST", "/console/api/rooms/r1/end", nil, cookieHeader(c)...)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	other := decodeState(t, tc.do("GET", "/console/api/state", nil, cookieHeader(tc.session(t))...)).CSRF
	rec = tc.do("POST", "/console/api/rooms/r1/end", nil, append(cookieHeader(c), CSRFHeader, other)...)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	rec = tc.do("POST", "/console/api/calls/call-1/close", nil, append(cookieHeader(c), CSRFHeader, "x")...)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Empty(t, tc.domain.endedRooms())
	assert.Empty(t, tc.domain.closed)

	// A cross-site request is refused even with the right token (a browser sends
	// Sec-Fetch-Site, older ones Origin).
	rec = tc.do("POST", "/console/api/rooms/r1/end", nil,
		append(cookieHeader(c), CSRFHeader, st.CSRF, "Sec-Fetch-Site", "cross-site")...)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	rec = tc.do("POST", "/console/api/rooms/r1/end", nil,
		append(cookieHeader(c), CSRFHeader, st.CSRF, "Origin", "http://evil.example")...)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	rec = tc.login(t, testToken, "Sec-Fetch-Site", "cross-site")
	assert.Equal(t, http.StatusForbidden, rec.Code, "no sign-in from another site either")
	assert.Empty(t, tc.domain.endedRooms())

	// Same origin with the session's token: done.
	rec = tc.do("POST", "/console/api/rooms/r1/end", nil,
		append(cookieHeader(c), CSRFHeader, st.CSRF, "Sec-Fetch-Site", "same-origin")...)
	assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, []string{"r1"}, tc.domain.endedRooms())

	// A form post may send the token as a field.
	form := url.Values{"csrf": {st.CSRF}}.Encode()
	rec = tc.do("POST", "/console/logout", strings.NewReader(form),
		append(cookieHeader(c), "Content-Type", "application/x-www-form-urlencoded")...)
	assert.Equal(t, http.StatusSeeOther, rec.Code)
	require.Len(t, rec.Result().Cookies(), 1)
	assert.Negative(t, rec.Result().Cookies()[0].MaxAge, "sign-out clears the cookie")
}

// Wrong tokens are limited; past the limit even the right one is not compared, so the
// answer tells a guesser nothing.
func TestLoginAttemptsAreLimited(t *testing.T) {
	tc := newTestConsole(t, testToken)
	for range 10 {
		require.Equal(t, http.StatusUnauthorized, tc.login(t, "guess").Code)
	}
	assert.Equal(t, http.StatusTooManyRequests, tc.login(t, "guess").Code)
	assert.Equal(t, http.StatusTooManyRequests, tc.login(t, testToken).Code)
}

func TestClusterHookShowsMembersAndOwners(t *testing.T) {
	tc := newTestConsole(t, testToken, func(o *Options) { o.Cluster = fakeCluster{} })
	st := decodeState(t, tc.do("GET", "/console/api/state", nil, bearer(testToken)...))
	assert.Equal(t, "cluster of 2", st.Cluster.Mode)
	assert.Len(t, st.Cluster.Members, 2)
	assert.Equal(t, "node-b", st.Rooms[0].Owner)
}

func TestStaticAssetsAreEmbedded(t *testing.T) {
	tc := newTestConsole(t, testToken)
	rec := tc.do("GET", "/console/static/console.js", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), "/console/api/state")
	assert.Equal(t, http.StatusOK, tc.do("GET", "/console/static/console.css", nil).Code)
	assert.Equal(t, http.StatusNotFound, tc.do("GET", "/console/static/index.html", nil).Code,
		"the page itself only behind the sign-in")
	assert.Equal(t, http.StatusNotFound, tc.do("GET", "/console/static/", nil).Code)
}

// A session is valid on every console with the same token (the nodes of a cluster, a
// restarted server) and on none once the token changes.
func TestSessionFollowsTheToken(t *testing.T) {
	a := newTestConsole(t, testToken)
	c := a.session(t)
	same := newTestConsole(t, testToken)
	assert.Equal(t, http.StatusOK, same.do("GET", "/console/api/state", nil, cookieHeader(c)...).Code)
	rotated := newTestConsole(t, testToken+"-rotated")
	assert.Equal(t, http.StatusUnauthorized, rotated.do("GET", "/console/api/state", nil, cookieHeader(c)...).Code)
}
