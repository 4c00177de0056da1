// Package livetest is a fake of Aliyun's Live API (live.aliyuncs.com, version 2016-11-01:
// CreateMixStream, UpdateMixStream, DeleteMixStream, DescribeMixStreamList) on a loopback
// httptest server, for tests of the Live mix client and of the wiring that uses it.
//
// It checks requests the way Aliyun does: the V3 signature (ACS3-HMAC-SHA256) recomputed from
// the received request with its own canonicalisation (independent of package aliyun's
// signer; Signature is checked against Aliyun's published vector in this package's tests),
// the x-acs-* headers (action, version, date at most 15 minutes off, a nonce never used
// twice, the body's SHA-256), the required parameters and the JSON shapes of
// InputStreamList, OutputConfig and CallbackConfig. A request that fails a check gets
// Aliyun's error answer (HTTP 4xx, JSON {"RequestId","HostId","Code","Message"}) and is not
// recorded as a call.
//
// Verified calls are recorded (Calls) and take effect: a Create adds a running mix (Mixes),
// a Delete removes it. An injected error (FailWith, FailNext) answers instead, without
// effect. SetDelay delays the answer after the effect, as when Aliyun did the work but the
// answer was lost to a timeout. Refuse closes the listener so later connections are refused.
package livetest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
	ActionCreate   = "CreateMixStream"
	ActionUpdate   = "UpdateMixStream"
	ActionDelete   = "DeleteMixStream"
	ActionDescribe = "DescribeMixStreamList"
	ActionOnline   = "DescribeLiveStreamsOnlineList"
)

// MaxSkew is how far a request's x-acs-date may be from the server's clock.
const MaxSkew = 15 * time.Minute

// Layouts are the LayoutIds CreateMixStream accepts.
var Layouts = []string{"MixStreamLayout-1-1", "MixStreamLayout-2-1", "MixStreamLayout-2-2", "MixStreamLayout-2-3",
	"MixStreamLayout-3-1", "MixStreamLayout-3-2", "MixStreamLayout-4-1", "USERDEFINED"}

// Input is one decoded element of InputStreamList.
type Input struct {
	LayoutChildID int    `json:"LayoutChildId"`
	ResourceType  string `json:"ResourceType"`
	ResourceValue string `json:"ResourceValue"`
	LayoutConfig  *struct {
		FillMode               string    `json:"FillMode"`
		PositionRefer          string    `json:"PositionRefer"`
		FillPositionNormalized []float64 `json:"FillPositionNormalized"`
		FillSizeNormalized     []float64 `json:"FillSizeNormalized"`
	} `json:"LayoutConfig"`
}

// Output is the decoded OutputConfig.
type Output struct {
	AppName           string `json:"AppName"`
	StreamName        string `json:"StreamName"`
	MixStreamTemplate string `json:"MixStreamTemplate,omitempty"`
	ExpireDuration    *int   `json:"ExpireDuration,omitempty"`
}

// Call is one verified request.
type Call struct {
	Action string
	Params url.Values
	// Create and Update: the decoded JSON parameters.
	Inputs      []Input
	Output      Output
	CallbackURL string
	MixStreamID string // Delete, Update; and the id a Create answered
}

