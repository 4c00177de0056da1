package aliyun

import (
	"context"
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

// mixAPI is what the mix drivers (CDNClient, LiveClient) share: one Aliyun OpenAPI endpoint
// behind a circuit breaker, a timeout per call, and the mapping of answers to *actors.Error
// (docs/aliyun.md): 3400/3404/3500 for the Codes InvalidArgument/NoSuchStream/InternalError, 3000
// for any other error answer, 503 when the API could not be asked (timeout, network error,
// breaker open). The breaker counts only 5xx answers, timeouts and network errors.
type mixAPI struct {
	client  *http.Client
	timeout time.Duration
	breaker *Breaker
	log     *slog.Logger
}

func newMixAPI(name string, client *http.Client, timeout, openTimeout time.Duration, log *slog.Logger,
	onChange func(name, from, to string)) *mixAPI {
	var opts []BreakerOption
	if onChange != nil {
		opts = append(opts, WithStateChange(onChange))
	}
	return &mixAPI{client: client, timeout: timeout, log: log,
		breaker: NewBreaker(name, openTimeout, isCDNOutage, opts...)}
}

// mixDefaults fills in the settings both mix drivers share: a 5 s timeout, a 10 s open
// breaker, a client on http.DefaultTransport, the real clock, random UUID nonces, no logs.
func mixDefaults(timeout, openTimeout *time.Duration, client **http.Client, now *func() time.Time,
	nonce *func() string, logger **slog.Logger) {
	if *timeout <= 0 {
		*timeout = DefaultCDNTimeout
	}
	if *openTimeout <= 0 {
		*openTimeout = DefaultBreakerOpenTimeout
	}
	if *client == nil {
		*client = &http.Client{Transport: http.DefaultTransport}
	}
	if *now == nil {
		*now = time.Now
	}
	if *nonce == nil {
		*nonce = randomUUID
	}
	if *logger == nil {
		*logger = slog.New(slog.DiscardHandler)
	}
}

// apiRequest is one signed request: build makes it (bounded by ctx), scrub removes from a
// text anything secret the request carries (its signature), log carries the call's
// attributes.
type apiRequest struct {
	action string
	build  func(ctx context.Context) (*http.Request, error)
	scrub  func(string) string
	log    *slog.Logger
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

type errorAnswer struct {
	RequestID string `json:"RequestId"`
	HostID    string `json:"HostId"`
	Code      string
	Message   string
}

// call sends req through the breaker and decodes a 200 answer into out (when not nil).
func (m *mixAPI) call(ctx context.Context, req apiRequest, out any) error {
	err := m.breaker.Execute(func() error { return m.send(ctx, req, out) })
	if err == nil {
		return nil
	}
	var ce *callError
	if errors.As(err, &ce) {
		return ce.err
	}
	if errors.Is(err, ErrBreakerOpen) {
		m.log.Warn("mix call refused: circuit breaker open", "action", req.action)
		return actors.Errorf(actors.CodeUnavailable, "CDN mixing unavailable: circuit breaker open")
	}
	// Not reachable: send returns only *callError. Keep the caller safe anyway.
	return actors.Errorf(actors.CodeUnavailable, "CDN mixing unavailable")
}

func (m *mixAPI) send(ctx context.Context, req apiRequest, out any) error {
	action, log, scrub := req.action, req.log, req.scrub
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	hreq, err := req.build(ctx)
	if err != nil {
		// Only a malformed endpoint can get here, and the constructors checked it.
		return &callError{err: actors.Errorf(actors.CodeMixFailed, "CDN %s: bad request: %s", action, scrub(err.Error()))}
	}
	resp, err := m.client.Do(hreq)
	if err != nil {
		ce := m.transportError(ctx, action, err, scrub)
		log.Warn("mix call failed", "err", ce.err.Message, "duration", time.Since(start))
		return ce
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCDNBody))
	if err != nil {
		ce := m.transportError(ctx, action, err, scrub)
		log.Warn("mix call failed reading the answer", "status", resp.StatusCode, "err", ce.err.Message,
			"duration", time.Since(start))
		return ce
	}

	if resp.StatusCode == http.StatusOK {
		if out != nil {
			if err := json.Unmarshal(body, out); err != nil {
				log.Warn("mix answer not understood", "status", resp.StatusCode, "duration", time.Since(start))
				return &callError{err: actors.Errorf(actors.CodeMixFailed, "CDN %s: unreadable answer", action)}
			}
		}
		var id struct {
			RequestID string `json:"RequestId"`
		}
		_ = json.Unmarshal(body, &id)
		log.Debug("mix answer", "status", resp.StatusCode, "requestId", id.RequestID, "duration", time.Since(start))
		return nil
	}

	var ea errorAnswer
	if err := json.Unmarshal(body, &ea); err != nil || ea.Code == "" {
		ea.Code = fmt.Sprintf("HTTP%d", resp.StatusCode)
		ea.Message = http.StatusText(resp.StatusCode)
	}
	msg := scrub(shorten(ea.Message, maxAliyunMessage))
	ce := &callError{
		err:    actors.Errorf(MixErrorCode(ea.Code), "CDN %s failed: %s: %s", action, ea.Code, msg),
		outage: resp.StatusCode >= 500,
	}
	log.Warn("mix error answer", "status", resp.StatusCode, "code", ea.Code, "message", msg,
		"requestId", ea.RequestID, "duration", time.Since(start))
	return ce
}

// transportError maps a failure to get an answer at all to a 503.
func (m *mixAPI) transportError(ctx context.Context, action string, err error, scrub func(string) string) *callError {
	ce := &callError{outage: true}
	var reason string
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled) || errors.Is(err, context.Canceled):
		// The caller gave up (shutdown, client went away): not the API's fault.
		ce.outage, ce.canceled = false, context.Canceled
		reason = "request cancelled"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout():
		reason = fmt.Sprintf("timeout after %s", m.timeout)
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

// MixErrorCode maps an Aliyun error Code to the envelope code: 3400, 3404, 3500
// or 3000.
func MixErrorCode(code string) int {
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

// checkEndpoint validates an API base URL and returns it without a trailing slash.
func checkEndpoint(what, raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return "", fmt.Errorf("aliyun: %s URL %q: want http(s)://host[/path] without a query", what, raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// requireFields returns an error naming the first empty field.
func requireFields(what string, fields ...[2]string) error {
	for _, f := range fields {
		if f[1] == "" {
			return fmt.Errorf("aliyun: %s: %s is empty", what, f[0])
		}
	}
	return nil
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
