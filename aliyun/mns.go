package aliyun

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// MNS defaults (config ali.mnsVersion, ali.timeout).
const (
	DefaultMNSVersion            = "2015-06-06"
	DefaultMNSTimeout            = 5 * time.Second
	DefaultMNSBreakerOpenTimeout = 10 * time.Second
)

const (
	mnsNamespace   = "http://mns.aliyuncs.com/doc/v1/"
	mnsContentType = "text/xml;charset=UTF-8"
	// mnsMaxMessageSize is the MaximumMessageSize topics are created with, the largest MNS
	// allows; a larger body is refused locally without a request.
	mnsMaxMessageSize = 65536
	// mnsMaxResponse bounds how much of a response body is read.
	mnsMaxResponse = 1 << 20
	// MNS answers these codes for an object that already exists with other attributes
	// (409), or for one that does not exist (404).
	mnsTopicAlreadyExist        = "TopicAlreadyExist"
	mnsSubscriptionAlreadyExist = "SubscriptionAlreadyExist"
	mnsTopicNotExist            = "TopicNotExist"
)

// MNSConfig configures an MNSClient. Endpoint, AccessKeyID and AccessKeySecret are required;
// every other field has a default.
type MNSConfig struct {
	// Endpoint is the account's MNS endpoint, e.g. http://{ownerId}.mns.{region}.aliyuncs.com
	// (see MNSEndpoint). Scheme and host only: MNS signs the path, so no path prefix.
	Endpoint        string
	AccessKeyID     string
	AccessKeySecret string
	// Version is sent as x-mns-version (default 2015-06-06).
	Version string
	// Timeout bounds each request, connection and response body included (default 5s).
	Timeout time.Duration
	// BreakerOpenTimeout is how long the circuit breaker stays open before it lets one
	// probe through (default 10s).
	BreakerOpenTimeout time.Duration
	// HTTPClient sends the requests (default: a client with its own transport).
	HTTPClient *http.Client
	// Now is the clock the Date header is taken from (default time.Now).
	Now func() time.Time
	// Logger receives one debug line per request (with the AccessKeyId, never the secret)
	// and a warning on each breaker state change (default slog.Default()).
	Logger *slog.Logger
	// OnBreakerStateChange, when set, is called with the old and new breaker state
	// (BreakerClosed, BreakerHalfOpen, BreakerOpen), e.g. to export a gauge. It must be quick.
	OnBreakerStateChange func(from, to string)
}

// MNSClient calls the Aliyun MNS topic API: CreateTopic, Subscribe, PublishMessage and
// DeleteTopic. Every request is signed (the MNS signature), bounded by the timeout, and
// goes through the client's own circuit breaker: 5xx answers, timeouts and network errors
// are failures; a 4xx answer is not (MNS is up, the request was refused). While the breaker
// is open a call fails fast with an error wrapping ErrBreakerOpen and sends nothing.
// Safe for concurrent use.
type MNSClient struct {
	base    *url.URL
	keyID   string
	secret  string
	version string
	timeout time.Duration
	hc      *http.Client
	now     func() time.Time
	log     *slog.Logger
	breaker *Breaker
}

// MNSError is an error answer of MNS: the HTTP status and the parsed
// <Error><Code/><Message/><RequestId/><HostId/></Error> body. A body that is not MNS error
// XML (a proxy's page, say) leaves Code empty and Message the status text.
type MNSError struct {
	Status    int
	Code      string
	Message   string
	RequestID string
	HostID    string
}

func (e *MNSError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mns: HTTP %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (RequestId " + e.RequestID + ")")
	}
	return b.String()
}

// IsMNSCode reports whether err is (or wraps) an *MNSError with the given code, e.g.
// "TopicNotExist" or "SignatureDoesNotMatch".
func IsMNSCode(err error, code string) bool {
	var me *MNSError
	return errors.As(err, &me) && me.Code == code
}

