package aliyun

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"roomengine/actors"
)

// CDN OpenAPI defaults (SPEC §4, §8).
const (
	DefaultCDNVersion         = "2014-11-11"
	DefaultCDNTimeout         = 5 * time.Second
	DefaultBreakerOpenTimeout = 10 * time.Second
	DefaultMixTemplate        = "picture_in_picture"

	actionStartMix = "StartMixStreamsService"
	actionStopMix  = "StopMixStreamsService"

	// maxCDNBody caps how much of an answer is read; real answers are a few hundred bytes.
	maxCDNBody = 1 << 20
	// maxAliyunMessage caps Aliyun's Message in our errors: short, and a bounded echo.
	maxAliyunMessage = 200
)

// CDNConfig configures a CDNClient. URL, AccessKeyID, AccessKeySecret, AppName and
// PlayHost are required; the rest have defaults.
type CDNConfig struct {
	URL             string // ali.urls.cdn.url, e.g. https://cdn.aliyuncs.com
	Version         string // ali.urls.cdn.version; default 2014-11-11
	AccessKeyID     string
	AccessKeySecret string
	AppName         string // MainAppName and MixAppName
	PlayHost        string // MainDomainName and MixDomainName
	// Timeout bounds each call, answer included; default 5 s (ali.timeout).
	Timeout time.Duration
	// BreakerOpenTimeout is how long the breaker stays open; default 10 s.
	BreakerOpenTimeout time.Duration
	// OnBreakerStateChange, when set, is told every state change of the "cdn" breaker
	// (see WithStateChange for its constraints).
	OnBreakerStateChange func(name, from, to string)
	// HTTPClient defaults to a client on http.DefaultTransport. Its own Timeout, if any,
	// applies on top of Timeout.
	HTTPClient *http.Client
	Now        func() time.Time // default time.Now
	Nonce      func() string    // SignatureNonce; default a random UUID (crypto/rand)
	Logger     *slog.Logger     // default discards
}

// CDNClient starts and stops CDN mixes through the Aliyun CDN OpenAPI (SPEC §4). It
// implements actors.Mixer and is safe for concurrent use.
//
// Errors are *actors.Error: 3400/3404/3500 for the Codes InvalidArgument/NoSuchStream/
// InternalError, 3000 for any other error answer, and 503 when the CDN could not be asked
// (timeout, network error, or its circuit breaker is open). The breaker counts only 5xx
// answers, timeouts and network errors as failures. Neither the secret nor a signature ever
// appears in an error or a log line.
type CDNClient struct {
	cfg      CDNConfig
	endpoint string // URL without trailing slash; requests go to endpoint + "/?" + query
	breaker  *Breaker
	log      *slog.Logger
}

var _ actors.Mixer = (*CDNClient)(nil)

// NewCDNClient checks cfg and fills in its defaults.
func NewCDNClient(cfg CDNConfig) (*CDNClient, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("aliyun: CDN URL %q: want http(s)://host[/path] without a query", cfg.URL)
	}
	for _, f := range []struct{ name, v string }{
		{"AccessKeyID", cfg.AccessKeyID}, {"AccessKeySecret", cfg.AccessKeySecret},
		{"AppName", cfg.AppName}, {"PlayHost", cfg.PlayHost},
	} {
		if f.v == "" {
			return nil, fmt.Errorf("aliyun: CDN client: %s is empty", f.name)
		}
	}
	if cfg.Version == "" {
		cfg.Version = DefaultCDNVersion
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultCDNTimeout
	}
	if cfg.BreakerOpenTimeout <= 0 {
		cfg.BreakerOpenTimeout = DefaultBreakerOpenTimeout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: http.DefaultTransport}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Nonce == nil {
		cfg.Nonce = randomUUID
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &CDNClient{
		cfg:      cfg,
		endpoint: strings.TrimRight(cfg.URL, "/"),
		log:      cfg.Logger.With("api", "cdn"),
	}
	var opts []BreakerOption
	if cfg.OnBreakerStateChange != nil {
		opts = append(opts, WithStateChange(cfg.OnBreakerStateChange))
	}
	c.breaker = NewBreaker("cdn", cfg.BreakerOpenTimeout, isCDNOutage, opts...)
	return c, nil
}

