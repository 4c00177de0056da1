package aliyun

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"roomengine/actors"
)

// Live API defaults (docs/aliyun.md).
const (
	DefaultLiveURL     = "https://live.aliyuncs.com"
	DefaultLiveVersion = "2016-11-01"
	DefaultLiveRegion  = "cn-shanghai"
	// LiveLayoutID is the LayoutId of every mix: explicit boxes per layout.
	LiveLayoutID = "USERDEFINED"

	actionCreateMix   = "CreateMixStream"
	actionDeleteMix   = "DeleteMixStream"
	actionDescribeMix = "DescribeMixStreamList"
	actionOnline      = "DescribeLiveStreamsOnlineList"

	liveTimeFormat = "2006-01-02T15:04:05Z"
	// describeWindow is how far back DescribeMixStreamList looks for a mix to adopt or
	// delete: a call's mix is younger than that.
	describeWindow = 7 * 24 * time.Hour
)

// LiveConfig configures a LiveClient. URL, AccessKeyID, AccessKeySecret, AppName and
// PlayHost are required; the rest have defaults.
type LiveConfig struct {
	URL             string // ali.urls.live.url; default https://live.aliyuncs.com
	Version         string // ali.urls.live.version; default 2016-11-01
	Region          string // RegionId, ali.liveRegion; default cn-shanghai
	AccessKeyID     string
	AccessKeySecret string
	AppName         string // the app of the input and output streams
	PlayHost        string // DomainName, and the host of the input streams' rtmp:// URLs
	// TemplateName is appended to the main room's id to name the mix's output stream
	// (videocall.templateName, default _mix): {appName}/{room}{templateName}.
	TemplateName string
	// CallbackURL, when set, is sent as CallbackConfig (http.publicUrl + /ali/mix/callback).
	CallbackURL string
	// Timeout bounds each call, answer included; default 5 s (ali.timeout).
	Timeout time.Duration
	// BreakerOpenTimeout is how long the breaker stays open; default 10 s.
	BreakerOpenTimeout time.Duration
	// OnBreakerStateChange, when set, is told every state change of the "cdn" breaker.
	OnBreakerStateChange func(name, from, to string)
	HTTPClient           *http.Client
	Now                  func() time.Time // default time.Now
	Nonce                func() string    // x-acs-signature-nonce; default a random UUID
	Logger               *slog.Logger     // default discards
}

// LiveClient mixes through the Live API 2016-11-01 (CreateMixStream / DeleteMixStream /
// DescribeMixStreamList), signed with V3. It implements actors.Mixer with the same timeouts,
// circuit breaker and error mapping as CDNClient, and is safe for concurrent use.
//
// One mix per host side: LayoutId USERDEFINED with child 1 = the main room's stream, child 2
// = the partner's, boxes by layout (LiveBoxes); output {AppName}/{main}{TemplateName}. The
// answer's MixStreamId is returned as MixStarted.ID and comes back in StopMix.
type LiveClient struct {
	cfg      LiveConfig
	endpoint string
	host     string
	api      *mixAPI
	log      *slog.Logger
}

var _ actors.Mixer = (*LiveClient)(nil)

// NewLiveClient checks cfg and fills in its defaults.
func NewLiveClient(cfg LiveConfig) (*LiveClient, error) {
	if cfg.URL == "" {
		cfg.URL = DefaultLiveURL
	}
	endpoint, err := checkEndpoint("Live", cfg.URL)
	if err != nil {
		return nil, err
	}
	if err := requireFields("Live client", [2]string{"AccessKeyID", cfg.AccessKeyID},
		[2]string{"AccessKeySecret", cfg.AccessKeySecret}, [2]string{"AppName", cfg.AppName},
		[2]string{"PlayHost", cfg.PlayHost}); err != nil {
		return nil, err
	}
	if cfg.Version == "" {
		cfg.Version = DefaultLiveVersion
	}
	if cfg.Region == "" {
		cfg.Region = DefaultLiveRegion
	}
	if cfg.TemplateName == "" {
		cfg.TemplateName = "_mix"
	}
	mixDefaults(&cfg.Timeout, &cfg.BreakerOpenTimeout, &cfg.HTTPClient, &cfg.Now, &cfg.Nonce, &cfg.Logger)
	log := cfg.Logger.With("api", "live")
	host := strings.TrimPrefix(strings.TrimPrefix(endpoint, "https://"), "http://")
	host, _, _ = strings.Cut(host, "/")
	// One breaker for mixing whichever driver: it is what MixerReady reports as "cdn".
	return &LiveClient{cfg: cfg, endpoint: endpoint, host: host, log: log,
		api: newMixAPI("cdn", cfg.HTTPClient, cfg.Timeout, cfg.BreakerOpenTimeout, log, cfg.OnBreakerStateChange)}, nil
}

// BreakerState is the state of the client's circuit breaker.
func (c *LiveClient) BreakerState() string { return c.api.breaker.State() }

