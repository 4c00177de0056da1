package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// loopbackAddr checks that addr is host:port with a loopback host and returns it with the
// host as a literal IP. "localhost" is taken to mean 127.0.0.1 rather than resolved, so a
// hosts file cannot point the generator somewhere else.
func loopbackAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("-addr %q: want host:port: %w", addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return "", fmt.Errorf("-addr %q: bad port", addr)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("-addr %q: only loopback addresses (127.0.0.0/8, ::1, localhost) may be targeted", addr)
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// loopbackDialer refuses, at connect time, any address that is not loopback: a second
// guard behind loopbackAddr in case a redirect or a URL built from a server answer (such
// as topicLocation) points elsewhere.
func loopbackDialer() *net.Dialer {
	return &net.Dialer{
		Timeout:   5 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("loadgen: refusing to connect to non-loopback address %s", address)
			}
			return nil
		},
	}
}

// newHTTPClient is a keep-alive client with one pooled connection per worker.
func newHTTPClient(conns int) *http.Client {
	tr := &http.Transport{
		DialContext:         loopbackDialer().DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// okPrefix is how every successful envelope starts: the server marshals the envelope struct
// with code first, so a byte comparison settles the common case without decoding JSON.
var okPrefix = []byte(`{"code":200,`)

// envelopeCode returns the envelope code of an API answer.
func envelopeCode(body []byte) (int, error) {
	if bytes.HasPrefix(body, okPrefix) {
		return 200, nil
	}
	var env struct {
		Code *int `json:"code"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return 0, fmt.Errorf("answer is not a JSON envelope: %w", err)
	}
	if env.Code == nil {
		return 0, errors.New("answer has no code")
	}
	return *env.Code, nil
}

// apiError describes a failed API call; its kind groups errors for the report.
type apiError struct {
	kind string // e.g. "http 413", "code 2003", "transport"
	msg  string
}

func (e *apiError) Error() string { return e.kind + ": " + e.msg }

// caller performs API requests and reads answers into a reusable buffer. One per worker.
type caller struct {
	client *http.Client
	raw    *rawConn // when set, requests go through it instead of client
	base   string   // http://host:port
	buf    bytes.Buffer
}

// do sends one request and returns the answer body (valid until the next call) when both
// the HTTP status and the envelope code are 200.
func (c *caller) do(ctx context.Context, method, path, contentType string, body []byte) ([]byte, error) {
	if c.raw != nil {
		status, err := c.raw.roundTrip(ctx, method, path, contentType, body, &c.buf)
		if err != nil {
			return nil, &apiError{kind: "transport", msg: err.Error()}
		}
		return c.check(status)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, &apiError{kind: "request", msg: err.Error()}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := c.client.Do(req)
	if err != nil {
		return nil, &apiError{kind: "transport", msg: err.Error()}
	}
	c.buf.Reset()
	_, err = c.buf.ReadFrom(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, &apiError{kind: "transport", msg: "reading answer: " + err.Error()}
	}
	return c.check(res.StatusCode)
}

// check judges the answer in c.buf.
func (c *caller) check(status int) ([]byte, error) {
	b := c.buf.Bytes()
	if status != http.StatusOK {
		return nil, &apiError{kind: "http " + strconv.Itoa(status), msg: snippet(b)}
	}
	code, err := envelopeCode(b)
	if err != nil {
		return nil, &apiError{kind: "envelope", msg: err.Error() + ": " + snippet(b)}
	}
	if code != 200 {
		return nil, &apiError{kind: "code " + strconv.Itoa(code), msg: snippet(b)}
	}
	return b, nil
}

func (c *caller) postJSON(ctx context.Context, path string, body []byte) ([]byte, error) {
	return c.do(ctx, http.MethodPost, path, "application/json", body)
}

func (c *caller) get(ctx context.Context, path string) ([]byte, error) {
	return c.do(ctx, http.MethodGet, path, "", nil)
}

func snippet(b []byte) string {
	const limit = 200
	if len(b) > limit {
		return string(b[:limit]) + "…"
	}
	return string(b)
}

// dataField extracts data.<name> as a string from a successful answer.
func dataField(body []byte, name string) (string, error) {
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return "", fmt.Errorf("decode answer: %w", err)
	}
	switch v := env.Data[name].(type) {
	case string:
		if v != "" {
			return v, nil
		}
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("answer has no data.%s: %s", name, snippet(body))
}

// loginID pulls data.id out of a login answer without decoding the whole JSON: the answer
// is {"code":200,"message":"…","data":{"id":"N",…}} and the id is the first "id" key.
func loginID(body []byte) string {
	key := []byte(`"id":"`)
	i := bytes.Index(body, key)
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}
