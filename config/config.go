// Package config loads the appserver configuration: built-in defaults, then an optional
// YAML file whose keys mirror the old Node server's config.js, then APPSERVER_* environment
// variables, then validation. Every error is one line that names the key (or the variable)
// and the offending value, because an operator reads it in a crash-looping container log.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Config is the whole configuration. The yaml tags are the key names operators write; the
// environment variable of a key is derived from its tag path (see EnvName), so adding a field
// here is enough to make it configurable both ways.
//
// Fields tagged secret:"true" are masked by Redacted, LogValue and String.
type Config struct {
	Port int    `yaml:"port"`
	IP   string `yaml:"ip"`

	Redis     Redis     `yaml:"redis"`
	Ali       Ali       `yaml:"ali"`
	Videocall Videocall `yaml:"videocall"`

	AppName      string `yaml:"appName"`
	AuthKey      string `yaml:"authKey" secret:"true"`
	IsCenterPush bool   `yaml:"isCenterPush"`
	RtmpHost     string `yaml:"rtmpHost"`
	PlayHost     string `yaml:"playHost"`

	Store   string     `yaml:"store"`
	DataDir string     `yaml:"dataDir"`
	Push    StringList `yaml:"push"`
	// Mix is "simulator", "aliyun" (the 2014 CDN API), "aliyun-live" (the Live API's
	// CreateMixStream) or "ffmpeg" (a supervised ffmpeg per mixed stream, pulling from and
	// publishing to a self-hosted media server). Left empty it is derived by Load: aliyun
	// when ali.accessKeyID is set, else simulator.
	Mix string `yaml:"mix"`

	// Media configures a self-hosted media server (nginx-rtmp, SRS): its publish hooks and
	// the stream lists reconciliation polls.
	Media Media `yaml:"media"`
	// FFmpeg configures mix: ffmpeg.
	FFmpeg FFmpeg `yaml:"ffmpeg"`

	Live    Live    `yaml:"live"`
	Auth    Auth    `yaml:"auth"`
	Admin   Admin   `yaml:"admin"`
	HTTP    HTTP    `yaml:"http"`
	Actors  Actors  `yaml:"actors"`
	Log     Log     `yaml:"log"`
	Cluster Cluster `yaml:"cluster"`
	Debug   Debug   `yaml:"debug"`

	// sources remembers where each key that did not keep its default came from, so a
	// validation error can name the variable or file line the operator has to fix.
	sources map[string]source
}

// Redis is the connection of the redis store.
type Redis struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// Username is the Redis 6+ ACL user (empty: the default user); docs/security.md has
	// the ACL line that confines it to this deployment's keys.
	Username  string        `yaml:"username"`
	Password  string        `yaml:"password" secret:"true"`
	KeyPrefix string        `yaml:"keyprefix"`
	DB        int           `yaml:"db"`
	Timeout   time.Duration `yaml:"timeout"`
	// Sentinel, when its master and addrs are set, finds the primary through Redis Sentinel
	// instead of host/port and follows it across a failover.
	Sentinel RedisSentinel `yaml:"sentinel"`
	// Cluster, when its addrs are set, talks to a Redis Cluster through these seed nodes
	// instead of host/port; the client learns the other masters and replicas from them.
	Cluster RedisCluster `yaml:"cluster"`
	// WaitReplicas: a write is acknowledged only once WAIT reports that many replicas have
	// it (0: once the primary has it, the behaviour without replicas).
	WaitReplicas int `yaml:"waitReplicas"`
	// FailoverGrace: in a cluster, a node cut off from Redis for less than this (a
	// failover, a restart of Redis) rejoins under its identity instead of exiting, unless
	// something it owned was taken over meanwhile. 0 turns it off.
	FailoverGrace time.Duration `yaml:"failoverGrace"`
	TLS           RedisTLS      `yaml:"tls"`
}

// RedisSentinel names the primary and the sentinels that watch it.
type RedisSentinel struct {
	Master   string     `yaml:"master"`
	Addrs    StringList `yaml:"addrs"`
	Password string     `yaml:"password" secret:"true"`
}

// RedisCluster lists seed nodes of a Redis Cluster (any masters or replicas of it).
type RedisCluster struct {
	Addrs StringList `yaml:"addrs"`
}