// OutputStream is the name of the mix output stream of a host room.
func (c *LiveClient) OutputStream(mainRoom string) string { return mainRoom + c.cfg.TemplateName }

// LiveBox is one child's place in the mixed picture, as fractions of the frame.
type LiveBox struct {
	X, Y, W, H float64
}

// LiveBoxes are the boxes of the host (child 1) and the partner (child 2) for a layout:
// side_by_side puts them in two halves; picture_in_picture (the default) gives the host the
// whole frame and the partner a quarter-size box in the bottom-right corner.
func LiveBoxes(layout string) (host, partner LiveBox) {
	if layout == "side_by_side" {
		return LiveBox{0, 0, 0.5, 1}, LiveBox{0.5, 0, 0.5, 1}
	}
	return LiveBox{0, 0, 1, 1}, LiveBox{0.72, 0.7, 0.25, 0.25}
}

type liveInput struct {
	LayoutChildID int          `json:"LayoutChildId"`
	ResourceType  string       `json:"ResourceType"`
	ResourceValue string       `json:"ResourceValue"`
	LayoutConfig  liveBoxShape `json:"LayoutConfig"`
}

type liveBoxShape struct {
	FillMode               string     `json:"FillMode"`
	PositionRefer          string     `json:"PositionRefer"`
	FillPositionNormalized [2]float64 `json:"FillPositionNormalized"`
	FillSizeNormalized     [2]float64 `json:"FillSizeNormalized"`
}

func (c *LiveClient) input(child int, room string, b LiveBox) liveInput {
	return liveInput{LayoutChildID: child, ResourceType: "live",
		ResourceValue: "rtmp://" + c.cfg.PlayHost + "/" + c.cfg.AppName + "/" + room,
		LayoutConfig: liveBoxShape{FillMode: "fit", PositionRefer: "topLeft",
			FillPositionNormalized: [2]float64{b.X, b.Y}, FillSizeNormalized: [2]float64{b.W, b.H}}}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v) // plain structs and maps of strings: cannot fail
	return string(b)
}

// StartMix creates the mix of one host side. With req.Adopt (the leg's previous Start may
// have created it: an unsure failure, or a restart while it was in flight) a mix already
// running with the same output is adopted instead of creating a second one.
func (c *LiveClient) StartMix(ctx context.Context, req actors.MixRequest) (actors.MixStarted, error) {
	output := c.OutputStream(req.MainStream)
	started := actors.MixStarted{Streams: []string{output + ".flv"}}
	if req.Adopt {
		ids, err := c.findMixes(ctx, output)
		if err != nil {
			return actors.MixStarted{}, err
		}
		if len(ids) > 0 {
			c.log.Info("adopted a running mix", "main", req.MainStream, "mixStreamId", ids[0])
			started.ID = ids[0]
			return started, nil
		}
	}
	host, partner := LiveBoxes(req.Template)
	params := map[string]string{
		"DomainName": c.cfg.PlayHost,
		"LayoutId":   LiveLayoutID,
		"InputStreamList": mustJSON([]liveInput{
			c.input(1, req.MainStream, host), c.input(2, req.MixStream, partner)}),
		"OutputConfig": mustJSON(map[string]string{"AppName": c.cfg.AppName, "StreamName": output}),
	}
	if c.cfg.CallbackURL != "" {
		params["CallbackConfig"] = mustJSON(map[string]string{"CallbackUrl": c.cfg.CallbackURL})
	}
	var ans struct {
		MixStreamID string `json:"MixStreamId"`
	}
	if err := c.call(ctx, actionCreateMix, params, &ans); err != nil {
		return actors.MixStarted{}, err
	}
	if ans.MixStreamID == "" {
		return actors.MixStarted{}, actors.Errorf(actors.CodeMixFailed, "CDN %s: answer without MixStreamId", actionCreateMix)
	}
	started.ID = ans.MixStreamID
	return started, nil
}

// StopMix deletes the mix req.MixID. Without an id (a Start that timed out) it looks the
// host side's mix up by its output stream and deletes what it finds; none is a success.
// A mix Aliyun no longer knows counts as deleted.
func (c *LiveClient) StopMix(ctx context.Context, req actors.MixRequest) error {
	output := c.OutputStream(req.MainStream)
	ids := []string{req.MixID}
	if req.MixID == "" {
		var err error
		if ids, err = c.findMixes(ctx, output); err != nil {
			return err
		}
	}
	for _, id := range ids {
		err := c.call(ctx, actionDeleteMix, map[string]string{"DomainName": c.cfg.PlayHost, "MixStreamId": id,
			"AppName": c.cfg.AppName, "StreamName": output}, nil)
		if err != nil && !mixGone(err) {
			return err
		}
	}
	return nil
}

