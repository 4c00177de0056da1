// Package cdntest is a fake Aliyun CDN OpenAPI (StartMixStreamsService and
// StopMixStreamsService) on a loopback httptest server, for tests of the CDN mix client and
// of the wiring that uses it.
//
// It checks requests the way Aliyun does: the common parameters, the AccessKeyId, the
// Timestamp (at most 15 minutes off), the RPC signature v1 recomputed from the received
// query with its own encoder (independent of package aliyun's signer), and that no
// SignatureNonce is used twice. A request that fails a check gets Aliyun's error answer
// (HTTP 4xx, JSON {"RequestId","HostId","Code","Message"}) and is not recorded as a call.
//
// Verified calls are recorded (Calls) and answered with success, or with an injected error
// (FailWith, FailNext), optionally after a delay (SetDelay). Refuse closes the listener so
// later connections are refused. Requests counts every HTTP request that reached the server,
// verified or not, so a test can prove that a client did not call at all.
package cdntest

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"roomengine/aliyun/internal/apifake"
)

// Actions the fake serves.
const (
	ActionStart = "StartMixStreamsService"
	ActionStop  = "StopMixStreamsService"
)

// MaxSkew is how far a request's Timestamp may be from the server's clock.
const MaxSkew = 15 * time.Minute

// Call is one verified Start or Stop request.
type Call struct {
	Action   string
	Main     string // MainStreamName
	Mix      string // MixStreamName
	Template string // MixTemplate, "" when absent
	MixType  string // MixType, "" when absent
	// Params holds every received parameter, Signature included.
	Params url.Values
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to configure as ali.urls.cdn.url (http://127.0.0.1:port).
	URL             string
	AccessKeyID     string
	AccessKeySecret string
	// Version is the API version the fake requires, 2014-11-11.
	Version string

	web *apifake.Server

	mu      sync.Mutex
	now     func() time.Time
	nonces  map[string]bool
	calls   []Call
	faults  apifake.Faults
	streams func(main, mix string) []string
	seq     int
}

// New starts a fake that accepts the given credentials. Close it when done.
func New(accessKeyID, accessKeySecret string) *Server {
	s := &Server{
		AccessKeyID:     accessKeyID,
		AccessKeySecret: accessKeySecret,
		Version:         "2014-11-11",
		now:             time.Now,
		nonces:          map[string]bool{},
	}
	s.web = apifake.Start(s.serve)
	s.URL = s.web.URL
	return s
}

// Close stops the server; delayed requests are cut short.
func (s *Server) Close() { s.web.Close() }

// Refuse closes the listener (and every idle connection): from now on a connection to URL
// is refused. Calls and Requests stay readable.
func (s *Server) Refuse() { s.Close() }

// Requests is the number of HTTP requests that reached the server, verified or not.
func (s *Server) Requests() int { return s.web.Requests() }

// Calls returns the verified calls in the order they arrived.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// FailWith makes every verified call answer HTTP status with the given Aliyun Code and
// Message until Succeed is called.
func (s *Server) FailWith(status int, code, message string) {
	s.faults.Fail("", -1, status, code, message)
}

// FailNext makes the next n verified calls answer like FailWith, then succeed again.
func (s *Server) FailNext(n, status int, code, message string) {
	s.faults.Fail("", n, status, code, message)
}

// Succeed clears injected failures and the delay.
func (s *Server) Succeed() {
	s.faults.Clear()
}

// SetDelay makes every verified call wait d before it is answered (to provoke client
// timeouts). The wait ends early when the client goes away or the server closes.
func (s *Server) SetDelay(d time.Duration) {
	s.faults.SetDelay(d)
}

// SetStreams sets the stream names a Start answers; by default one, main + "_" + mix.
func (s *Server) SetStreams(f func(main, mix string) []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams = f
}

// SetNow sets the clock Timestamps are checked against (default time.Now).
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

var commonParams = []string{
	"Action", "Format", "Version", "AccessKeyId", "SignatureMethod", "SignatureVersion",
	"SignatureNonce", "Timestamp", "Signature",
}

var mixParams = []string{
	"MainDomainName", "MainAppName", "MainStreamName", "MixDomainName", "MixAppName", "MixStreamName",
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seq++
	requestID := fmt.Sprintf("FAKE-%08d", s.seq)
	s.mu.Unlock()

	params, aerr := s.verify(r)
	if aerr != nil {
		apifake.WriteError(w, r, requestID, aerr)
		return
	}
	call := Call{
		Action: params.Get("Action"), Main: params.Get("MainStreamName"), Mix: params.Get("MixStreamName"),
		Template: params.Get("MixTemplate"), MixType: params.Get("MixType"), Params: params,
	}

	s.mu.Lock()
	s.calls = append(s.calls, call)
	streams := s.streams
	s.mu.Unlock()

	fail, delay := s.faults.Take(call.Action)
	if !s.web.Wait(r, delay) {
		return
	}
	if fail != nil {
		apifake.WriteError(w, r, requestID, &apifake.Error{Status: fail.Status, Code: fail.Code, Message: fail.Message})
		return
	}

	answer := map[string]any{"RequestId": requestID}
	if call.Action == ActionStart {
		names := []string{call.Main + "_" + call.Mix}
		if streams != nil {
			names = streams(call.Main, call.Mix)
		}
		infos := make([]map[string]string, 0, len(names))
		for _, n := range names {
			infos = append(infos, map[string]string{
				"DomainName": params.Get("MainDomainName"), "AppName": params.Get("MainAppName"), "StreamName": n,
			})
		}
		answer["MixStreamsInfoList"] = map[string]any{"MixStreamsInfo": infos}
	}
	apifake.WriteJSON(w, http.StatusOK, answer)
}

// verify runs Aliyun's checks and returns the parameters of a valid request.
func (s *Server) verify(r *http.Request) (url.Values, *apifake.Error) {
	if r.URL.Path != "/" {
		return nil, apifake.Errf(http.StatusNotFound, "InvalidAction.NotFound", "path %q not found", r.URL.Path)
	}
	if r.Method != http.MethodGet {
		return nil, apifake.Errf(http.StatusBadRequest, "UnsupportedHTTPMethod", "this fake serves GET only")
	}
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, apifake.Errf(http.StatusBadRequest, "InvalidParameter", "malformed query: %v", err)
	}
	for k, v := range params {
		if len(v) != 1 {
			return nil, apifake.Errf(http.StatusBadRequest, "InvalidParameter", "parameter %q given %d times", k, len(v))
		}
	}
	if aerr := missing(params, commonParams); aerr != nil {
		return nil, aerr
	}
	if f := params.Get("Format"); f != "JSON" {
		return nil, apifake.Errf(http.StatusBadRequest, "InvalidParameter", "this fake answers Format JSON only, got %q", f)
	}
	if v := params.Get("Version"); v != s.Version {
		return nil, apifake.Errf(http.StatusBadRequest, "InvalidVersion", "specified parameter Version %q is not valid", v)
	}
	if m := params.Get("SignatureMethod"); m != "HMAC-SHA1" {
		return nil, apifake.Errf(http.StatusBadRequest, "InvalidSignatureMethod", "unsupported SignatureMethod %q", m)
	}
	if v := params.Get("SignatureVersion"); v != "1.0" {
		return nil, apifake.Errf(http.StatusBadRequest, "InvalidSignatureVersion", "unsupported SignatureVersion %q", v)
	}
	if id := params.Get("AccessKeyId"); id != s.AccessKeyID {
		return nil, apifake.Errf(http.StatusNotFound, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
	}
	ts, err := time.Parse("2006-01-02T15:04:05Z", params.Get("Timestamp"))
	if err != nil {
		return nil, apifake.Errf(http.StatusBadRequest, "InvalidTimeStamp.Format",
			"Specified time stamp or date value is not well formatted.")
	}
	s.mu.Lock()
	now := s.now()
	s.mu.Unlock()
	if d := now.Sub(ts); d > MaxSkew || d < -MaxSkew {
		return nil, apifake.Errf(http.StatusBadRequest, "InvalidTimeStamp.Expired",
			"Specified time stamp or date value is expired.")
	}
	want := Signature(r.Method, params, s.AccessKeySecret)
	if !hmac.Equal([]byte(want), []byte(params.Get("Signature"))) {
		return nil, apifake.Errf(http.StatusBadRequest, "SignatureDoesNotMatch",
			"Specified signature is not matched with our calculation.")
	}
	nonce := params.Get("SignatureNonce")
	s.mu.Lock()
	used := s.nonces[nonce]
	s.nonces[nonce] = true
	s.mu.Unlock()
	if used {
		return nil, apifake.Errf(http.StatusBadRequest, "SignatureNonceUsed", "Specified signature nonce was used already.")
	}
	switch a := params.Get("Action"); a {
	case ActionStart:
		if aerr := missing(params, append(mixParams, "MixTemplate", "MixType")); aerr != nil {
			return nil, aerr
		}
	case ActionStop:
		if aerr := missing(params, mixParams); aerr != nil {
			return nil, aerr
		}
	default:
		return nil, apifake.Errf(http.StatusNotFound, "InvalidAction.NotFound", "Specified api %q is not found.", a)
	}
	return params, nil
}

func missing(params url.Values, names []string) *apifake.Error {
	for _, n := range names {
		if params.Get(n) == "" {
			return apifake.Errf(http.StatusBadRequest, "MissingParameter",
				"The input parameter %q that is mandatory for processing this request is not supplied.", n)
		}
	}
	return nil
}

// Signature is Aliyun's RPC signature v1 of a request's parameters (Signature itself left
// out): parameters sorted by name, names and values percent-encoded (RFC 3986),
// StringToSign = method + "&%2F&" + apifake.Encode(canonical query), key = secret + "&",
// base64(HMAC-SHA1). It is written independently of package aliyun's signer, in the style of
// Aliyun's SDKs, so the two check each other.
func Signature(method string, params url.Values, secret string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "Signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(apifake.Encode(k) + "=" + apifake.Encode(params.Get(k)))
	}
	toSign := method + "&" + apifake.Encode("/") + "&" + apifake.Encode(b.String())
	m := hmac.New(sha1.New, []byte(secret+"&"))
	m.Write([]byte(toSign))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