// RedisTLS makes the connections to Redis TLS (redis-server --tls-port).
type RedisTLS struct {
	Enabled bool `yaml:"enabled"`
	// CA is a PEM file of the CAs that sign the server's certificate (empty: the system's).
	CA string `yaml:"ca"`
	// Cert and Key are a client certificate and its key (PEM files), for a server that
	// checks clients (tls-auth-clients yes); both or neither.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ServerName is the name the server's certificate must carry (empty: redis.host; on a
	// Redis Cluster, the host of each node dialled).
	ServerName string `yaml:"serverName"`
}

// Ali holds the Aliyun account and the settings of the CDN mix and MNS clients.
type Ali struct {
	OwnerID         string `yaml:"ownerId"`
	AccessKeyID     string `yaml:"accessKeyID"`
	AccessKeySecret string `yaml:"accessKeySecret" secret:"true"`
	MNSVersion      string `yaml:"mnsVersion"`
	MNSRegion       string `yaml:"mnsRegion"`
	// Region is the old server's name for the MNS region; MNSRegion wins when both are set.
	Region string `yaml:"region"`
	// CommonParams is accepted so the old server's config loads; the RPC client sets these itself.
	CommonParams map[string]string `yaml:"commonParams"`
	MNSTopic     MNSTopic          `yaml:"mnsTopic"`
	URLs         AliURLs           `yaml:"urls"`
	// LiveRegion is the RegionId of the Live API calls (mix: aliyun-live).
	LiveRegion         string        `yaml:"liveRegion"`
	MNSEndpoint        string        `yaml:"mnsEndpoint"`
	CallbackAuthKey    string        `yaml:"callbackAuthKey" secret:"true"`
	CallbackMaxSkew    time.Duration `yaml:"callbackMaxSkew"`
	Timeout            time.Duration `yaml:"timeout"`
	BreakerOpenTimeout time.Duration `yaml:"breakerOpenTimeout"`
}

// MNSTopic configures MNS topic subscriptions and the WebSocket server the old clients use.
type MNSTopic struct {
	TopicWebsocketServerIP string `yaml:"topicWebsocketServerIp"`
	SubscriptionEndpoint   string `yaml:"subscriptionEndpoint"`
}

// AliURLs are the Aliyun OpenAPI endpoints.
type AliURLs struct {
	CDN  Endpoint `yaml:"cdn"`
	Live Endpoint `yaml:"live"`
}

// Endpoint is an OpenAPI endpoint and the API version spoken there.
type Endpoint struct {
	URL     string `yaml:"url"`
	Version string `yaml:"version"`
}

// Videocall configures co-streaming.
type Videocall struct {
	// TemplateName is the suffix Aliyun appends to a mixed stream's name.
	TemplateName string `yaml:"templateName"`
}

// Live configures the life of a room.
type Live struct {
	NoPublishTimeout time.Duration `yaml:"noPublishTimeout"`
	TopicDeleteDelay time.Duration `yaml:"topicDeleteDelay"`
	// ReconcileInterval is how often the media server's stream list is compared with the
	// rooms the engine believes live (only while media.statUrl or media.srsApiUrl is set).
	ReconcileInterval time.Duration `yaml:"reconcileInterval"`
	// ReconcileAliyun adds Aliyun's DescribeLiveStreamsOnlineList (of playHost) to the
	// reconciliation, with mix aliyun or aliyun-live (off by default: it is a paid API call
	// every interval).
	ReconcileAliyun bool `yaml:"reconcileAliyun"`
}

// Media is a self-hosted media server (docs/self-hosted.md).
type Media struct {
	// HookSecret, when set, must arrive as the secret query parameter of every publish
	// hook (/media/nginx-rtmp, /media/srs); the media server's hook URL carries it.
	HookSecret string `yaml:"hookSecret" secret:"true"`
	// HookAllow, when set, lists the CIDRs publish hooks may come from.
	HookAllow StringList `yaml:"hookAllow"`
	// StatURL is nginx-rtmp's rtmp_stat page (http://host:port/stat); empty: not polled.
	StatURL string `yaml:"statUrl"`
	// SRSAPIURL is SRS's HTTP API base (http://host:1985); empty: not polled.
	SRSAPIURL string `yaml:"srsApiUrl"`
	// PlayURL are the templates of the play URLs handed to clients (room objects, push 2
	// and 5) when players reach the media server elsewhere than Aliyun's scheme says;
	// {playHost}, {appName} and {stream} are replaced. Empty keeps Aliyun's scheme.
	PlayURL PlayURL `yaml:"playUrl"`
}

