// Package mnstest is a fake Aliyun MNS topic service for tests. It listens on loopback
// (httptest) and checks each request the way MNS does before it answers: the Authorization
// signature is recomputed from the request as received (403 SignatureDoesNotMatch when it
// differs), x-mns-version must be present, and Date must be within 15 minutes of the
// server's clock. It keeps topics, subscriptions and published messages for assertions, and
// can be told to fail requests, answer slowly, or be down.
//
// It implements its own signature check rather than calling package aliyun, so a client
// bug cannot be mirrored by the fake.
package mnstest

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Namespace is the XML namespace of MNS request and answer bodies.
const Namespace = "http://mns.aliyuncs.com/doc/v1/"

// Version is the only x-mns-version the fake accepts.
const Version = "2015-06-06"

// MaxDateSkew is how far a request's Date may be from the server's clock.
const MaxDateSkew = 15 * time.Minute

// DownMode says how a down server answers.
type DownMode int

const (
	// Up answers normally.
	Up DownMode = iota
	// Down503 answers every request 503 ServiceUnavailable.
	Down503
	// DownClose closes every connection without answering.
	DownClose
)

// Subscription is one subscription of a topic as the fake received it.
type Subscription struct {
	Name                string
	Endpoint            string
	NotifyStrategy      string
	NotifyContentFormat string
}

// Message is one published message as the fake parsed it from the request XML.
type Message struct {
	Topic      string
	ID         string
	Body       string
	Tag        string
	Importance int
	// HasImportance is false when MessageAttributes/WebSocket/ImportanceLevel was absent.
	HasImportance bool
}

// Rejection is a request the fake refused while verifying it (signature, version, date,
// XML), kept so a test can see why a client was refused.
type Rejection struct {
	Method, Path string
	Status       int
	Code         string
	Message      string
}

type topic struct {
	maxMessageSize int
	subs           map[string]Subscription
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is the endpoint to give an MNS client, e.g. http://127.0.0.1:39113.
	URL string

	srv    *httptest.Server
	keyID  string
	secret string
	quit   chan struct{}

	mu         sync.Mutex
	now        func() time.Time
	topics     map[string]*topic
	messages   []Message
	rejections []Rejection
	requests   int
	failN      int
	failStatus int
	failCode   string
	delay      time.Duration
	down       DownMode
	nextID     int
}

// New starts a fake that accepts requests signed by accessKeyID/secret. It is closed when
// the test ends.
func New(t testing.TB, accessKeyID, secret string) *Server {
	t.Helper()
	s := &Server{
		keyID:  accessKeyID,
		secret: secret,
		quit:   make(chan struct{}),
		now:    time.Now,
		topics: make(map[string]*topic),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops the server; pending delayed answers are abandoned.
func (s *Server) Close() {
	select {
	case <-s.quit:
		return
	default:
		close(s.quit)
	}
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Requests is how many HTTP requests reached the server so far, refused ones included.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// FailNext makes the next n requests (that find the server up) answer status with an MNS
// error of the given code, before any verification, e.g. FailNext(3, 503, "InternalError").
func (s *Server) FailNext(n, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failStatus, s.failCode = n, status, code
}

// SetDelay delays every answer by d (0: none). A client that gives up first is not answered.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetDown switches the server down (Down503, DownClose) or back Up.
func (s *Server) SetDown(mode DownMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = mode
}

// SetNow sets the clock request dates are checked against (default time.Now).
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Topics are the names of the existing topics, sorted.
func (s *Server) Topics() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.topics))
	for n := range s.topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// HasTopic reports whether topic exists.
func (s *Server) HasTopic(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.topics[name]
	return ok
}

// TopicMaxMessageSize is the MaximumMessageSize topic was created with (0 if unknown).
func (s *Server) TopicMaxMessageSize(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.topics[name]; ok {
		return t.maxMessageSize
	}
	return 0
}

// Subscriptions of an existing topic, sorted by name.
func (s *Server) Subscriptions(topicName string) []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.topics[topicName]
	if !ok {
		return nil
	}
	out := make([]Subscription, 0, len(t.subs))
	for _, sub := range t.subs {
		out = append(out, sub)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Messages published to topicName, in the order they were accepted (they stay recorded
// after the topic is deleted).
func (s *Server) Messages(topicName string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages {
		if m.Topic == topicName {
			out = append(out, m)
		}
	}
	return out
}

// AllMessages are every accepted message in order.
func (s *Server) AllMessages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.messages)
}

// Rejections are the requests refused by verification so far.
func (s *Server) Rejections() []Rejection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rejections)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	down, delay := s.down, s.delay
	s.mu.Unlock()

	switch down {
	case Down503:
		s.writeError(w, r, http.StatusServiceUnavailable, "ServiceUnavailable", "the service is down (fake)", false)
		return
	case DownClose:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}

	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-s.quit:
			return
		}
	}

	s.mu.Lock()
	if s.failN > 0 {
		s.failN--
		status, code := s.failStatus, s.failCode
		s.mu.Unlock()
		s.writeError(w, r, status, code, "injected failure (fake)", false)
		return
	}
	s.mu.Unlock()

	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	if !s.verify(w, r, body) {
		return
	}
	s.route(w, r, body)
}