// BreakerState is the state of the client's circuit breaker: BreakerClosed,
// BreakerHalfOpen or BreakerOpen.
func (c *CDNClient) BreakerState() string { return c.breaker.State() }

// StartMix calls StartMixStreamsService. The template defaults to picture_in_picture.
func (c *CDNClient) StartMix(ctx context.Context, req actors.MixRequest) (actors.MixStarted, error) {
	tmpl := req.Template
	if tmpl == "" {
		tmpl = DefaultMixTemplate
	}
	params := c.mixParams(actionStartMix, req)
	params["MixTemplate"] = tmpl
	params["MixType"] = "channel"
	var ans startMixAnswer
	if err := c.call(ctx, params, &ans); err != nil {
		return actors.MixStarted{}, err
	}
	var out actors.MixStarted
	for _, s := range ans.MixStreamsInfoList.MixStreamsInfo {
		if s.StreamName != "" {
			out.Streams = append(out.Streams, s.StreamName)
		}
	}
	return out, nil
}

// StopMix calls StopMixStreamsService with the same streams (no template or type).
func (c *CDNClient) StopMix(ctx context.Context, req actors.MixRequest) error {
	return c.call(ctx, c.mixParams(actionStopMix, req), nil)
}

func (c *CDNClient) mixParams(action string, req actors.MixRequest) map[string]string {
	return map[string]string{
		"Action":         action,
		"MainDomainName": c.cfg.PlayHost,
		"MainAppName":    c.cfg.AppName,
		"MainStreamName": req.MainStream,
		"MixDomainName":  c.cfg.PlayHost,
		"MixAppName":     c.cfg.AppName,
		"MixStreamName":  req.MixStream,
	}
}

type startMixAnswer struct {
	RequestID          string `json:"RequestId"`
	MixStreamsInfoList struct {
		MixStreamsInfo []struct {
			DomainName string
			AppName    string
			StreamName string
		}
	}
}

type errorAnswer struct {
	RequestID string `json:"RequestId"`
	HostID    string `json:"HostId"`
	Code      string
	Message   string
}

// callError is what a call returns inside the breaker: the client-facing error plus what
// the breaker needs to classify it.
type callError struct {
	err      *actors.Error
	outage   bool  // a 5xx, timeout or network error: counts against the breaker
	canceled error // context.Canceled when the caller gave up: not counted at all
}

func (e *callError) Error() string { return e.err.Error() }
func (e *callError) Unwrap() error { return e.canceled }

func isCDNOutage(err error) bool {
	var ce *callError
	return errors.As(err, &ce) && ce.outage
}

// call signs and sends one request and decodes a 200 answer into out (when not nil).
func (c *CDNClient) call(ctx context.Context, params map[string]string, out any) error {
	action := params["Action"]
	err := c.breaker.Execute(func() error { return c.send(ctx, params, out) })
	if err == nil {
		return nil
	}
	var ce *callError
	if errors.As(err, &ce) {
		return ce.err
	}
	if errors.Is(err, ErrBreakerOpen) {
		c.log.Warn("cdn call refused: circuit breaker open", "action", action)
		return actors.Errorf(actors.CodeUnavailable, "CDN mixing unavailable: circuit breaker open")
	}
	// Not reachable: send returns only *callError. Keep the caller safe anyway.
	return actors.Errorf(actors.CodeUnavailable, "CDN mixing unavailable")
}