// ErrMNSInvalidRequest is wrapped by errors found before any request is sent (a bad topic
// name, a body over the maximum message size). Such calls never reach the breaker.
var ErrMNSInvalidRequest = errors.New("mns: invalid request")

// NewMNSClient checks cfg and makes a client.
func NewMNSClient(cfg MNSConfig) (*MNSClient, error) {
	if cfg.AccessKeyID == "" || cfg.AccessKeySecret == "" {
		return nil, errors.New("mns: accessKeyID and accessKeySecret are required")
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("mns: endpoint %q is not an http(s) URL", cfg.Endpoint)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("mns: endpoint %q must be scheme://host[:port] only", cfg.Endpoint)
	}
	u.Path = ""
	c := &MNSClient{
		base:    u,
		keyID:   cfg.AccessKeyID,
		secret:  cfg.AccessKeySecret,
		version: cfg.Version,
		timeout: cfg.Timeout,
		hc:      cfg.HTTPClient,
		now:     cfg.Now,
		log:     cfg.Logger,
	}
	if c.version == "" {
		c.version = DefaultMNSVersion
	}
	if c.timeout <= 0 {
		c.timeout = DefaultMNSTimeout
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		c.hc = &http.Client{Transport: tr}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	openTimeout := cfg.BreakerOpenTimeout
	if openTimeout <= 0 {
		openTimeout = DefaultMNSBreakerOpenTimeout
	}
	onChange := cfg.OnBreakerStateChange
	logger := c.log
	c.breaker = NewBreaker("mns", openTimeout, mnsFailure, WithStateChange(func(name, from, to string) {
		logger.Warn("aliyun breaker state change", "breaker", name, "from", from, "to", to)
		if onChange != nil {
			onChange(from, to)
		}
	}))
	return c, nil
}

// BreakerState is the state of the client's circuit breaker: BreakerClosed,
// BreakerHalfOpen or BreakerOpen.
func (c *MNSClient) BreakerState() string { return c.breaker.State() }

// Endpoint is the base URL requests go to.
func (c *MNSClient) Endpoint() string { return c.base.String() }

// mnsFailure tells the breaker which errors mean "MNS is unavailable".
func mnsFailure(err error) bool {
	var me *MNSError
	if errors.As(err, &me) {
		return me.Status >= 500
	}
	return err != nil
}

// CreateTopic creates topic with the largest maximum message size. It is idempotent: a topic
// that already exists (204, or 409 TopicAlreadyExist when its attributes differ) is success.
func (c *MNSClient) CreateTopic(ctx context.Context, topic string) error {
	if err := checkMNSName("topic", topic); err != nil {
		return err
	}
	body, err := mnsXML(mnsTopicReq{MaximumMessageSize: mnsMaxMessageSize})
	if err != nil {
		return err
	}
	_, err = c.do(ctx, "CreateTopic", http.MethodPut, "/topics/"+topic, body)
	if IsMNSCode(err, mnsTopicAlreadyExist) {
		return nil
	}
	return err
}

// Subscribe subscribes subscription to topic, delivering to endpoint with the
// BACKOFF_RETRY strategy and SIMPLIFIED content. Idempotent like CreateTopic (409
// SubscriptionAlreadyExist is success).
func (c *MNSClient) Subscribe(ctx context.Context, topic, subscription, endpoint string) error {
	if err := checkMNSName("topic", topic); err != nil {
		return err
	}
	if err := checkMNSName("subscription", subscription); err != nil {
		return err
	}
	body, err := mnsXML(mnsSubscriptionReq{
		Endpoint:            endpoint,
		NotifyStrategy:      "BACKOFF_RETRY",
		NotifyContentFormat: "SIMPLIFIED",
	})
	if err != nil {
		return err
	}
	_, err = c.do(ctx, "Subscribe", http.MethodPut, "/topics/"+topic+"/subscriptions/"+subscription, body)
	if IsMNSCode(err, mnsSubscriptionAlreadyExist) {
		return nil
	}
	return err
}

// PublishMessage publishes body (the push JSON) to topic with a message tag and the
// WebSocket importance level, and returns the MessageId MNS assigned. An unknown topic is
// an *MNSError with Code TopicNotExist.
func (c *MNSClient) PublishMessage(ctx context.Context, topic string, body []byte, tag string, importance int) (string, error) {
	if err := checkMNSName("topic", topic); err != nil {
		return "", err
	}
	if len(body) > mnsMaxMessageSize {
		return "", fmt.Errorf("%w: message body of %d bytes exceeds %d", ErrMNSInvalidRequest, len(body), mnsMaxMessageSize)
	}
	req := mnsMessageReq{MessageBody: string(body), MessageTag: tag}
	req.MessageAttributes.WebSocket.ImportanceLevel = importance
	x, err := mnsXML(req)
	if err != nil {
		return "", err
	}
	resp, err := c.do(ctx, "PublishMessage", http.MethodPost, "/topics/"+topic+"/messages", x)
	if err != nil {
		return "", err
	}
	var out mnsMessageResp
	if err := xml.Unmarshal(resp, &out); err != nil {
		// The message was accepted (2xx); only its id is unknown.
		return "", nil
	}
	return out.MessageID, nil
}

// DeleteTopic deletes topic and its subscriptions. Deleting a topic that does not exist
// (404 TopicNotExist) is success.
func (c *MNSClient) DeleteTopic(ctx context.Context, topic string) error {
	if err := checkMNSName("topic", topic); err != nil {
		return err
	}
	_, err := c.do(ctx, "DeleteTopic", http.MethodDelete, "/topics/"+topic, nil)
	if IsMNSCode(err, mnsTopicNotExist) {
		return nil
	}
	return err
}

// do sends one request through the breaker and returns the body of a 2xx answer.
func (c *MNSClient) do(ctx context.Context, op, method, resource string, body []byte) ([]byte, error) {
	var (
		resp   []byte
		reqErr error
	)
	err := c.breaker.Execute(func() error {
		resp, reqErr = c.roundTrip(ctx, op, method, resource, body)
		if reqErr != nil && ctx.Err() != nil {
			// The caller gave up (or its own deadline passed): that says nothing about MNS.
			return context.Canceled
		}
		return reqErr
	})
	if errors.Is(err, ErrBreakerOpen) {
		return nil, fmt.Errorf("mns %s %s: %w", op, resource, err)
	}
	if reqErr != nil {
		return nil, fmt.Errorf("mns %s %s: %w", op, resource, reqErr)
	}
	return resp, nil
}

func (c *MNSClient) roundTrip(ctx context.Context, op, method, resource string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	req, err := c.newRequest(ctx, method, resource, body)
	if err != nil {
		return nil, err
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.log.Debug("mns request failed", "op", op, "method", method, "resource", resource,
			"accessKeyId", c.keyID, "duration", time.Since(start), "err", err)
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no answer within %s: %w", c.timeout, err)
		}
		return nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, mnsMaxResponse))
	c.log.Debug("mns request", "op", op, "method", method, "resource", resource,
		"accessKeyId", c.keyID, "status", res.StatusCode, "duration", time.Since(start))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, parseMNSError(res.StatusCode, data)
	}
	return data, nil
}