// verify checks the request as MNS would and answers the error itself when it fails.
func (s *Server) verify(w http.ResponseWriter, r *http.Request, body []byte) bool {
	reject := func(status int, code, msg string) bool {
		s.writeError(w, r, status, code, msg, true)
		return false
	}
	version := r.Header.Get("x-mns-version")
	if version == "" {
		return reject(http.StatusBadRequest, "MissingVersionHeader", "x-mns-version header is missing")
	}
	if version != Version {
		return reject(http.StatusBadRequest, "InvalidVersionHeader", "unsupported x-mns-version "+version)
	}
	date := r.Header.Get("Date")
	if date == "" {
		return reject(http.StatusBadRequest, "MissingDateHeader", "Date header is missing")
	}
	t, err := time.Parse(http.TimeFormat, date)
	if err != nil {
		return reject(http.StatusBadRequest, "InvalidDateHeader", "Date is not RFC 1123 GMT: "+date)
	}
	s.mu.Lock()
	now := s.now()
	s.mu.Unlock()
	if skew := now.Sub(t); skew > MaxDateSkew || skew < -MaxDateSkew {
		return reject(http.StatusRequestTimeout, "TimeExpired", "the request Date is more than 15 minutes away: "+date)
	}
	if len(body) > 0 && !strings.HasPrefix(r.Header.Get("Content-Type"), "text/xml") {
		return reject(http.StatusBadRequest, "InvalidContentType", "Content-Type must be text/xml")
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return reject(http.StatusForbidden, "MissingAuthorizationHeader", "Authorization header is missing")
	}
	cred, ok := strings.CutPrefix(auth, "MNS ")
	keyID, sig, ok2 := strings.Cut(cred, ":")
	if !ok || !ok2 || keyID == "" || sig == "" {
		return reject(http.StatusForbidden, "InvalidAuthorizationHeader", "Authorization is not MNS AccessKeyId:Signature")
	}
	if keyID != s.keyID {
		return reject(http.StatusForbidden, "InvalidAccessKeyId", "unknown AccessKeyId "+keyID)
	}
	sts := stringToSign(r)
	m := hmac.New(sha1.New, []byte(s.secret))
	m.Write([]byte(sts))
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return reject(http.StatusForbidden, "SignatureDoesNotMatch",
			"The request signature we calculated does not match the signature you provided. StringToSign: "+
				strings.ReplaceAll(sts, "\n", `\n`))
	}
	return true
}