func (c *CDNClient) send(ctx context.Context, params map[string]string, out any) error {
	action := params["Action"]
	params["Format"] = "JSON"
	params["Version"] = c.cfg.Version
	params["AccessKeyId"] = c.cfg.AccessKeyID
	params["SignatureMethod"] = "HMAC-SHA1"
	params["SignatureVersion"] = "1.0"
	params["SignatureNonce"] = c.cfg.Nonce()
	params["Timestamp"] = c.cfg.Now().UTC().Format("2006-01-02T15:04:05Z")
	sig := SignRPC(http.MethodGet, params, c.cfg.AccessKeySecret)
	// Send exactly the bytes that were signed, Signature last.
	target := c.endpoint + "/?" + CanonicalQuery(params) + "&Signature=" + PercentEncode(sig)
	scrub := func(s string) string {
		// The secret is never sent, so only the signature could be echoed back.
		for _, v := range []string{sig, PercentEncode(sig)} {
			s = strings.ReplaceAll(s, v, "***")
		}
		return s
	}

	log := c.log.With("action", action, "main", params["MainStreamName"], "mix", params["MixStreamName"])
	log.Debug("cdn request", "template", params["MixTemplate"], "accessKeyId", c.cfg.AccessKeyID,
		"nonce", params["SignatureNonce"], "timestamp", params["Timestamp"])
	start := time.Now()

	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		// Only a malformed endpoint can get here, and NewCDNClient checked it.
		return &callError{err: actors.Errorf(actors.CodeMixFailed, "CDN %s: bad request: %s", action, scrub(err.Error()))}
	}
	resp, err := c.cfg.HTTPClient.Do(hreq)
	if err != nil {
		ce := c.transportError(ctx, action, err, scrub)
		log.Warn("cdn call failed", "err", ce.err.Message, "duration", time.Since(start))
		return ce
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCDNBody))
	if err != nil {
		ce := c.transportError(ctx, action, err, scrub)
		log.Warn("cdn call failed reading the answer", "status", resp.StatusCode, "err", ce.err.Message,
			"duration", time.Since(start))
		return ce
	}

	if resp.StatusCode == http.StatusOK {
		if out != nil {
			if err := json.Unmarshal(body, out); err != nil {
				log.Warn("cdn answer not understood", "status", resp.StatusCode, "duration", time.Since(start))
				return &callError{err: actors.Errorf(actors.CodeMixFailed, "CDN %s: unreadable answer", action)}
			}
		}
		var id struct {
			RequestID string `json:"RequestId"`
		}
		_ = json.Unmarshal(body, &id)
		log.Debug("cdn answer", "status", resp.StatusCode, "requestId", id.RequestID, "duration", time.Since(start))
		return nil
	}

	var ea errorAnswer
	if err := json.Unmarshal(body, &ea); err != nil || ea.Code == "" {
		ea.Code = fmt.Sprintf("HTTP%d", resp.StatusCode)
		ea.Message = http.StatusText(resp.StatusCode)
	}
	msg := scrub(shorten(ea.Message, maxAliyunMessage))
	ce := &callError{
		err:    actors.Errorf(mixErrorCode(ea.Code), "CDN %s failed: %s: %s", action, ea.Code, msg),
		outage: resp.StatusCode >= 500,
	}
	log.Warn("cdn error answer", "status", resp.StatusCode, "code", ea.Code, "message", msg,
		"requestId", ea.RequestID, "duration", time.Since(start))
	return ce
}

// transportError maps a failure to get an answer at all to a 503.
func (c *CDNClient) transportError(ctx context.Context, action string, err error, scrub func(string) string) *callError {
	ce := &callError{outage: true}
	var reason string
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled) || errors.Is(err, context.Canceled):
		// The caller gave up (shutdown, client went away): not the CDN's fault.
		ce.outage, ce.canceled = false, context.Canceled
		reason = "request cancelled"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout():
		reason = fmt.Sprintf("timeout after %s", c.cfg.Timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "connection refused"
	default:
		// *url.Error repeats the URL (with its Signature); keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		reason = "network error: " + shorten(scrub(err.Error()), maxAliyunMessage)
	}
	ce.err = actors.Errorf(actors.CodeUnavailable, "CDN mixing unavailable: %s (%s)", reason, action)
	return ce
}

// mixErrorCode maps an Aliyun error Code to the envelope code (SPEC §4).
func mixErrorCode(code string) int {
	switch code {
	case "InvalidArgument":
		return actors.CodeMixInvalidArg
	case "NoSuchStream":
		return actors.CodeMixNoSuchStream
	case "InternalError":
		return actors.CodeMixInternal
	}
	return actors.CodeMixFailed
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// randomUUID is a version 4 UUID from crypto/rand, the nonce format Aliyun's SDKs use.
func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics on a broken source)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