// Mix is a running mix.
type Mix struct {
	ID          string
	DomainName  string
	LayoutID    string
	Inputs      []Input
	Output      Output
	CallbackURL string
	Created     time.Time
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to configure as ali.urls.live.url (http://127.0.0.1:port).
	URL             string
	AccessKeyID     string
	AccessKeySecret string
	Version         string // 2016-11-01

	web *apifake.Server

	mu     sync.Mutex
	now    func() time.Time
	nonces map[string]bool
	calls  []Call
	mixes  map[string]*Mix
	online []online
	faults apifake.Faults
	seq    int
}

// New starts a fake that accepts the given credentials. Close it when done.
func New(accessKeyID, accessKeySecret string) *Server {
	s := &Server{AccessKeyID: accessKeyID, AccessKeySecret: accessKeySecret, Version: "2016-11-01",
		now: time.Now, nonces: map[string]bool{}, mixes: map[string]*Mix{}}
	s.web = apifake.Start(s.serve)
	s.URL = s.web.URL
	return s
}

// SetOnline sets the streams DescribeLiveStreamsOnlineList lists: app/stream on domain.
func (s *Server) SetOnline(domain, app string, streams ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.online = s.online[:0]
	for _, st := range streams {
		s.online = append(s.online, online{domain: domain, app: app, stream: st})
	}
}

type online struct{ domain, app, stream string }

// Close stops the server; delayed requests are cut short.
func (s *Server) Close() { s.web.Close() }

// Refuse closes the listener: from now on a connection to URL is refused.
func (s *Server) Refuse() { s.Close() }

// Requests is the number of HTTP requests that reached the server, verified or not.
func (s *Server) Requests() int { return s.web.Requests() }

// Calls returns the verified calls in the order they arrived (of one action when given).
func (s *Server) Calls(action ...string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if len(action) == 0 || c.Action == action[0] {
			out = append(out, c)
		}
	}
	return out
}

// Mixes returns the running mixes, oldest first.
func (s *Server) Mixes() []Mix {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Mix, 0, len(s.mixes))
	for _, m := range s.mixes {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// FailWith makes every verified call of action ("" = any) answer HTTP status with the
// given Code and Message, without effect, until Succeed.
func (s *Server) FailWith(action string, status int, code, message string) {
	s.faults.Fail(action, -1, status, code, message)
}

// FailNext makes the next n verified calls of action ("" = any) fail like FailWith.
func (s *Server) FailNext(action string, n, status int, code, message string) {
	s.faults.Fail(action, n, status, code, message)
}

// Succeed clears injected failures and the delay.
func (s *Server) Succeed() {
	s.faults.Clear()
}

// SetDelay makes every verified call wait d after its effect before it is answered. The wait
// ends early (without an answer) when the client goes away or the server closes.
func (s *Server) SetDelay(d time.Duration) {
	s.faults.SetDelay(d)
}

// SetNow sets the clock x-acs-date is checked against (default time.Now).
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seq++
	requestID := fmt.Sprintf("LIVE-FAKE-%08d", s.seq)
	s.mu.Unlock()

	call, aerr := s.verify(r)
	if aerr != nil {
		apifake.WriteError(w, r, requestID, aerr)
		return
	}
	fail, delay := s.faults.Take(call.Action)
	s.mu.Lock()
	var answer map[string]any
	if fail == nil {
		answer, aerr = s.apply(&call)
	}
	s.calls = append(s.calls, call)
	s.mu.Unlock()

	if !s.web.Wait(r, delay) {
		return
	}
	switch {
	case fail != nil:
		apifake.WriteError(w, r, requestID, &apifake.Error{Status: fail.Status, Code: fail.Code, Message: fail.Message})
	case aerr != nil:
		apifake.WriteError(w, r, requestID, aerr)
	default:
		answer["RequestId"] = requestID
		apifake.WriteJSON(w, http.StatusOK, answer)
	}
}