func stringToSign(r *http.Request) string {
	var names []string
	for k := range r.Header {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-mns-") {
			names = append(names, lk)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(r.Method + "\n" + r.Header.Get("Content-MD5") + "\n" + r.Header.Get("Content-Type") +
		"\n" + r.Header.Get("Date") + "\n")
	for _, n := range names {
		vals := slices.Clone(r.Header.Values(n))
		for i := range vals {
			vals[i] = strings.TrimSpace(vals[i])
		}
		b.WriteString(n + ":" + strings.Join(vals, ",") + "\n")
	}
	b.WriteString(r.URL.EscapedPath())
	if r.URL.RawQuery != "" {
		b.WriteString("?" + r.URL.RawQuery)
	}
	return b.String()
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 2 && parts[0] == "topics" && r.Method == http.MethodPut:
		s.createTopic(w, r, parts[1], body)
	case len(parts) == 2 && parts[0] == "topics" && r.Method == http.MethodDelete:
		s.deleteTopic(w, r, parts[1])
	case len(parts) == 4 && parts[0] == "topics" && parts[2] == "subscriptions" && r.Method == http.MethodPut:
		s.subscribe(w, r, parts[1], parts[3], body)
	case len(parts) == 3 && parts[0] == "topics" && parts[2] == "messages" && r.Method == http.MethodPost:
		s.publish(w, r, parts[1], body)
	default:
		s.writeError(w, r, http.StatusBadRequest, "InvalidRequestURL", r.Method+" "+r.URL.Path+" is not supported (fake)", true)
	}
}