// mixGone reports whether a Delete failed because the mix does not exist (any error Code
// naming NotFound or NotExist; Aliyun's exact code is not documented).
func mixGone(err error) bool {
	e, ok := err.(*actors.Error)
	return ok && e.Code == actors.CodeMixFailed &&
		(strings.Contains(e.Message, "NotFound") || strings.Contains(e.Message, "NotExist"))
}

// findMixes lists the ids of the mixes whose output is {AppName}/{output}.
func (c *LiveClient) findMixes(ctx context.Context, output string) ([]string, error) {
	now := c.cfg.Now().UTC()
	var ans struct {
		MixStreamList []struct {
			MixStreamID string `json:"MixStreamId"`
			// The documentation's answer table spells it MixstreamId; accept both.
			MixstreamID string `json:"MixstreamId"`
			AppName     string
			StreamName  string
		}
	}
	err := c.call(ctx, actionDescribeMix, map[string]string{"DomainName": c.cfg.PlayHost, "AppName": c.cfg.AppName,
		"StreamName": output, "StartTime": now.Add(-describeWindow).Format(liveTimeFormat),
		"EndTime": now.Add(time.Hour).Format(liveTimeFormat), "PageNo": "1", "PageSize": "100"}, &ans)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range ans.MixStreamList {
		id := m.MixStreamID
		if id == "" {
			id = m.MixstreamID
		}
		// The filter is the server's; check it anyway, so another room's mix is never deleted.
		if id != "" && (m.StreamName == "" || m.StreamName == output) && (m.AppName == "" || m.AppName == c.cfg.AppName) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// onlinePageSize is how many streams one DescribeLiveStreamsOnlineList page asks for (its
// maximum is 3000).
const onlinePageSize = 3000

// OnlineStreams lists the streams publishing to app on playHost (DescribeLiveStreamsOnlineList),
// for the stream reconciliation (live.reconcileAliyun). Give it a LiveClient of its own: its
// failures then do not count against the mix's circuit breaker.
func (c *LiveClient) OnlineStreams(ctx context.Context, app string) (map[string]bool, error) {
	out := map[string]bool{}
	for page := 1; ; page++ {
		var ans struct {
			OnlineInfo struct {
				LiveStreamOnlineInfo []struct{ AppName, StreamName string }
			}
			TotalPage int
		}
		err := c.call(ctx, actionOnline, map[string]string{"DomainName": c.cfg.PlayHost, "AppName": app,
			"PageNum": strconv.Itoa(page), "PageSize": strconv.Itoa(onlinePageSize)}, &ans)
		if err != nil {
			return nil, err
		}
		for _, s := range ans.OnlineInfo.LiveStreamOnlineInfo {
			if s.AppName == "" || s.AppName == app {
				out[s.StreamName] = true
			}
		}
		if page >= ans.TotalPage || len(ans.OnlineInfo.LiveStreamOnlineInfo) == 0 {
			return out, nil
		}
	}
}

// call signs one RPC action with V3 (parameters in the query, empty body) and sends it
// through the shared breaker and error mapping.
func (c *LiveClient) call(ctx context.Context, action string, params map[string]string, out any) error {
	params["RegionId"] = c.cfg.Region
	query := CanonicalQuery(params)
	headers := map[string]string{
		"host":                  c.host,
		"x-acs-action":          action,
		"x-acs-version":         c.cfg.Version,
		"x-acs-date":            c.cfg.Now().UTC().Format(liveTimeFormat),
		"x-acs-signature-nonce": c.cfg.Nonce(),
		"x-acs-content-sha256":  HashHex(nil),
	}
	auth := SignV3(V3Request{Method: http.MethodPost, Path: "/", Query: params, Headers: headers,
		PayloadHash: headers["x-acs-content-sha256"]}, c.cfg.AccessKeyID, c.cfg.AccessKeySecret)
	sig := auth[strings.LastIndex(auth, "=")+1:]
	log := c.log.With("action", action, "output", params["StreamName"]+mixOutputOf(params), "mixStreamId", params["MixStreamId"])
	log.Debug("live request", "accessKeyId", c.cfg.AccessKeyID, "nonce", headers["x-acs-signature-nonce"],
		"date", headers["x-acs-date"])
	return c.api.call(ctx, apiRequest{
		action: action, log: log, scrub: scrubber(sig),
		build: func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint+"/?"+query, nil)
			if err != nil {
				return nil, err
			}
			for k, v := range headers {
				if k != "host" {
					req.Header.Set(k, v)
				}
			}
			req.Host = c.host
			req.Header.Set("Authorization", auth)
			req.Header.Set("Accept", "application/json")
			return req, nil
		},
	}, out)
}

// mixOutputOf is the output stream named in a CreateMixStream's OutputConfig, for logs.
func mixOutputOf(params map[string]string) string {
	var out struct{ StreamName string }
	if json.Unmarshal([]byte(params["OutputConfig"]), &out) != nil {
		return ""
	}
	return out.StreamName
}
