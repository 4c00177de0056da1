package config

import (
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Validate checks the configuration and returns the first problem as an *Error, or nil.
// Load calls it; call it again after changing a Config by hand.
func (c *Config) Validate() error {
	for _, check := range []func() error{
		c.validateServer,
		c.validateStore,
		c.validatePush,
		c.validateMix,
		c.validateMedia,
		c.validateDurations,
		c.validateHTTP,
		c.validateMisc,
		c.validateCluster,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateServer() error {
	if c.Port < 1 || c.Port > 65535 {
		return c.errorf("port", "port %d out of range 1-65535", c.Port)
	}
	for _, k := range []struct{ path, v string }{
		{"appName", c.AppName}, {"rtmpHost", c.RtmpHost}, {"playHost", c.PlayHost},
	} {
		if strings.TrimSpace(k.v) == "" {
			return c.errorf(k.path, "must not be empty (it is part of every stream URL)")
		}
	}
	return nil
}

func (c *Config) validateStore() error {
	switch c.Store {
	case StoreEmbedded:
		if c.DataDir == "" {
			return c.errorf("dataDir", "must not be empty with store embedded")
		}
	case StoreRedis:
		if err := c.validateRedisTopology(); err != nil {
			return err
		}
		if c.Redis.WaitReplicas < 0 || c.Redis.WaitReplicas > maxWaitReplicas {
			return c.errorf("redis.waitReplicas", "%d out of range 0-%d", c.Redis.WaitReplicas, maxWaitReplicas)
		}
		if c.Redis.Host == "" {
			return c.errorf("redis.host", "must not be empty with store redis")
		}
		if c.Redis.Port < 1 || c.Redis.Port > 65535 {
			return c.errorf("redis.port", "port %d out of range 1-65535", c.Redis.Port)
		}
		if c.Redis.DB < 0 {
			return c.errorf("redis.db", "db %d must not be negative", c.Redis.DB)
		}
		t := c.Redis.TLS
		if (t.Cert == "") != (t.Key == "") {
			return c.errorf("redis.tls.cert", "redis.tls.cert and redis.tls.key go together (a client certificate and its key)")
		}
		if !t.Enabled && (t.CA != "" || t.Cert != "" || t.ServerName != "") {
			return c.errorf("redis.tls.enabled", "must be true when other redis.tls keys are set")
		}
	default:
		return c.errorf("store", "unknown store %q (want embedded or redis)", c.Store)
	}
	return nil
}

func (c *Config) validatePush() error {
	if len(c.Push) == 0 {
		return c.errorf("push", "no push backend (want websocket, mns or both)")
	}
	for _, p := range c.Push {
		if p != PushWebSocket && p != PushMNS {
			return c.errorf("push", "unknown push backend %q (want websocket or mns)", p)
		}
	}
	if !c.HasPush(PushMNS) {
		return nil
	}
	if c.Ali.OwnerID == "" && c.Ali.MNSEndpoint == "" {
		return c.errorf("push", "push mns needs ali.ownerId or ali.mnsEndpoint")
	}
	if c.Ali.AccessKeyID == "" || c.Ali.AccessKeySecret == "" {
		return c.errorf("push", "push mns needs ali.accessKeyID and ali.accessKeySecret")
	}
	if c.Ali.MNSEndpoint == "" && c.MNSRegionName() == "" {
		return c.errorf("ali.mnsRegion", "push mns needs ali.mnsRegion (or ali.region) to build the MNS endpoint")
	}
	if c.Ali.MNSEndpoint != "" {
		if err := checkHTTPURL(c.Ali.MNSEndpoint); err != "" {
			return c.errorf("ali.mnsEndpoint", "%s", err)
		}
	}
	if c.Ali.MNSVersion == "" {
		return c.errorf("ali.mnsVersion", "must not be empty with push mns")
	}
	if c.Ali.MNSTopic.SubscriptionEndpoint == "" {
		return c.errorf("ali.mnsTopic.subscriptionEndpoint", "must not be empty with push mns")
	}
	return nil
}

func (c *Config) validateMix() error {
	mix := c.Mix
	if mix == "" {
		mix = c.defaultMix()
	}
	switch mix {
	case MixSimulator:
		return nil
	case MixFFmpeg:
		return c.validateFFmpeg()
	case MixAliyun, MixAliyunLive:
	default:
		return c.errorf("mix", "unknown mix %q (want simulator, aliyun, aliyun-live or ffmpeg)", c.Mix)
	}
	if c.Ali.AccessKeyID == "" || c.Ali.AccessKeySecret == "" {
		return c.errorf("mix", "mix %s needs ali.accessKeyID and ali.accessKeySecret", mix)
	}
	api, endpoint := "cdn", c.Ali.URLs.CDN
	if mix == MixAliyunLive {
		api, endpoint = "live", c.Ali.URLs.Live
		if c.Ali.LiveRegion == "" {
			return c.errorf("ali.liveRegion", "must not be empty with mix aliyun-live")
		}
	}
	if err := checkHTTPURL(endpoint.URL); err != "" {
		return c.errorf("ali.urls."+api+".url", "%s", err)
	}
	if endpoint.Version == "" {
		return c.errorf("ali.urls."+api+".version", "must not be empty with mix %s", mix)
	}
	return nil
}

func (c *Config) validateDurations() error {
	positive := []struct {
		path string
		d    time.Duration
	}{
		{"redis.timeout", c.Redis.Timeout},
		{"ali.callbackMaxSkew", c.Ali.CallbackMaxSkew},
		{"ali.timeout", c.Ali.Timeout},
		{"ali.breakerOpenTimeout", c.Ali.BreakerOpenTimeout},
		{"live.noPublishTimeout", c.Live.NoPublishTimeout},
		{"live.reconcileInterval", c.Live.ReconcileInterval},
		{"auth.tokenTTL", c.Auth.TokenTTL},
		{"http.requestTimeout", c.HTTP.RequestTimeout},
		{"actors.askTimeout", c.Actors.AskTimeout},
		{"actors.idleTimeout", c.Actors.IdleTimeout},
	}
	for _, p := range positive {
		if p.d <= 0 {
			return c.errorf(p.path, "must be a positive duration, got %s", p.d)
		}
	}
	// Zero is meaningful here: delete the topic as soon as the room ends.
	if c.Live.TopicDeleteDelay < 0 {
		return c.errorf("live.topicDeleteDelay", "must not be negative, got %s", c.Live.TopicDeleteDelay)
	}
	return nil
}

func (c *Config) validateHTTP() error {
	h := c.HTTP
	if h.MaxBodyBytes <= 0 {
		return c.errorf("http.maxBodyBytes", "must be positive, got %d", h.MaxBodyBytes)
	}
	if h.RateLimit < 0 || math.IsNaN(h.RateLimit) || math.IsInf(h.RateLimit, 0) {
		return c.errorf("http.rateLimit", "must be a finite number >= 0 (0 = off), got %v", h.RateLimit)
	}
	if h.RateBurst < 0 {
		return c.errorf("http.rateBurst", "must not be negative, got %d", h.RateBurst)
	}
	if h.RateLimit > 0 && h.RateBurst == 0 {
		return c.errorf("http.rateBurst", "must be at least 1 when http.rateLimit is set")
	}
	for _, o := range h.CORSOrigins {
		if o == "*" {
			continue
		}
		if err := checkHTTPURL(o); err != "" {
			return c.errorf("http.corsOrigins", "origin %q: want * or http(s)://host[:port]", o)
		}
	}
	if h.PublicURL != "" {
		if err := checkHTTPURL(h.PublicURL); err != "" {
			return c.errorf("http.publicUrl", "%s", err)
		}
	}
	return c.validateWS()
}

// Limits of the http.ws.* keys: a client subscribes with two tags (room and user, at most
// 20 digits each) to a 10-character room id; the upper bounds keep one subscription small.
const (
	maxWSTags      = 1024
	maxWSKeyLength = 4096
)

func (c *Config) validateWS() error {
	ws := c.HTTP.WS
	for _, k := range []struct {
		path     string
		v        int
		min, max int
	}{
		{"http.ws.maxTags", ws.MaxTags, 2, maxWSTags},
		{"http.ws.maxTagLength", ws.MaxTagLength, 20, maxWSKeyLength},
		{"http.ws.maxTopicLength", ws.MaxTopicLength, 10, maxWSKeyLength},
	} {
		if k.v < k.min || k.v > k.max {
			return c.errorf(k.path, "must be between %d and %d, got %d", k.min, k.max, k.v)
		}
	}
	if ws.MaxConnsPerAddr < 0 {
		return c.errorf("http.ws.maxConnsPerAddr", "must not be negative (0 = no limit), got %d", ws.MaxConnsPerAddr)
	}
	if ws.IdleTopicTTL < time.Minute {
		return c.errorf("http.ws.idleTopicTTL", "must be at least 1m (reconnects with since replay from it), got %s", ws.IdleTopicTTL)
	}
	if ws.MaxHistoryBytes < 0 {
		return c.errorf("http.ws.maxHistoryBytes", "must not be negative (0 = no cap), got %d", ws.MaxHistoryBytes)
	}
	if ws.MaxConnsPerUser < 0 {
		return c.errorf("http.ws.maxConnsPerUser", "must not be negative (0 = no limit), got %d", ws.MaxConnsPerUser)
	}
	if c.HTTP.MaxConns < 0 {
		return c.errorf("http.maxConns", "must not be negative (0 = no limit), got %d", c.HTTP.MaxConns)
	}
	for _, p := range c.HTTP.TrustedProxies {
		if _, err := ParseTrusted(p); err != nil {
			return c.errorf("http.trustedProxies", "%q is not a CIDR or an IP address", p)
		}
	}
	return nil
}

// validateMedia checks the media.* keys, which every mix mode uses.
func (c *Config) validateMedia() error {
	if c.Live.ReconcileAliyun && c.Mix != MixAliyun && c.Mix != MixAliyunLive {
		return c.errorf("live.reconcileAliyun", "needs mix aliyun or aliyun-live (an Aliyun account)")
	}
	for _, cidr := range c.Media.HookAllow {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			return c.errorf("media.hookAllow", "invalid CIDR %q (want e.g. 127.0.0.1/32 or 10.0.0.0/8)", cidr)
		}
	}
	for _, k := range []struct{ path, v string }{{"media.playUrl.flv", c.Media.PlayURL.FLV},
		{"media.playUrl.hls", c.Media.PlayURL.HLS}, {"media.playUrl.rtmp", c.Media.PlayURL.RTMP}} {
		if k.v != "" && !strings.Contains(k.v, "{stream}") {
			return c.errorf(k.path, "template %q lacks {stream}", k.v)
		}
	}
	for _, k := range []struct{ path, v string }{{"media.statUrl", c.Media.StatURL}, {"media.srsApiUrl", c.Media.SRSAPIURL}} {
		if k.v == "" {
			continue
		}
		if err := checkHTTPURL(k.v); err != "" {
			return c.errorf(k.path, "%s", err)
		}
	}
	return nil
}

// validateFFmpeg checks the ffmpeg.* keys of mix: ffmpeg.
func (c *Config) validateFFmpeg() error {
	f := c.FFmpeg
	if strings.TrimSpace(f.Path) == "" {
		return c.errorf("ffmpeg.path", "must not be empty with mix ffmpeg")
	}
	for _, k := range []struct {
		path     string
		v        int
		min, max int
	}{
		{"ffmpeg.maxJobs", f.MaxJobs, 1, 10000}, {"ffmpeg.maxRestarts", f.MaxRestarts, 0, 1000},
		{"ffmpeg.height", f.Height, 16, 4320}, {"ffmpeg.fps", f.FPS, 1, 120},
	} {
		if k.v < k.min || k.v > k.max {
			return c.errorf(k.path, "must be between %d and %d, got %d", k.min, k.max, k.v)
		}
	}
	for _, k := range []struct {
		path string
		d    time.Duration
	}{
		{"ffmpeg.restartWindow", f.RestartWindow}, {"ffmpeg.restartBackoff", f.RestartBackoff},
		{"ffmpeg.stopGrace", f.StopGrace}, {"ffmpeg.stallTimeout", f.StallTimeout},
	} {
		if k.d <= 0 {
			return c.errorf(k.path, "must be a positive duration, got %s", k.d)
		}
	}
	for _, k := range []struct{ path, v string }{{"ffmpeg.videoBitrate", f.VideoBitrate}, {"ffmpeg.audioBitrate", f.AudioBitrate}} {
		if !bitrate.MatchString(k.v) {
			return c.errorf(k.path, "invalid bitrate %q (want e.g. 800k or 2M)", k.v)
		}
	}
	return nil
}

// bitrate is what ffmpeg.videoBitrate and audioBitrate may be: they reach ffmpeg's argv.
var bitrate = regexp.MustCompile(`^[1-9][0-9]{0,6}[kKM]?$`)

func (c *Config) validateMisc() error {
	if _, ok := parseLevel(c.Log.Level); !ok {
		return c.errorf("log.level", "unknown level %q (want debug, info, warn or error)", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return c.errorf("log.format", "unknown format %q (want text or json)", c.Log.Format)
	}
	if err := c.validateDebug(); err != nil {
		return err
	}
	if c.Auth.Required && c.Auth.Secret == "" {
		return c.errorf("auth.secret", "must be set when auth.required is true (it signs the tokens)")
	}
	return c.validateSecrets()
}

// validateSecrets refuses a secret too short to resist guessing, and a deployment that
// requires tokens of its users while anyone may send the Aliyun callbacks that start and
// end their streams.
func (c *Config) validateSecrets() error {
	for _, k := range []struct{ path, v string }{
		{"auth.secret", c.Auth.Secret}, {"admin.token", c.Admin.Token},
		{"cluster.secret", c.Cluster.Secret}, {"cluster.previousSecret", c.Cluster.PreviousSecret},
	} {
		if k.v != "" && len(k.v) < MinSecretLength {
			return c.errorf(k.path, "too short (%d bytes): set %s to at least %d random bytes, e.g. $(openssl rand -hex 32)", len(k.v), EnvName(k.path), MinSecretLength)
		}
	}
	mix := c.Mix
	if mix == "" {
		mix = c.defaultMix()
	}
	if c.Auth.Required && (mix == MixAliyun || mix == MixAliyunLive) && c.Ali.CallbackAuthKey == "" {
		return c.errorf("ali.callbackAuthKey", "must be set when auth.required is true with mix %s, else anyone can send the stream callbacks: set %s", mix, EnvName("ali.callbackAuthKey"))
	}
	return nil
}

// checkHTTPURL returns "" for an absolute http(s) URL with a host, else why not.
func checkHTTPURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "invalid URL " + strconv.Quote(s) + " (want http(s)://host[:port][/path])"
	}
	return ""
}

// nodeName is what a cluster node may be called: it appears in Redis keys, metrics labels
// and logs.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func (c *Config) validateCluster() error {
	cl := c.Cluster
	if !cl.Enabled {
		return nil
	}
	if c.Store != StoreRedis {
		return c.errorf("cluster.enabled", "needs store: redis (the nodes share one Redis; the embedded store is one process's)")
	}
	if cl.MemberTTL < 500*time.Millisecond {
		return c.errorf("cluster.memberTTL", "%v is too short (at least 500ms)", cl.MemberTTL)
	}
	host, port, err := net.SplitHostPort(cl.BindAddr)
	if err != nil {
		return c.errorf("cluster.bindAddr", "invalid address %q (want host:port)", cl.BindAddr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return c.errorf("cluster.bindAddr", "invalid port in %q", cl.BindAddr)
	}
	if cl.AdvertiseAddr != "" {
		ah, ap, err := net.SplitHostPort(cl.AdvertiseAddr)
		if err != nil || ah == "" || isWildcard(ah) {
			return c.errorf("cluster.advertiseAddr", "invalid address %q (want a host:port the other nodes can reach)", cl.AdvertiseAddr)
		}
		if p, err := strconv.Atoi(ap); err != nil || p < 1 || p > 65535 {
			return c.errorf("cluster.advertiseAddr", "invalid port in %q", cl.AdvertiseAddr)
		}
	} else if host == "" || isWildcard(host) {
		return c.errorf("cluster.advertiseAddr", "must be set when cluster.bindAddr listens on every interface (%q)", cl.BindAddr)
	}
	if cl.Secret == "" && !isLoopback(host) {
		return c.errorf("cluster.secret", "must be set when cluster.bindAddr (%q) is not a loopback address, to sign the messages between nodes: set %s to at least %d random bytes", cl.BindAddr, EnvName("cluster.secret"), MinSecretLength)
	}
	if cl.PreviousSecret != "" && cl.Secret == "" {
		return c.errorf("cluster.secret", "must be set when cluster.previousSecret is")
	}
	if t := cl.TLS; (t.Cert != "" || t.Key != "" || t.CA != "") && (t.Cert == "" || t.Key == "" || t.CA == "") {
		return c.errorf("cluster.tls.cert", "cluster.tls.cert, cluster.tls.key and cluster.tls.ca go together (set all three or none)")
	}
	if cl.MaxConns < 1 {
		return c.errorf("cluster.maxConns", "must be at least 1, got %d", cl.MaxConns)
	}
	if cl.Node != "" && !nodeName.MatchString(cl.Node) {
		return c.errorf("cluster.node", "invalid name %q (letters, digits, '.', '_', '-'; at most 63)", cl.Node)
	}
	return nil
}

// ParseTrusted reads one http.trustedProxies entry: a CIDR, or one IP address.
func ParseTrusted(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// validateDebug keeps the profiler on this machine and off the public port.
func (c *Config) validateDebug() error {
	a := c.Debug.PprofAddr
	if a == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || port == "" {
		return c.errorf("debug.pprofAddr", "want a loopback host:port such as 127.0.0.1:6061, got %q", a)
	}
	if !isLoopback(host) {
		return c.errorf("debug.pprofAddr", "must be a loopback address (127.0.0.1, ::1 or localhost), got %q: a profile shows what the server does", a)
	}
	if port == strconv.Itoa(c.Port) {
		return c.errorf("debug.pprofAddr", "must not be the public port %d", c.Port)
	}
	return nil
}

// isLoopback reports whether host is a loopback IP or localhost: only processes of this
// machine reach it.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isWildcard(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}