// newRequest builds a signed request for resource (the path, e.g. /topics/abc/messages).
func (c *MNSClient) newRequest(ctx context.Context, method, resource string, body []byte) (*http.Request, error) {
	u := *c.base
	u.Path = resource
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	date := c.now().UTC().Format(http.TimeFormat)
	req.Header.Set("Date", date)
	req.Header.Set("x-mns-version", c.version)
	contentType := ""
	if body != nil {
		contentType = mnsContentType
		req.Header.Set("Content-Type", contentType)
	}
	sts := MNSStringToSign(method, "", contentType, date, req.Header, resource)
	req.Header.Set("Authorization", "MNS "+c.keyID+":"+SignMNS(sts, c.secret))
	return req, nil
}

// MNSStringToSign is what an MNS request signs (Aliyun's MNS signature): VERB, Content-MD5, Content-Type
// and Date, one per line, then CanonicalizedMNSHeaders (every x-mns-* header, name lower
// case, sorted, "name:value\n" each) and CanonicalizedResource (the path, with the query
// string if any).
func MNSStringToSign(method, contentMD5, contentType, date string, header http.Header, resource string) string {
	var b strings.Builder
	b.WriteString(method + "\n" + contentMD5 + "\n" + contentType + "\n" + date + "\n")
	b.WriteString(CanonicalMNSHeaders(header))
	b.WriteString(resource)
	return b.String()
}