// PlayURL are play URL templates (media.playUrl.*).
type PlayURL struct {
	FLV  string `yaml:"flv"`
	HLS  string `yaml:"hls"`
	RTMP string `yaml:"rtmp"`
}

// FFmpeg configures mix: ffmpeg, one supervised ffmpeg process per mixed stream.
type FFmpeg struct {
	// Path is the ffmpeg binary (looked up in PATH when it has no slash).
	Path string `yaml:"path"`
	// MaxJobs bounds the ffmpeg processes running at once; an accept beyond it is 503.
	MaxJobs int `yaml:"maxJobs"`
	// MaxRestarts is how many times a crashed or stalled job is restarted within
	// RestartWindow before the mix is given up (push 14).
	MaxRestarts   int           `yaml:"maxRestarts"`
	RestartWindow time.Duration `yaml:"restartWindow"`
	// RestartBackoff is the wait before the first restart, doubling up to 30 s.
	RestartBackoff time.Duration `yaml:"restartBackoff"`
	// StopGrace is how long a stopped job gets after SIGTERM before SIGKILL.
	StopGrace time.Duration `yaml:"stopGrace"`
	// StallTimeout: a job whose output has not advanced for this long is killed and restarted.
	StallTimeout time.Duration `yaml:"stallTimeout"`
	// Height is the mixed video's height in pixels, FPS its frame rate, VideoBitrate and
	// AudioBitrate ffmpeg's -b:v and -b:a.
	Height       int    `yaml:"height"`
	FPS          int    `yaml:"fps"`
	VideoBitrate string `yaml:"videoBitrate"`
	AudioBitrate string `yaml:"audioBitrate"`
}

// Auth configures user tokens.
type Auth struct {
	Required bool          `yaml:"required"`
	Secret   string        `yaml:"secret" secret:"true"`
	TokenTTL time.Duration `yaml:"tokenTTL"`
}

// Admin configures the admin routes; they are disabled while Token is empty.
type Admin struct {
	Token string `yaml:"token" secret:"true"`
}

// HTTP configures the API server.
type HTTP struct {
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// RateLimit is requests per second per client IP; 0 disables the limit.
	RateLimit float64 `yaml:"rateLimit"`
	// RateBurst is the token bucket size; Load sets it to ceil(RateLimit) when left 0.
	RateBurst int `yaml:"rateBurst"`
	// CORSOrigins lists allowed origins ("*" for any); empty disables CORS.
	CORSOrigins    StringList    `yaml:"corsOrigins"`
	RequestTimeout time.Duration `yaml:"requestTimeout"`
	// PublicURL is this server's external base URL; empty means derive it from each request.
	PublicURL string `yaml:"publicUrl"`
	// WS bounds the subscriptions of the push gateway (GET /ws).
	WS WS `yaml:"ws"`
	// TrustedProxies lists the CIDRs of the proxies in front of this server. A request whose
	// TCP peer is one of them is from the right-most X-Forwarded-For (or Forwarded: for=)
	// address that is not itself trusted; any other request is from its TCP peer, whatever
	// its headers say. Empty: headers are never read.
	TrustedProxies StringList `yaml:"trustedProxies"`
	// MaxConns bounds the open connections of the public port that are not WebSockets
	// (0 = no limit); a connection beyond it is closed at once.
	MaxConns int `yaml:"maxConns"`
}

// WS bounds what one client may ask of the push gateway. A subscription over a limit is
// refused before the WebSocket upgrade (HTTP 400, or 429 for the connection count).
type WS struct {
	// MaxTags is the number of tags one subscription may name (a client needs two).
	MaxTags int `yaml:"maxTags"`
	// MaxTagLength and MaxTopicLength are the longest tag and topic, in bytes.
	MaxTagLength   int `yaml:"maxTagLength"`
	MaxTopicLength int `yaml:"maxTopicLength"`
	// MaxConnsPerAddr is how many connections one client address may hold open at once
	// (0 = no limit). Behind a proxy every client has the proxy's address.
	MaxConnsPerAddr int `yaml:"maxConnsPerAddr"`
	// MaxConnsPerUser is how many sockets one signed-in user may hold open at once, across
	// addresses, when auth.required is set (0 = no limit).
	MaxConnsPerUser int `yaml:"maxConnsPerUser"`
	// IdleTopicTTL: the history of a topic without subscribers that has not been pushed to
	// for this long is forgotten (at least 1m; default 5m, so reconnects with since work).
	IdleTopicTTL time.Duration `yaml:"idleTopicTTL"`
	// MaxHistoryBytes caps the push history the gateway holds over all topics (0 = no
	// cap); beyond it the longest-idle topics without subscribers are forgotten.
	MaxHistoryBytes int64 `yaml:"maxHistoryBytes"`
}