// apply performs a verified call (s.mu held).
func (s *Server) apply(c *Call) (map[string]any, *apifake.Error) {
	p := c.Params
	switch c.Action {
	case ActionCreate:
		c.MixStreamID = newID()
		s.mixes[c.MixStreamID] = &Mix{ID: c.MixStreamID, DomainName: p.Get("DomainName"), LayoutID: p.Get("LayoutId"),
			Inputs: c.Inputs, Output: c.Output, CallbackURL: c.CallbackURL, Created: s.now()}
		return map[string]any{"MixStreamId": c.MixStreamID}, nil
	case ActionUpdate:
		m, ok := s.mixes[c.MixStreamID]
		if !ok || m.DomainName != p.Get("DomainName") {
			return nil, apifake.Errf(http.StatusNotFound, "MixStreamNotFound", "mix stream %q not found", c.MixStreamID)
		}
		m.Inputs, m.LayoutID = c.Inputs, p.Get("LayoutId")
		return map[string]any{"MixStreamId": m.ID}, nil
	case ActionOnline:
		return s.onlineList(p), nil
	case ActionDelete:
		m, ok := s.mixes[c.MixStreamID]
		if !ok || m.DomainName != p.Get("DomainName") {
			return nil, apifake.Errf(http.StatusNotFound, "MixStreamNotFound", "mix stream %q not found", c.MixStreamID)
		}
		delete(s.mixes, c.MixStreamID)
		return map[string]any{"MixStreamId": m.ID}, nil
	}
	list := []map[string]any{}
	for _, m := range s.mixes {
		if (p.Get("DomainName") != "" && m.DomainName != p.Get("DomainName")) ||
			(p.Get("AppName") != "" && m.Output.AppName != p.Get("AppName")) ||
			(p.Get("StreamName") != "" && m.Output.StreamName != p.Get("StreamName")) ||
			(p.Get("MixStreamId") != "" && m.ID != p.Get("MixStreamId")) {
			continue
		}
		list = append(list, map[string]any{"MixStreamId": m.ID, "DomainName": m.DomainName, "AppName": m.Output.AppName,
			"StreamName": m.Output.StreamName, "LayoutId": m.LayoutID, "InputStreamNumber": len(m.Inputs),
			"GmtCreate": m.Created.UTC().Format(dateFormat)})
	}
	sort.Slice(list, func(i, j int) bool { return list[i]["MixStreamId"].(string) < list[j]["MixStreamId"].(string) })
	return map[string]any{"MixStreamList": list, "Total": len(list)}, nil
}

// onlineList answers DescribeLiveStreamsOnlineList: the streams of DomainName (and
// AppName, when given), one page of PageSize (default 2000) from PageNum (default 1).
func (s *Server) onlineList(p url.Values) map[string]any {
	var all []map[string]any
	for _, o := range s.online {
		if o.domain == p.Get("DomainName") && (p.Get("AppName") == "" || o.app == p.Get("AppName")) {
			all = append(all, map[string]any{"DomainName": o.domain, "AppName": o.app, "StreamName": o.stream,
				"PublishTime": s.now().UTC().Format(dateFormat), "PublishType": "edge"})
		}
	}
	size, num := atoiOr(p.Get("PageSize"), 2000), atoiOr(p.Get("PageNum"), 1)
	from := min(len(all), (num-1)*size)
	page := all[from:min(len(all), from+size)]
	if page == nil {
		page = []map[string]any{}
	}
	return map[string]any{"OnlineInfo": map[string]any{"LiveStreamOnlineInfo": page}, "PageNum": num, "PageSize": size,
		"TotalNum": len(all), "TotalPage": (len(all) + size - 1) / size}
}

func atoiOr(s string, def int) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil || n < 1 {
		return def
	}
	return n
}

const dateFormat = "2006-01-02T15:04:05Z"

var required = map[string][]string{
	ActionCreate:   {"DomainName", "LayoutId", "InputStreamList", "OutputConfig"},
	ActionUpdate:   {"DomainName", "MixStreamId", "InputStreamList", "LayoutId"},
	ActionDelete:   {"DomainName", "MixStreamId"},
	ActionDescribe: {},
	ActionOnline:   {"DomainName"},
}