func validName(n string) bool {
	if n == "" || len(n) > 256 || n[0] == '-' {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func (s *Server) createTopic(w http.ResponseWriter, r *http.Request, name string, body []byte) {
	if !validName(name) {
		s.writeError(w, r, http.StatusBadRequest, "InvalidTopicName", "bad topic name "+name, true)
		return
	}
	var req struct {
		XMLName            xml.Name `xml:"http://mns.aliyuncs.com/doc/v1/ Topic"`
		MaximumMessageSize *int     `xml:"MaximumMessageSize"`
	}
	if len(body) > 0 {
		if err := xml.Unmarshal(body, &req); err != nil {
			s.writeError(w, r, http.StatusBadRequest, "MalformedXML", "Topic XML: "+err.Error(), true)
			return
		}
	}
	size := 65536
	if req.MaximumMessageSize != nil {
		size = *req.MaximumMessageSize
	}
	if size < 1024 || size > 65536 {
		s.writeError(w, r, http.StatusBadRequest, "InvalidArgument", "MaximumMessageSize out of range", true)
		return
	}
	s.mu.Lock()
	t, exists := s.topics[name]
	switch {
	case exists && t.maxMessageSize == size:
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case exists:
		s.mu.Unlock()
		s.writeError(w, r, http.StatusConflict, "TopicAlreadyExist", "topic "+name+" exists with other attributes", false)
	default:
		s.topics[name] = &topic{maxMessageSize: size, subs: make(map[string]Subscription)}
		s.mu.Unlock()
		w.Header().Set("Location", s.URL+"/topics/"+name)
		w.WriteHeader(http.StatusCreated)
	}
}

func (s *Server) deleteTopic(w http.ResponseWriter, r *http.Request, name string) {
	s.mu.Lock()
	_, ok := s.topics[name]
	delete(s.topics, name)
	s.mu.Unlock()
	if !ok {
		s.writeError(w, r, http.StatusNotFound, "TopicNotExist", "topic "+name+" does not exist", false)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) subscribe(w http.ResponseWriter, r *http.Request, topicName, subName string, body []byte) {
	if !validName(subName) {
		s.writeError(w, r, http.StatusBadRequest, "InvalidSubscriptionName", "bad subscription name "+subName, true)
		return
	}
	var req struct {
		XMLName             xml.Name `xml:"http://mns.aliyuncs.com/doc/v1/ Subscription"`
		Endpoint            string   `xml:"Endpoint"`
		NotifyStrategy      string   `xml:"NotifyStrategy"`
		NotifyContentFormat string   `xml:"NotifyContentFormat"`
	}
	if err := xml.Unmarshal(body, &req); err != nil {
		s.writeError(w, r, http.StatusBadRequest, "MalformedXML", "Subscription XML: "+err.Error(), true)
		return
	}
	if req.Endpoint == "" {
		s.writeError(w, r, http.StatusBadRequest, "InvalidEndpoint", "Endpoint is required", true)
		return
	}
	sub := Subscription{Name: subName, Endpoint: req.Endpoint, NotifyStrategy: req.NotifyStrategy,
		NotifyContentFormat: req.NotifyContentFormat}
	s.mu.Lock()
	t, ok := s.topics[topicName]
	if !ok {
		s.mu.Unlock()
		s.writeError(w, r, http.StatusNotFound, "TopicNotExist", "topic "+topicName+" does not exist", false)
		return
	}
	old, exists := t.subs[subName]
	switch {
	case exists && old == sub:
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case exists:
		s.mu.Unlock()
		s.writeError(w, r, http.StatusConflict, "SubscriptionAlreadyExist", "subscription "+subName+" exists with other attributes", false)
	default:
		t.subs[subName] = sub
		s.mu.Unlock()
		w.Header().Set("Location", s.URL+"/topics/"+topicName+"/subscriptions/"+subName)
		w.WriteHeader(http.StatusCreated)
	}
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request, topicName string, body []byte) {
	var req struct {
		XMLName           xml.Name `xml:"http://mns.aliyuncs.com/doc/v1/ Message"`
		MessageBody       *string  `xml:"MessageBody"`
		MessageTag        string   `xml:"MessageTag"`
		MessageAttributes struct {
			WebSocket struct {
				ImportanceLevel *int `xml:"ImportanceLevel"`
			} `xml:"WebSocket"`
		} `xml:"MessageAttributes"`
	}
	if err := xml.Unmarshal(body, &req); err != nil {
		s.writeError(w, r, http.StatusBadRequest, "MalformedXML", "Message XML: "+err.Error(), true)
		return
	}
	if req.MessageBody == nil {
		s.writeError(w, r, http.StatusBadRequest, "InvalidArgument", "MessageBody is required", true)
		return
	}
	s.mu.Lock()
	t, ok := s.topics[topicName]
	if !ok {
		s.mu.Unlock()
		s.writeError(w, r, http.StatusNotFound, "TopicNotExist", "topic "+topicName+" does not exist", false)
		return
	}
	if len(*req.MessageBody) > t.maxMessageSize {
		s.mu.Unlock()
		s.writeError(w, r, http.StatusBadRequest, "InvalidArgument", "MessageBody is larger than MaximumMessageSize", true)
		return
	}
	s.nextID++
	m := Message{
		Topic: topicName,
		ID:    fmt.Sprintf("%016X", s.nextID),
		Body:  *req.MessageBody,
		Tag:   req.MessageTag,
	}
	if lvl := req.MessageAttributes.WebSocket.ImportanceLevel; lvl != nil {
		m.Importance, m.HasImportance = *lvl, true
	}
	s.messages = append(s.messages, m)
	s.mu.Unlock()
	sum := md5.Sum([]byte(m.Body))
	w.Header().Set("Content-Type", "text/xml;charset=utf-8")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Message xmlns="%s"><MessageId>%s</MessageId><MessageBodyMD5>%s</MessageBodyMD5></Message>`,
		Namespace, m.ID, strings.ToUpper(hex.EncodeToString(sum[:])))
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string, rejection bool) {
	s.mu.Lock()
	s.nextID++
	reqID := fmt.Sprintf("FAKE%012X", s.nextID)
	if rejection {
		s.rejections = append(s.rejections, Rejection{Method: r.Method, Path: r.URL.Path, Status: status, Code: code, Message: msg})
	}
	s.mu.Unlock()
	var esc strings.Builder
	_ = xml.EscapeText(&esc, []byte(msg))
	w.Header().Set("Content-Type", "text/xml;charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error xmlns="%s"><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId><HostId>%s</HostId></Error>`,
		Namespace, code, esc.String(), reqID, r.Host)
}