// Actors configures the actor system.
type Actors struct {
	AskTimeout  time.Duration `yaml:"askTimeout"`
	IdleTimeout time.Duration `yaml:"idleTimeout"`
}

// Log configures the process logger.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Debug holds what only someone investigating the server turns on.
type Debug struct {
	// PprofAddr is a loopback host:port where Go's net/http/pprof handlers listen ("": off).
	// It is its own listener, never the public port: a profile shows what the server does.
	PprofAddr string `yaml:"pprofAddr"`
}

// Cluster makes this process one node of a cluster: nodes that share one Redis (store redis,
// the same redis.* and keyprefix) find each other there; nobody lists its peers.
type Cluster struct {
	Enabled bool `yaml:"enabled"`
	// BindAddr is where this node listens for the other nodes (port 0: any free port).
	BindAddr string `yaml:"bindAddr"`
	// AdvertiseAddr is the address the other nodes use (empty: BindAddr with the port
	// actually bound); required when BindAddr's host is a wildcard.
	AdvertiseAddr string `yaml:"advertiseAddr"`
	// Node names this node in logs, metrics and /admin/cluster (empty: generated).
	Node string `yaml:"node"`
	// MemberTTL: a node that has not renewed its membership for this long is dead and its
	// rooms and calls move to live nodes.
	MemberTTL time.Duration `yaml:"memberTTL"`
	// Secret signs every message between the nodes (HMAC-SHA256, at least 32 bytes). It may
	// be empty only while BindAddr is a loopback address (a cluster on one machine).
	Secret string `yaml:"secret" secret:"true"`
	// PreviousSecret is accepted on incoming messages but never used to sign: it lets the
	// secret be rotated one node at a time (docs/security.md).
	PreviousSecret string `yaml:"previousSecret" secret:"true"`
	// MaxConns bounds the connections to BindAddr that have not yet sent a correctly signed
	// request; beyond it the oldest of them is closed, so a flood never keeps a peer out.
	MaxConns int `yaml:"maxConns"`
	// TLS makes the traffic between the nodes TLS with client certificates (all three
	// set) or leaves it plain (none set).
	TLS ClusterTLS `yaml:"tls"`
}

// ClusterTLS is a node's certificate and key and the CA that signs every node's (PEM files).
type ClusterTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
}

// MinSecretLength is the shortest cluster.secret, auth.secret or admin.token accepted:
// 32 bytes, the size of the HMAC-SHA256 key they become.
const MinSecretLength = 32

// Accepted values of the enumerated keys.
const (
	StoreEmbedded = "embedded"
	StoreRedis    = "redis"

	PushWebSocket = "websocket"
	PushMNS       = "mns"

	MixSimulator  = "simulator"
	MixAliyun     = "aliyun"
	MixAliyunLive = "aliyun-live"
	MixFFmpeg     = "ffmpeg"
)