// CanonicalMNSHeaders is the CanonicalizedMNSHeaders part of an MNS string to sign.
func CanonicalMNSHeaders(header http.Header) string {
	type kv struct{ k, v string }
	var hs []kv
	for k, vs := range header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-mns-") {
			vals := make([]string, len(vs))
			for i, v := range vs {
				vals[i] = strings.TrimSpace(v)
			}
			hs = append(hs, kv{lk, strings.Join(vals, ",")})
		}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].k < hs[j].k })
	var b strings.Builder
	for _, h := range hs {
		b.WriteString(h.k + ":" + h.v + "\n")
	}
	return b.String()
}

func parseMNSError(status int, body []byte) *MNSError {
	var x struct {
		XMLName   xml.Name `xml:"Error"`
		Code      string   `xml:"Code"`
		Message   string   `xml:"Message"`
		RequestID string   `xml:"RequestId"`
		HostID    string   `xml:"HostId"`
	}
	if err := xml.Unmarshal(body, &x); err != nil || x.Code == "" {
		return &MNSError{Status: status, Message: http.StatusText(status)}
	}
	return &MNSError{Status: status, Code: x.Code, Message: x.Message, RequestID: x.RequestID, HostID: x.HostID}
}

// checkMNSName enforces MNS naming (letters, digits and hyphens, starting with a letter or
// digit, at most 256 characters), which also keeps names from escaping their URL path.
func checkMNSName(kind, name string) error {
	ok := name != "" && len(name) <= 256 && name[0] != '-'
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("%w: %s name %q", ErrMNSInvalidRequest, kind, name)
	}
	return nil
}

// Request and answer bodies. Children inherit the MNS namespace of the root element.
type mnsTopicReq struct {
	XMLName            xml.Name `xml:"http://mns.aliyuncs.com/doc/v1/ Topic"`
	MaximumMessageSize int      `xml:"MaximumMessageSize"`
}

type mnsSubscriptionReq struct {
	XMLName             xml.Name `xml:"http://mns.aliyuncs.com/doc/v1/ Subscription"`
	Endpoint            string   `xml:"Endpoint"`
	NotifyStrategy      string   `xml:"NotifyStrategy"`
	NotifyContentFormat string   `xml:"NotifyContentFormat"`
}

type mnsMessageReq struct {
	XMLName           xml.Name `xml:"http://mns.aliyuncs.com/doc/v1/ Message"`
	MessageBody       string   `xml:"MessageBody"`
	MessageTag        string   `xml:"MessageTag,omitempty"`
	MessageAttributes struct {
		WebSocket struct {
			ImportanceLevel int `xml:"ImportanceLevel"`
		} `xml:"WebSocket"`
	} `xml:"MessageAttributes"`
}

type mnsMessageResp struct {
	XMLName        xml.Name `xml:"Message"`
	MessageID      string   `xml:"MessageId"`
	MessageBodyMD5 string   `xml:"MessageBodyMD5"`
}

func mnsXML(v any) ([]byte, error) {
	x, err := xml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("mns: encoding the request: %w", err)
	}
	return append([]byte(`<?xml version="1.0" encoding="UTF-8"?>`), x...), nil
}
