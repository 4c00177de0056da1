// Package apifake holds what the fakes of Aliyun's OpenAPI (cdntest, livetest) share: the
// injected faults (error answers, delays), Aliyun's JSON error answer, and the SDKs'
// percent-encoding, which the fakes use to check signatures independently of package
// aliyun's signers.
package apifake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Failure is an injected error answer.
type Failure struct {
	Action  string // "" = every action
	Status  int
	Code    string
	Message string
	left    int // answers left to fail; < 0 = until Clear
}

// Faults are the errors and delays a fake is told to inject. Safe for concurrent use.
type Faults struct {
	mu    sync.Mutex
	fail  *Failure
	delay time.Duration
}

// Fail makes the next n verified calls of action ("" = any) answer HTTP status with the
// given Code and Message; n < 0 means until Clear.
func (f *Faults) Fail(action string, n, status int, code, message string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = &Failure{Action: action, Status: status, Code: code, Message: message, left: n}
}

// Clear removes injected failures and the delay.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.delay = nil, 0
}

// SetDelay makes every verified call wait d before it is answered.
func (f *Faults) SetDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// Take returns the failure (nil for none) a verified call of action is to answer with,
// counting it, and the delay before the answer.
func (f *Faults) Take(action string) (*Failure, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := f.fail
	if fail == nil || (fail.Action != "" && fail.Action != action) {
		return nil, f.delay
	}
	out := *fail
	if fail.left > 0 {
		if fail.left--; fail.left == 0 {
			f.fail = nil
		}
	}
	return &out, f.delay
}

// Wait waits d, and reports false if r's client went away or closing closed first.
func Wait(r *http.Request, closing <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-closing:
	}
	return false
}

// Error is Aliyun's error answer.
type Error struct {
	Status  int
	Code    string
	Message string
}

// Errf builds an error answer.
func Errf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WriteError answers e as Aliyun does: HTTP status, JSON {"RequestId","HostId","Code","Message"}.
func WriteError(w http.ResponseWriter, r *http.Request, requestID string, e *Error) {
	WriteJSON(w, e.Status, map[string]string{"RequestId": requestID, "HostId": r.Host, "Code": e.Code, "Message": e.Message})
}

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Encode is the SDKs' percentEncode: QueryEscape, then space as %20, * as %2A, ~ literal.
func Encode(s string) string {
	e := url.QueryEscape(s)
	e = strings.ReplaceAll(e, "+", "%20")
	e = strings.ReplaceAll(e, "*", "%2A")
	return strings.ReplaceAll(e, "%7E", "~")
}

// Server is the HTTP side every fake shares: a loopback httptest server that cuts delayed
// answers short when it closes, and the count of the requests that reached it.
type Server struct {
	URL       string
	srv       *httptest.Server
	closing   chan struct{}
	closeOnce sync.Once
	requests  atomic.Int64
}

// Start serves h on a loopback port.
func Start(h http.HandlerFunc) *Server {
	s := &Server{closing: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	s.URL = s.srv.URL
	return s
}

// Close stops the server (and every idle connection): delayed answers are cut short, and a
// later connection is refused.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.srv.Close()
}

// Requests is the number of HTTP requests that reached the server, verified or not.
func (s *Server) Requests() int { return int(s.requests.Load()) }

// Wait waits d before an answer to r; false means do not answer (see the package Wait).
func (s *Server) Wait(r *http.Request, d time.Duration) bool { return Wait(r, s.closing, d) }
