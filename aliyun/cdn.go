package aliyun

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"roomengine/actors"
)

// CDN OpenAPI defaults (config ali.urls.cdn.*).
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

// CDNClient starts and stops CDN mixes through the Aliyun CDN OpenAPI (docs/aliyun.md). It
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
	api      *mixAPI
	log      *slog.Logger
}

var _ actors.Mixer = (*CDNClient)(nil)

// NewCDNClient checks cfg and fills in its defaults.
func NewCDNClient(cfg CDNConfig) (*CDNClient, error) {
	endpoint, err := checkEndpoint("CDN", cfg.URL)
	if err != nil {
		return nil, err
	}
	if err := requireFields("CDN client", [2]string{"AccessKeyID", cfg.AccessKeyID},
		[2]string{"AccessKeySecret", cfg.AccessKeySecret}, [2]string{"AppName", cfg.AppName},
		[2]string{"PlayHost", cfg.PlayHost}); err != nil {
		return nil, err
	}
	if cfg.Version == "" {
		cfg.Version = DefaultCDNVersion
	}
	mixDefaults(&cfg.Timeout, &cfg.BreakerOpenTimeout, &cfg.HTTPClient, &cfg.Now, &cfg.Nonce, &cfg.Logger)
	log := cfg.Logger.With("api", "cdn")
	return &CDNClient{cfg: cfg, endpoint: endpoint, log: log,
		api: newMixAPI("cdn", cfg.HTTPClient, cfg.Timeout, cfg.BreakerOpenTimeout, log, cfg.OnBreakerStateChange)}, nil
}

// BreakerState is the state of the client's circuit breaker: BreakerClosed,
// BreakerHalfOpen or BreakerOpen.
func (c *CDNClient) BreakerState() string { return c.api.breaker.State() }

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

// call signs one request and sends it through the shared breaker and error mapping.
func (c *CDNClient) call(ctx context.Context, params map[string]string, out any) error {
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
	log := c.log.With("action", action, "main", params["MainStreamName"], "mix", params["MixStreamName"])
	log.Debug("cdn request", "template", params["MixTemplate"], "accessKeyId", c.cfg.AccessKeyID,
		"nonce", params["SignatureNonce"], "timestamp", params["Timestamp"])
	return c.api.call(ctx, apiRequest{
		action: action, log: log,
		build: func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		},
		// The secret is never sent, so only the signature could be echoed back.
		scrub: scrubber(sig, PercentEncode(sig)),
	}, out)
}

// scrubber replaces each of secrets (non-empty) with *** in a text.
func scrubber(secrets ...string) func(string) string {
	return func(s string) string {
		for _, v := range secrets {
			if v != "" {
				s = strings.ReplaceAll(s, v, "***")
			}
		}
		return s
	}
}

// randomUUID is a version 4 UUID from crypto/rand, the nonce format Aliyun's SDKs use.
func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics on a broken source)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