// verify runs Aliyun's checks and returns the call of a valid request.
func (s *Server) verify(r *http.Request) (Call, *apifake.Error) {
	if r.URL.Path != "/" {
		return Call{}, apifake.Errf(http.StatusNotFound, "InvalidAction.NotFound", "path %q not found", r.URL.Path)
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		return Call{}, apifake.Errf(http.StatusBadRequest, "UnsupportedHTTPMethod", "method %s", r.Method)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return Call{}, apifake.Errf(http.StatusBadRequest, "InvalidParameter", "body: %v", err)
	}
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return Call{}, apifake.Errf(http.StatusBadRequest, "InvalidParameter", "malformed query: %v", err)
	}
	for k, v := range params {
		if len(v) != 1 {
			return Call{}, apifake.Errf(http.StatusBadRequest, "InvalidParameter", "parameter %q given %d times", k, len(v))
		}
	}
	h := func(name string) string { return r.Header.Get(name) }
	for _, name := range []string{"Authorization", "x-acs-action", "x-acs-version", "x-acs-date",
		"x-acs-signature-nonce", "x-acs-content-sha256"} {
		if h(name) == "" {
			return Call{}, apifake.Errf(http.StatusBadRequest, "MissingParameter", "header %s is missing", name)
		}
	}
	if v := h("x-acs-version"); v != s.Version {
		return Call{}, apifake.Errf(http.StatusBadRequest, "InvalidVersion", "Specified parameter Version %q is not valid.", v)
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != h("x-acs-content-sha256") {
		return Call{}, apifake.Errf(http.StatusBadRequest, "ContentSHA256NotMatched", "x-acs-content-sha256 does not match the body")
	}
	algo, rest, _ := strings.Cut(h("Authorization"), " ")
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	if algo != "ACS3-HMAC-SHA256" {
		return Call{}, apifake.Errf(http.StatusBadRequest, "InvalidSignatureMethod", "unsupported algorithm %q", algo)
	}
	if fields["Credential"] != s.AccessKeyID {
		return Call{}, apifake.Errf(http.StatusNotFound, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	for _, must := range []string{"host", "x-acs-action", "x-acs-content-sha256", "x-acs-date",
		"x-acs-signature-nonce", "x-acs-version"} {
		if !contains(signed, must) {
			return Call{}, apifake.Errf(http.StatusBadRequest, "IncompleteSignature", "header %s is not signed", must)
		}
	}
	headers := map[string]string{}
	for _, name := range signed {
		if name == "host" {
			headers[name] = r.Host
		} else {
			headers[name] = h(name)
		}
	}
	want := Signature(r.Method, r.URL.Path, params, headers, h("x-acs-content-sha256"), s.AccessKeySecret)
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return Call{}, apifake.Errf(http.StatusBadRequest, "SignatureDoesNotMatch",
			"Specified signature is not matched with our calculation.")
	}
	date, err := time.Parse(dateFormat, h("x-acs-date"))
	if err != nil {
		return Call{}, apifake.Errf(http.StatusBadRequest, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.")
	}
	s.mu.Lock()
	now := s.now()
	used := s.nonces[h("x-acs-signature-nonce")]
	s.nonces[h("x-acs-signature-nonce")] = true
	s.mu.Unlock()
	if d := now.Sub(date); d > MaxSkew || d < -MaxSkew {
		return Call{}, apifake.Errf(http.StatusBadRequest, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
	}
	if used {
		return Call{}, apifake.Errf(http.StatusBadRequest, "SignatureNonceUsed", "Specified signature nonce was used already.")
	}
	action := h("x-acs-action")
	need, ok := required[action]
	if !ok {
		return Call{}, apifake.Errf(http.StatusNotFound, "InvalidAction.NotFound", "Specified api %q is not found.", action)
	}
	if params.Get("RegionId") == "" {
		need = append(need, "RegionId")
	}
	for _, n := range need {
		if params.Get(n) == "" {
			return Call{}, apifake.Errf(http.StatusBadRequest, "MissingParameter",
				"The input parameter %q that is mandatory for processing this request is not supplied.", n)
		}
	}
	c := Call{Action: action, Params: params, MixStreamID: params.Get("MixStreamId")}
	if action == ActionCreate || action == ActionUpdate {
		if aerr := decodeMixParams(&c); aerr != nil {
			return Call{}, aerr
		}
	}
	return c, nil
}

// decodeMixParams checks the JSON parameters of Create and Update.
func decodeMixParams(c *Call) *apifake.Error {
	p := c.Params
	layout := p.Get("LayoutId")
	if !contains(Layouts, layout) {
		return apifake.Errf(http.StatusBadRequest, "InvalidParameter", "LayoutId %q is not valid", layout)
	}
	bad := func(format string, args ...any) *apifake.Error {
		return apifake.Errf(http.StatusBadRequest, "InvalidParameter", format, args...)
	}
	dec := json.NewDecoder(strings.NewReader(p.Get("InputStreamList")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.Inputs); err != nil || len(c.Inputs) == 0 {
		return bad("InputStreamList is not a JSON array of inputs: %v", err)
	}
	children := map[int]bool{}
	for _, in := range c.Inputs {
		if in.LayoutChildID < 1 || children[in.LayoutChildID] {
			return bad("LayoutChildId %d is missing or repeated", in.LayoutChildID)
		}
		children[in.LayoutChildID] = true
		if in.ResourceType != "live" || !strings.HasPrefix(in.ResourceValue, "rtmp://") {
			return bad("input %d: ResourceType live with an rtmp:// ResourceValue expected", in.LayoutChildID)
		}
		lc := in.LayoutConfig
		if lc == nil {
			if layout == "USERDEFINED" {
				return bad("input %d: USERDEFINED needs a LayoutConfig", in.LayoutChildID)
			}
			continue
		}
		if len(lc.FillPositionNormalized) != 2 || len(lc.FillSizeNormalized) != 2 || lc.FillMode == "" || lc.PositionRefer == "" {
			return bad("input %d: LayoutConfig needs FillMode, PositionRefer and two-element normalized position and size", in.LayoutChildID)
		}
		for _, v := range append(append([]float64{}, lc.FillPositionNormalized...), lc.FillSizeNormalized...) {
			if v < 0 || v > 1 {
				return bad("input %d: normalized value %v outside 0..1", in.LayoutChildID, v)
			}
		}
	}
	if c.Action == ActionUpdate {
		return nil
	}
	dec = json.NewDecoder(strings.NewReader(p.Get("OutputConfig")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.Output); err != nil || c.Output.AppName == "" || c.Output.StreamName == "" {
		return bad("OutputConfig needs AppName and StreamName: %v", err)
	}
	if raw := p.Get("CallbackConfig"); raw != "" {
		var cb struct {
			CallbackURL string `json:"CallbackUrl"`
		}
		dec = json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cb); err != nil || !strings.HasPrefix(cb.CallbackURL, "http") {
			return bad("CallbackConfig needs an http(s) CallbackUrl: %v", err)
		}
		c.CallbackURL = cb.CallbackURL
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Signature is the V3 signature (hex) of a request, written independently of package
// aliyun's signer in the style of Aliyun's SDKs: the canonical query re-encodes every
// parameter (QueryEscape, then %20 for a space, %2A for '*', '~' literal), sorted by encoded
// name; the canonical headers are the given ones lower-cased and trimmed, sorted, and all of
// them are signed.
func Signature(method, path string, query url.Values, headers map[string]string, payloadHash, secret string) string {
	pairs := make([]string, 0, len(query))
	for k := range query {
		pairs = append(pairs, apifake.Encode(k)+"="+apifake.Encode(query.Get(k)))
	}
	sort.Strings(pairs)
	names := make([]string, 0, len(headers))
	lower := map[string]string{}
	for k, v := range headers {
		lk := strings.ToLower(k)
		names = append(names, lk)
		lower[lk] = strings.TrimSpace(v)
	}
	sort.Strings(names)
	var canon strings.Builder
	canon.WriteString(method + "\n" + path + "\n" + strings.Join(pairs, "&") + "\n")
	for _, n := range names {
		canon.WriteString(n + ":" + lower[n] + "\n")
	}
	canon.WriteString("\n" + strings.Join(names, ";") + "\n" + payloadHash)
	digest := sha256.Sum256([]byte(canon.String()))
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("ACS3-HMAC-SHA256\n" + hex.EncodeToString(digest[:])))
	return hex.EncodeToString(m.Sum(nil))
}