// Default returns the configuration used when neither a file nor the environment says
// otherwise: it runs on one machine with no external service.
func Default() *Config {
	return &Config{
		Port: 4000,
		Redis: Redis{
			Host:      "127.0.0.1",
			Port:      6379,
			KeyPrefix: "mns",
			Timeout:   500 * time.Millisecond,

			FailoverGrace: 10 * time.Second,
		},
		Ali: Ali{
			MNSVersion: "2015-06-06",
			MNSTopic:   MNSTopic{SubscriptionEndpoint: "WebSocket"},
			URLs: AliURLs{CDN: Endpoint{URL: "https://cdn.aliyuncs.com", Version: "2014-11-11"},
				Live: Endpoint{URL: "https://live.aliyuncs.com", Version: "2016-11-01"}},
			LiveRegion:         "cn-shanghai",
			CallbackMaxSkew:    5 * time.Minute,
			Timeout:            5 * time.Second,
			BreakerOpenTimeout: 10 * time.Second,
		},
		Videocall: Videocall{TemplateName: "_mix"},
		AppName:   "DemoApp",
		RtmpHost:  "videocall.push.aliyun.com",
		PlayHost:  "videocall.play.aliyun.com",
		Store:     StoreEmbedded,
		DataDir:   "./data",
		Push:      StringList{PushWebSocket},
		Live:      Live{NoPublishTimeout: 180 * time.Second, TopicDeleteDelay: 60 * time.Second, ReconcileInterval: 30 * time.Second},
		FFmpeg: FFmpeg{Path: "ffmpeg", MaxJobs: 8, MaxRestarts: 3, RestartWindow: 10 * time.Minute,
			RestartBackoff: time.Second, StopGrace: 5 * time.Second, StallTimeout: 20 * time.Second,
			Height: 360, FPS: 15, VideoBitrate: "800k", AudioBitrate: "64k"},
		Auth: Auth{TokenTTL: 720 * time.Hour},
		HTTP: HTTP{MaxBodyBytes: 64 << 10, RequestTimeout: 5 * time.Second,
			WS: WS{MaxTags: 16, MaxTagLength: 128, MaxTopicLength: 256, MaxConnsPerAddr: 256, MaxConnsPerUser: 16,
				IdleTopicTTL: 5 * time.Minute, MaxHistoryBytes: 256 << 20}},
		Actors:  Actors{AskTimeout: 5 * time.Second, IdleTimeout: 10 * time.Minute},
		Cluster: Cluster{BindAddr: "127.0.0.1:0", MemberTTL: 3 * time.Second, MaxConns: 1024},
		Log:     Log{Level: "info", Format: "text"},
	}
}

// Load builds the configuration from the defaults, the YAML file at path (skipped when path
// is ""), and the APPSERVER_* entries of environ (os.Environ() in production), then validates
// it. environ is a parameter so tests never depend on the real environment.
func Load(path string, environ []string) (*Config, error) {
	c := Default()
	c.sources = map[string]source{}
	if path != "" {
		if err := c.loadFile(path); err != nil {
			return nil, err
		}
	}
	if err := c.applyEnv(environ); err != nil {
		return nil, err
	}
	c.normalize()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// normalize fills the values whose defaults depend on other keys.
func (c *Config) normalize() {
	if c.Mix == "" {
		c.Mix = c.defaultMix()
	}
	if c.HTTP.RateLimit > 0 && c.HTTP.RateBurst == 0 {
		c.HTTP.RateBurst = max(1, int(c.HTTP.RateLimit+0.999999))
	}
	c.Push = c.Push.dedup()
}

func (c *Config) defaultMix() string {
	if c.Ali.AccessKeyID == "" {
		return MixSimulator
	}
	return MixAliyun
}

// Addr is the listen address of the HTTP server.
func (c *Config) Addr() string {
	return net.JoinHostPort(c.IP, strconv.Itoa(c.Port))
}

// HasPush reports whether the push backend name is enabled.
func (c *Config) HasPush(name string) bool {
	for _, p := range c.Push {
		if p == name {
			return true
		}
	}
	return false
}

// MNSRegionName is the region of the MNS endpoint: mnsRegion, or the old server's region key.
func (c *Config) MNSRegionName() string {
	if c.Ali.MNSRegion != "" {
		return c.Ali.MNSRegion
	}
	return c.Ali.Region
}

// SlogLevel is log.level as a slog level; Validate guarantees it parses.
func (c *Config) SlogLevel() slog.Level {
	l, _ := parseLevel(c.Log.Level)
	return l
}

func parseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return slog.LevelInfo, false
}

// Error is a configuration error. It prints as one line:
//
//	config: KEY: MESSAGE[ at FILE:LINE]
//
// where KEY is the dotted key path, or the environment variable that set the value.
type Error struct {
	Key   string
	Msg   string
	Where string // "file.yaml:12" when the value came from a file
}

func (e *Error) Error() string {
	s := "config: " + e.Key + ": " + e.Msg
	if e.Where != "" {
		s += " at " + e.Where
	}
	return s
}

// source is where a key's value came from.
type source struct {
	env   string // the variable name, when set by the environment
	where string // "file:line", when set by the file
}

// errorf builds an Error labelled with whatever last set the key at path.
func (c *Config) errorf(path, format string, args ...any) *Error {
	e := &Error{Key: path, Msg: fmt.Sprintf(format, args...)}
	if s, ok := c.sources[path]; ok {
		if s.env != "" {
			e.Key = s.env
		} else {
			e.Where = s.where
		}
	}
	return e
}
