package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, path string, env ...string) *Config {
	t.Helper()
	c, err := Load(path, env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := mustLoad(t, "")
	checks := []struct {
		name      string
		got, want any
	}{
		{"port", c.Port, 4000},
		{"ip", c.IP, ""},
		{"addr", c.Addr(), ":4000"},
		{"redis.host", c.Redis.Host, "127.0.0.1"},
		{"redis.port", c.Redis.Port, 6379},
		{"redis.keyprefix", c.Redis.KeyPrefix, "mns"},
		{"redis.db", c.Redis.DB, 0},
		{"redis.timeout", c.Redis.Timeout, 500 * time.Millisecond},
		{"ali.mnsVersion", c.Ali.MNSVersion, "2015-06-06"},
		{"ali.mnsTopic.subscriptionEndpoint", c.Ali.MNSTopic.SubscriptionEndpoint, "WebSocket"},
		{"ali.urls.cdn.url", c.Ali.URLs.CDN.URL, "https://cdn.aliyuncs.com"},
		{"ali.urls.cdn.version", c.Ali.URLs.CDN.Version, "2014-11-11"},
		{"ali.urls.live.url", c.Ali.URLs.Live.URL, "https://live.aliyuncs.com"},
		{"ali.urls.live.version", c.Ali.URLs.Live.Version, "2016-11-01"},
		{"ali.liveRegion", c.Ali.LiveRegion, "cn-shanghai"},
		{"ali.callbackMaxSkew", c.Ali.CallbackMaxSkew, 5 * time.Minute},
		{"ali.timeout", c.Ali.Timeout, 5 * time.Second},
		{"ali.breakerOpenTimeout", c.Ali.BreakerOpenTimeout, 10 * time.Second},
		{"videocall.templateName", c.Videocall.TemplateName, "_mix"},
		{"appName", c.AppName, "DemoApp"},
		{"authKey", c.AuthKey, ""},
		{"isCenterPush", c.IsCenterPush, false},
		{"rtmpHost", c.RtmpHost, "videocall.push.aliyun.com"},
		{"playHost", c.PlayHost, "videocall.play.aliyun.com"},
		{"store", c.Store, "embedded"},
		{"dataDir", c.DataDir, "./data"},
		{"push", []string(c.Push), []string{"websocket"}},
		{"mix", c.Mix, "simulator"},
		{"live.noPublishTimeout", c.Live.NoPublishTimeout, 180 * time.Second},
		{"live.topicDeleteDelay", c.Live.TopicDeleteDelay, 60 * time.Second},
		{"auth.required", c.Auth.Required, false},
		{"auth.tokenTTL", c.Auth.TokenTTL, 720 * time.Hour},
		{"admin.token", c.Admin.Token, ""},
		{"http.maxBodyBytes", c.HTTP.MaxBodyBytes, int64(65536)},
		{"http.rateLimit", c.HTTP.RateLimit, 0.0},
		{"http.corsOrigins", len(c.HTTP.CORSOrigins), 0},
		{"http.requestTimeout", c.HTTP.RequestTimeout, 5 * time.Second},
		{"http.publicUrl", c.HTTP.PublicURL, ""},
		{"http.ws.maxTags", c.HTTP.WS.MaxTags, 16},
		{"http.ws.maxTagLength", c.HTTP.WS.MaxTagLength, 128},
		{"http.ws.maxTopicLength", c.HTTP.WS.MaxTopicLength, 256},
		{"http.ws.maxConnsPerAddr", c.HTTP.WS.MaxConnsPerAddr, 256},
		{"actors.askTimeout", c.Actors.AskTimeout, 5 * time.Second},
		{"actors.idleTimeout", c.Actors.IdleTimeout, 10 * time.Minute},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"slogLevel", c.SlogLevel(), slog.LevelInfo},
		{"cluster.enabled", c.Cluster.Enabled, false},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
}

func TestSeedConfigLoads(t *testing.T) {
	c := mustLoad(t, "testdata/oldserver.yaml")
	if c.IP != "localhost" || c.Redis.Password != "videocall" || c.Redis.Host != "localhost" || c.Redis.KeyPrefix != "mns" {
		t.Errorf("redis/ip: %+v %q", c.Redis, c.IP)
	}
	if c.Ali.OwnerID != "1252745454" || c.Ali.AccessKeyID != "Q1dfW3pBESJS" || c.Ali.AccessKeySecret != "sdDpBtlS9Bcg80eU5cwTMzvGU" {
		t.Errorf("ali account: %+v", c.Ali)
	}
	if c.Ali.MNSTopic.TopicWebsocketServerIP != "115.28.250.251" || c.Ali.MNSTopic.SubscriptionEndpoint != "WebSocket" {
		t.Errorf("mnsTopic: %+v", c.Ali.MNSTopic)
	}
	if c.Ali.Region != "cn-qingdao-internal-japan-test" || c.MNSRegionName() != "cn-qingdao-internal-japan-test" {
		t.Errorf("region: %q / %q", c.Ali.Region, c.MNSRegionName())
	}
	if c.Ali.CommonParams["SignatureVersion"] != "1.0" {
		t.Errorf("commonParams: %v", c.Ali.CommonParams)
	}
	if c.AuthKey != "qupaivid" || c.AppName != "DemoApp" || c.IsCenterPush || c.Videocall.TemplateName != "_mix" {
		t.Errorf("urls: %+v", c)
	}
	// Credentials present and mix unset: the real Aliyun mix is chosen.
	if c.Mix != MixAliyun {
		t.Errorf("mix = %q, want aliyun", c.Mix)
	}
	if c.Store != StoreEmbedded || !slices.Equal(c.Push, StringList{"websocket"}) {
		t.Errorf("new keys should keep defaults: store %q push %v", c.Store, c.Push)
	}
}

func TestFullConfigLoads(t *testing.T) {
	c := mustLoad(t, "testdata/full.yaml")
	want := Default()
	want.Port = 8080
	want.IP = "127.0.0.1"
	want.Redis = Redis{Host: "redis.internal", Port: 6380, Password: "redis-pass", KeyPrefix: "rooms", DB: 3, Timeout: 750 * time.Millisecond,
		WaitReplicas: 2, FailoverGrace: 15 * time.Second}
	want.Ali = Ali{
		OwnerID: "1252745454", AccessKeyID: "AKID", AccessKeySecret: "ak-secret", MNSVersion: "2015-06-06",
		MNSRegion: "cn-hangzhou", Region: "cn-qingdao", CommonParams: map[string]string{"Format": "json"},
		MNSTopic: MNSTopic{TopicWebsocketServerIP: "10.0.0.1", SubscriptionEndpoint: "WebSocket"},
		URLs: AliURLs{CDN: Endpoint{URL: "http://cdn.example.test", Version: "2014-11-11"},
			Live: Endpoint{URL: "https://live.aliyuncs.com", Version: "2016-11-01"}},
		LiveRegion:  "cn-shanghai",
		MNSEndpoint: "http://mns.example.test", CallbackAuthKey: "cb-key", CallbackMaxSkew: 2 * time.Minute,
		Timeout: 3 * time.Second, BreakerOpenTimeout: 20 * time.Second,
	}
	want.Videocall.TemplateName = "_mixed"
	want.AppName, want.AuthKey, want.IsCenterPush = "LiveApp", "auth-key", true
	want.RtmpHost, want.PlayHost = "push.example.test", "play.example.test"
	want.Store, want.DataDir, want.Push, want.Mix = "redis", "/var/lib/appserver", StringList{"websocket", "mns"}, "simulator"
	want.Live = Live{NoPublishTimeout: 3 * time.Minute, TopicDeleteDelay: 0, ReconcileInterval: 30 * time.Second}
	want.Auth = Auth{Required: true, Secret: "auth-secret-of-at-least-32-bytes-0001", TokenTTL: 24 * time.Hour}
	want.Admin.Token = "admin-token-of-at-least-32-bytes-00001"
	want.HTTP = HTTP{MaxBodyBytes: 1024, RateLimit: 2.5, RateBurst: 10, CORSOrigins: StringList{"https://app.example.test", "*"},
		RequestTimeout: 2 * time.Second, PublicURL: "https://api.example.test",
		WS: WS{MaxTags: 4, MaxTagLength: 64, MaxTopicLength: 32, MaxConnsPerAddr: 0, MaxConnsPerUser: 4,
			IdleTopicTTL: 10 * time.Minute, MaxHistoryBytes: 1 << 20},
		TrustedProxies: StringList{"10.0.0.0/8", "192.168.1.1"}, MaxConns: 5000}
	want.Actors = Actors{AskTimeout: time.Second, IdleTimeout: time.Hour}
	want.Log = Log{Level: "debug", Format: "json"}
	want.Cluster = Cluster{Enabled: true, BindAddr: "0.0.0.0:7946", AdvertiseAddr: "10.0.0.5:7946", Node: "api-1", MemberTTL: 5 * time.Second,
		Secret: "cluster-secret-of-at-least-32-bytes-01", PreviousSecret: "cluster-secret-of-at-least-32-bytes-00", MaxConns: 100}
	c.sources = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("full config:\n got %+v\nwant %+v", *c, *want)
	}
}

func TestEnvOverrides(t *testing.T) {
	path := writeYAML(t, "port: 5000\nredis:\n  host: fromfile\nlive:\n  noPublishTimeout: 1m\n")
	c := mustLoad(t, path,
		"PATH=/usr/bin",
		"APPSERVER_PORT=6000",
		"APPSERVER_REDIS_HOST=fromenv",
		"APPSERVER_REDIS_TIMEOUT=1s",
		"APPSERVER_ALI_URLS_CDN_URL=https://cdn.example.test",
		"APPSERVER_LIVE_NOPUBLISHTIMEOUT=2s",
		"APPSERVER_ALI_ACCESSKEYID=AKID",
		"APPSERVER_ALI_ACCESSKEYSECRET=secret",
		"APPSERVER_ALI_OWNERID=123",
		"APPSERVER_ALI_MNSREGION=cn-hangzhou",
		"APPSERVER_PUSH=websocket, mns",
		"APPSERVER_ISCENTERPUSH=true",
		"APPSERVER_HTTP_RATELIMIT=1.5",
		"APPSERVER_HTTP_WS_MAXTAGS=3",
		"APPSERVER_HTTP_WS_MAXCONNSPERADDR=0",
		"APPSERVER_HTTP_CORSORIGINS=https://a.test,https://b.test",
		"APPSERVER_ALI_COMMONPARAMS=Format=json,Version=1",
		"APPSERVER_CONFIG=/etc/appserver.yaml",
	)
	if c.Port != 6000 || c.Redis.Host != "fromenv" || c.Redis.Timeout != time.Second {
		t.Errorf("port/redis: %d %+v", c.Port, c.Redis)
	}
	if c.Ali.URLs.CDN.URL != "https://cdn.example.test" || c.Live.NoPublishTimeout != 2*time.Second {
		t.Errorf("nested: %q %v", c.Ali.URLs.CDN.URL, c.Live.NoPublishTimeout)
	}
	if !slices.Equal(c.Push, StringList{"websocket", "mns"}) || !c.HasPush(PushMNS) {
		t.Errorf("push = %#v", c.Push)
	}
	if c.HTTP.WS.MaxTags != 3 || c.HTTP.WS.MaxConnsPerAddr != 0 || c.HTTP.WS.MaxTagLength != 128 {
		t.Errorf("http.ws = %+v", c.HTTP.WS)
	}
	if c.Mix != MixAliyun || !c.IsCenterPush || c.HTTP.RateLimit != 1.5 || c.HTTP.RateBurst != 2 {
		t.Errorf("mix %q centre %v rate %v/%d", c.Mix, c.IsCenterPush, c.HTTP.RateLimit, c.HTTP.RateBurst)
	}
	if !slices.Equal(c.HTTP.CORSOrigins, StringList{"https://a.test", "https://b.test"}) {
		t.Errorf("cors = %#v", c.HTTP.CORSOrigins)
	}
	if !reflect.DeepEqual(c.Ali.CommonParams, map[string]string{"Format": "json", "Version": "1"}) {
		t.Errorf("commonParams = %v", c.Ali.CommonParams)
	}
}

// sampleEnvValue is a valid textual value for a key of type t.
func sampleEnvValue(t reflect.Type) string {
	switch {
	case t == durationType:
		return "7s"
	case t.Kind() == reflect.Slice:
		return "websocket"
	case t.Kind() == reflect.Map:
		return "a=b"
	case t.Kind() == reflect.Bool:
		return "false"
	case t.Kind() == reflect.Float64:
		return "0"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "4001"
	}
	return "x"
}

// Every key must be reachable from the environment by the mechanical naming rule.
func TestEveryKeyHasEnvVar(t *testing.T) {
	list, _ := leavesOnce()
	if len(list) < 50 {
		t.Fatalf("only %d keys found; reflection walk broken?", len(list))
	}
	for _, l := range list {
		want := "APPSERVER_" + strings.ToUpper(strings.ReplaceAll(l.path, ".", "_"))
		if l.env != want {
			t.Errorf("%s: env %s, want %s", l.path, l.env, want)
		}
		c := Default()
		c.sources = map[string]source{}
		val := sampleEnvValue(l.typ)
		if err := c.applyEnv([]string{l.env + "=" + val}); err != nil {
			t.Errorf("%s: %v", l.env, err)
			continue
		}
		got := fmt.Sprint(reflect.ValueOf(c).Elem().FieldByIndex(l.index).Interface())
		if !strings.Contains(got, strings.Split(val, "=")[0]) {
			t.Errorf("%s=%s left %s", l.env, val, got)
		}
	}
	for _, k := range []string{"ali.urls.cdn.url", "live.noPublishTimeout", "ali.accessKeyID", "cluster.bindAddr", "http.maxBodyBytes"} {
		if !slices.Contains(Keys(), k) {
			t.Errorf("Keys() lacks %s", k)
		}
	}
}

func TestPushForms(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		env        []string
		want       StringList
	}{
		{"string", "push: websocket,mns\n", nil, StringList{"websocket", "mns"}},
		{"string spaces", "push: ' websocket , mns '\n", nil, StringList{"websocket", "mns"}},
		{"single", "push: mns\n", nil, StringList{"mns"}},
		{"flow list", "push: [mns, websocket]\n", nil, StringList{"mns", "websocket"}},
		{"block list", "push:\n  - websocket\n  - mns\n", nil, StringList{"websocket", "mns"}},
		{"duplicates dropped", "push: [mns, mns]\n", nil, StringList{"mns"}},
		{"env beats file", "push: [websocket]\n", []string{"APPSERVER_PUSH=mns"}, StringList{"mns"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := "ali: {ownerId: '1', accessKeyID: id, accessKeySecret: s, mnsRegion: cn-hangzhou}\n" + tc.yaml
			c := mustLoad(t, writeYAML(t, body), tc.env...)
			if !slices.Equal(c.Push, tc.want) {
				t.Errorf("push = %#v, want %#v", c.Push, tc.want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	creds := "ali: {accessKeyID: id, accessKeySecret: s}\n"
	for _, tc := range []struct {
		name string
		yaml string // "" means no file
		env  []string
		want []string // substrings of the error
	}{
		{"unknown store", "store: mysql\n", nil,
			[]string{`config: store: unknown store "mysql" (want embedded or redis)`, "app.yaml:1"}},
		{"bad duration file", "live:\n  noPublishTimeout: 3 minutes\n", nil,
			[]string{`config: live.noPublishTimeout: invalid duration "3 minutes" (use Go syntax like 500ms, 3m)`, "app.yaml:2"}},
		{"bare int duration file", "redis:\n  timeout: 500\n", nil,
			[]string{"config: redis.timeout:", `"500"`, "no unit", "500ms"}},
		{"bare int duration env", "", []string{"APPSERVER_LIVE_NOPUBLISHTIMEOUT=180"},
			[]string{"config: APPSERVER_LIVE_NOPUBLISHTIMEOUT:", "no unit"}},
		{"bad duration env", "", []string{"APPSERVER_ACTORS_ASKTIMEOUT=soon"},
			[]string{`config: APPSERVER_ACTORS_ASKTIMEOUT: invalid duration "soon"`}},
		{"port range env", "", []string{"APPSERVER_PORT=70000"},
			[]string{"config: APPSERVER_PORT: port 70000 out of range 1-65535"}},
		{"port range file", "port: 0\n", nil,
			[]string{"config: port: port 0 out of range 1-65535 at ", "app.yaml:1"}},
		{"port not int env", "", []string{"APPSERVER_PORT=http"},
			[]string{`config: APPSERVER_PORT: invalid integer "http"`}},
		{"port not int file", "port: four\n", nil,
			[]string{`config: port: want an integer, got "four"`}},
		{"misspelt key", "redis:\n  hots: x\n", nil,
			[]string{"config: redis.hots: unknown key; did you mean redis.host?", "app.yaml:2"}},
		{"wrong case key", "ali:\n  accessKeyId: x\n", nil,
			[]string{"config: ali.accessKeyId: unknown key; did you mean ali.accessKeyID?"}},
		{"unknown top key", "colour: blue\n", nil,
			[]string{"config: colour: unknown key", "app.yaml:1"}},
		{"duplicate key", "appName: A\nappName: B\n", nil,
			[]string{"config: appName: duplicate key (first at line 1)", "app.yaml:2"}},
		{"unknown env", "", []string{"APPSERVER_REDIS_HOTS=x"},
			[]string{"config: APPSERVER_REDIS_HOTS: unknown variable; did you mean APPSERVER_REDIS_HOST?"}},
		{"unknown env group", "", []string{"APPSERVER_REDIS=x"},
			[]string{"config: APPSERVER_REDIS: unknown variable"}},
		{"sentinel and host file", "store: redis\nredis: {host: 10.0.0.5, sentinel: {master: m, addrs: 'a:26379'}}\n", nil,
			[]string{"config: redis.host: set either redis.host or redis.sentinel.*, not both", "app.yaml:2"}},
		{"sentinel and port env", "", []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_PORT=6380",
			"APPSERVER_REDIS_SENTINEL_MASTER=m", "APPSERVER_REDIS_SENTINEL_ADDRS=a:26379,b:26379"},
			[]string{"config: APPSERVER_REDIS_PORT: set either redis.port or redis.sentinel.*, not both"}},
		{"sentinel without addrs", "", []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_SENTINEL_MASTER=m"},
			[]string{"config: redis.sentinel.addrs: must list the sentinels"}},
		{"sentinel without master", "", []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_SENTINEL_ADDRS=a:1"},
			[]string{"config: redis.sentinel.master: must name the primary"}},
		{"sentinel addr without port", "", []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_SENTINEL_MASTER=m",
			"APPSERVER_REDIS_SENTINEL_ADDRS=a:1,b"}, []string{`config: APPSERVER_REDIS_SENTINEL_ADDRS: "b" is not host:port`}},
		{"cluster and host file", "store: redis\nredis: {host: 10.0.0.5, cluster: {addrs: 'a:7000'}}\n", nil,
			[]string{"config: redis.host: set either redis.host or redis.cluster.addrs, not both", "app.yaml:2"}},
		{"cluster and sentinel env", "", []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_CLUSTER_ADDRS=a:7000",
			"APPSERVER_REDIS_SENTINEL_MASTER=m", "APPSERVER_REDIS_SENTINEL_ADDRS=a:26379"},
			[]string{"config: APPSERVER_REDIS_SENTINEL_MASTER: set either redis.sentinel.master or redis.cluster.addrs, not both"}},
		{"cluster addr without port", "", []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_CLUSTER_ADDRS=a:7000,b"},
			[]string{`config: APPSERVER_REDIS_CLUSTER_ADDRS: "b" is not host:port`}},
		{"cluster prefix with a brace", "", []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_CLUSTER_ADDRS=a:7000",
			"APPSERVER_REDIS_KEYPREFIX=a{b}"}, []string{"config: APPSERVER_REDIS_KEYPREFIX: must not contain { or }"}},
		{"failoverGrace negative", "", []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_FAILOVERGRACE=-1s"},
			[]string{"config: APPSERVER_REDIS_FAILOVERGRACE: must not be negative"}},
		{"waitReplicas negative", "", []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_WAITREPLICAS=-1"},
			[]string{"config: APPSERVER_REDIS_WAITREPLICAS: -1 out of range 0-16"}},
		{"unknown push", "push: websocket,kafka\n", nil,
			[]string{`config: push: unknown push backend "kafka" (want websocket or mns)`}},
		{"empty push", "", []string{"APPSERVER_PUSH= , "},
			[]string{"config: APPSERVER_PUSH: no push backend"}},
		{"unknown mix", "mix: cloud\n", nil,
			[]string{`config: mix: unknown mix "cloud" (want simulator, aliyun, aliyun-live or ffmpeg)`}},
		{"ffmpeg bad bitrate", "mix: ffmpeg\nffmpeg: {videoBitrate: \"800k -f null\"}\n", nil,
			[]string{`config: ffmpeg.videoBitrate: invalid bitrate "800k -f null"`}},
		{"ffmpeg no jobs", "", []string{"APPSERVER_MIX=ffmpeg", "APPSERVER_FFMPEG_MAXJOBS=0"},
			[]string{"config: APPSERVER_FFMPEG_MAXJOBS: must be between 1 and 10000, got 0"}},
		{"hook allow not a CIDR", "media: {hookAllow: [10.0.0.1]}\n", nil,
			[]string{`config: media.hookAllow: invalid CIDR "10.0.0.1"`}},
		{"aliyun reconciliation without aliyun", "", []string{"APPSERVER_LIVE_RECONCILEALIYUN=true"},
			[]string{"config: APPSERVER_LIVE_RECONCILEALIYUN: needs mix aliyun or aliyun-live"}},
		{"stat URL", "", []string{"APPSERVER_MEDIA_STATURL=ftp://x/stat"},
			[]string{"config: APPSERVER_MEDIA_STATURL: invalid URL"}},
		{"mix aliyun-live without creds", "mix: aliyun-live\n", nil,
			[]string{"config: mix: mix aliyun-live needs ali.accessKeyID and ali.accessKeySecret"}},
		{"mix aliyun-live bad url env", creds, []string{"APPSERVER_MIX=aliyun-live", "APPSERVER_ALI_URLS_LIVE_URL=live.aliyuncs.com"},
			[]string{`config: APPSERVER_ALI_URLS_LIVE_URL: invalid URL "live.aliyuncs.com"`}},
		{"mix aliyun-live without version", "mix: aliyun-live\nali: {accessKeyID: id, accessKeySecret: s, urls: {live: {version: ''}}}\n", nil,
			[]string{"config: ali.urls.live.version: must not be empty with mix aliyun-live"}},
		{"mix aliyun-live without region env", creds, []string{"APPSERVER_MIX=aliyun-live", "APPSERVER_ALI_LIVEREGION="},
			[]string{"config: APPSERVER_ALI_LIVEREGION: must not be empty with mix aliyun-live"}},
		{"mix aliyun without creds", "mix: aliyun\n", nil,
			[]string{"config: mix: mix aliyun needs ali.accessKeyID and ali.accessKeySecret"}},
		{"push mns without owner", creds + "push: mns\n", nil,
			[]string{"config: push: push mns needs ali.ownerId or ali.mnsEndpoint"}},
		{"push mns without creds", "ali: {ownerId: '1', mnsRegion: x}\npush: mns\n", nil,
			[]string{"config: push: push mns needs ali.accessKeyID and ali.accessKeySecret"}},
		{"push mns without region", "ali: {ownerId: '1', accessKeyID: id, accessKeySecret: s}\npush: mns\n", nil,
			[]string{"config: ali.mnsRegion: push mns needs ali.mnsRegion"}},
		{"zero duration", "ali:\n  timeout: 0s\n", nil,
			[]string{"config: ali.timeout: must be a positive duration, got 0s", "app.yaml:2"}},
		{"negative delay env", "", []string{"APPSERVER_LIVE_TOPICDELETEDELAY=-1s"},
			[]string{"config: APPSERVER_LIVE_TOPICDELETEDELAY: must not be negative, got -1s"}},
		{"max body", "http:\n  maxBodyBytes: 0\n", nil,
			[]string{"config: http.maxBodyBytes: must be positive, got 0"}},
		{"ws tags", "http:\n  ws:\n    maxTags: 1\n", nil,
			[]string{"config: http.ws.maxTags: must be between 2 and 1024, got 1", "app.yaml:3"}},
		{"ws tags env", "", []string{"APPSERVER_HTTP_WS_MAXTAGS=5000"},
			[]string{"config: APPSERVER_HTTP_WS_MAXTAGS: must be between 2 and 1024, got 5000"}},
		{"ws tag length", "", []string{"APPSERVER_HTTP_WS_MAXTAGLENGTH=0"},
			[]string{"config: APPSERVER_HTTP_WS_MAXTAGLENGTH: must be between 20 and 4096, got 0"}},
		{"ws topic length", "http:\n  ws:\n    maxTopicLength: 9\n", nil,
			[]string{"config: http.ws.maxTopicLength: must be between 10 and 4096, got 9"}},
		{"ws conns", "", []string{"APPSERVER_HTTP_WS_MAXCONNSPERADDR=-1"},
			[]string{"config: APPSERVER_HTTP_WS_MAXCONNSPERADDR: must not be negative (0 = no limit), got -1"}},
		{"ws conns not a number", "", []string{"APPSERVER_HTTP_WS_MAXCONNSPERADDR=lots"},
			[]string{"config: APPSERVER_HTTP_WS_MAXCONNSPERADDR:"}},
		{"log level", "log: {level: loud}\n", nil,
			[]string{`config: log.level: unknown level "loud" (want debug, info, warn or error)`}},
		{"log format", "", []string{"APPSERVER_LOG_FORMAT=xml"},
			[]string{`config: APPSERVER_LOG_FORMAT: unknown format "xml" (want text or json)`}},
		{"auth without secret", "auth: {required: true}\n", nil,
			[]string{"config: auth.secret: must be set when auth.required is true"}},
		{"bad public url", "http: {publicUrl: 'example.com'}\n", nil,
			[]string{`config: http.publicUrl: invalid URL "example.com"`}},
		{"bad bool env", "", []string{"APPSERVER_ISCENTERPUSH=maybe"},
			[]string{`config: APPSERVER_ISCENTERPUSH: invalid boolean "maybe"`}},
		{"bad bool file", "isCenterPush: maybe\n", nil,
			[]string{`config: isCenterPush: want true or false, got "maybe"`}},
		{"mapping for string", "appName: {a: b}\n", nil,
			[]string{"config: appName: want a string, got a mapping"}},
		{"scalar for section", "log: debug\n", nil,
			[]string{`config: log: want a mapping of keys, got "debug"`}},
		{"scalar for a section with a secret", "redis: localhost\n", nil,
			[]string{`config: redis: want a mapping of keys, got a single value (not shown`}},
		{"yaml syntax", "port: [\n", nil,
			[]string{"config: ", "app.yaml"}},
		{"redis port", "store: redis\nredis: {port: 99999}\n", nil,
			[]string{"config: redis.port: port 99999 out of range 1-65535"}},
		{"cluster on the embedded store", "cluster: {enabled: true}\n", nil,
			[]string{"config: cluster.enabled: needs store: redis"}},
		{"cluster wildcard without advertise", "store: redis\ncluster: {enabled: true, bindAddr: '0.0.0.0:7946'}\n", nil,
			[]string{"config: cluster.advertiseAddr: must be set"}},
		{"cluster bad bindAddr", "", []string{"APPSERVER_STORE=redis", "APPSERVER_CLUSTER_ENABLED=true", "APPSERVER_CLUSTER_BINDADDR=localhost"},
			[]string{`config: APPSERVER_CLUSTER_BINDADDR: invalid address "localhost"`}},
		{"cluster short ttl", "store: redis\ncluster: {enabled: true, memberTTL: 10ms}\n", nil,
			[]string{"config: cluster.memberTTL: 10ms is too short"}},
		{"cluster node name", "store: redis\ncluster: {enabled: true, node: 'a b'}\n", nil,
			[]string{`config: cluster.node: invalid name "a b"`}},
		{"cluster tls incomplete", "", []string{"APPSERVER_STORE=redis", "APPSERVER_CLUSTER_ENABLED=true", "APPSERVER_CLUSTER_TLS_CERT=/etc/node.pem"},
			[]string{"config: APPSERVER_CLUSTER_TLS_CERT: cluster.tls.cert, cluster.tls.key and cluster.tls.ca go together"}},
		{"pprof on a network address", "debug: {pprofAddr: '0.0.0.0:6061'}\n", nil,
			[]string{`config: debug.pprofAddr: must be a loopback address`}},
		{"pprof on the public port", "", []string{"APPSERVER_PORT=4000", "APPSERVER_DEBUG_PPROFADDR=127.0.0.1:4000"},
			[]string{"config: APPSERVER_DEBUG_PPROFADDR: must not be the public port 4000"}},
		{"pprof without a port", "debug: {pprofAddr: localhost}\n", nil,
			[]string{`config: debug.pprofAddr: want a loopback host:port`}},
		{"redis tls key without cert", "store: redis\nredis: {tls: {enabled: true, key: /k.pem}}\n", nil,
			[]string{"config: redis.tls.cert: redis.tls.cert and redis.tls.key go together"}},
		// The start refusals of an insecure deployment: each names the variable to set.
		{"cluster on a network address without a secret", "store: redis\ncluster: {enabled: true, bindAddr: '10.0.0.5:7946'}\n", nil,
			[]string{`config: cluster.secret: must be set when cluster.bindAddr ("10.0.0.5:7946") is not a loopback address`, "set APPSERVER_CLUSTER_SECRET"}},
		{"cluster wildcard with advertise, without a secret", "", []string{"APPSERVER_STORE=redis", "APPSERVER_CLUSTER_ENABLED=true",
			"APPSERVER_CLUSTER_BINDADDR=0.0.0.0:7946", "APPSERVER_CLUSTER_ADVERTISEADDR=10.0.0.5:7946"},
			[]string{"config: cluster.secret: must be set", "set APPSERVER_CLUSTER_SECRET"}},
		{"short cluster secret", "", []string{"APPSERVER_STORE=redis", "APPSERVER_CLUSTER_ENABLED=true", "APPSERVER_CLUSTER_SECRET=0123456789abcdef0123456789abcde"},
			[]string{"config: APPSERVER_CLUSTER_SECRET: too short (31 bytes): set APPSERVER_CLUSTER_SECRET to at least 32"}},
		{"short previous cluster secret", "", []string{"APPSERVER_CLUSTER_SECRET=0123456789abcdef0123456789abcdef", "APPSERVER_CLUSTER_PREVIOUSSECRET=old"},
			[]string{"config: APPSERVER_CLUSTER_PREVIOUSSECRET: too short (3 bytes)"}},
		{"short auth secret", "auth: {secret: x}\n", nil,
			[]string{"config: auth.secret: too short (1 bytes): set APPSERVER_AUTH_SECRET to at least 32"}},
		{"short admin token", "", []string{"APPSERVER_ADMIN_TOKEN=admin"},
			[]string{"config: APPSERVER_ADMIN_TOKEN: too short (5 bytes): set APPSERVER_ADMIN_TOKEN to at least 32"}},
		{"auth required with aliyun mix and no callback key", "auth: {required: true, secret: 0123456789abcdef0123456789abcdef}\n" +
			"mix: aliyun\nali: {accessKeyID: id, accessKeySecret: s}\n", nil,
			[]string{"config: ali.callbackAuthKey: must be set when auth.required is true with mix aliyun", "set APPSERVER_ALI_CALLBACKAUTHKEY"}},
		{"auth required with aliyun-live mix and no callback key", "", []string{"APPSERVER_AUTH_REQUIRED=true",
			"APPSERVER_AUTH_SECRET=0123456789abcdef0123456789abcdef", "APPSERVER_MIX=aliyun-live", "APPSERVER_ALI_ACCESSKEYID=id",
			"APPSERVER_ALI_ACCESSKEYSECRET=s"},
			[]string{"config: ali.callbackAuthKey: must be set when auth.required is true with mix aliyun-live"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.yaml != "" {
				path = writeYAML(t, tc.yaml)
			}
			_, err := Load(path, tc.env)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

// A mistake around a secret never puts the secret on the terminal or into a log collector:
// neither the checking walk nor the YAML decoder's own messages quote it.
func TestErrorsDoNotQuoteSecrets(t *testing.T) {
	const secret = "S3CRET-VALUE-42"
	for _, doc := range []string{
		"admin: " + secret + "\n",
		"ali: {accessKeySecret: !!int " + secret + "}\n",
		"redis: {password: !!float " + secret + "}\n",
		"ali: {callbackAuthKey: !!bool " + secret + "}\n",
		"auth: {secret: [" + secret + "]}\n",
		"ali: " + secret + "\n",
	} {
		_, err := Load(writeYAML(t, doc), nil)
		if err == nil {
			t.Fatalf("%q loaded, want an error", doc)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%q: the error quotes the secret: %v", doc, err)
		}
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if err == nil || !strings.HasPrefix(err.Error(), "config: ") || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	c := mustLoad(t, writeYAML(t, "# nothing\n"))
	if c.Port != 4000 || c.Mix != MixSimulator {
		t.Errorf("%d %q", c.Port, c.Mix)
	}
}

func TestExplicitMixAndBurst(t *testing.T) {
	c := mustLoad(t, writeYAML(t, "mix: simulator\nali: {accessKeyID: id, accessKeySecret: s}\nhttp: {rateLimit: 0.2}\n"))
	if c.Mix != MixSimulator {
		t.Errorf("explicit mix overridden: %q", c.Mix)
	}
	if c.HTTP.RateBurst != 1 {
		t.Errorf("burst = %d, want 1", c.HTTP.RateBurst)
	}
}

func TestSecretsRedacted(t *testing.T) {
	secrets := map[string]string{
		"APPSERVER_ALI_ACCESSKEYSECRET": "S3cr3t-AK",
		"APPSERVER_REDIS_PASSWORD":      "S3cr3t-redis",
		"APPSERVER_AUTHKEY":             "S3cr3t-authkey",
		"APPSERVER_ALI_CALLBACKAUTHKEY": "S3cr3t-callback",
		"APPSERVER_AUTH_SECRET":         "S3cr3t-auth-0123456789abcdef0123456789",
		"APPSERVER_ADMIN_TOKEN":         "S3cr3t-admin-0123456789abcdef012345678",
		"APPSERVER_CLUSTER_SECRET":      "S3cr3t-cluster-0123456789abcdef0123456",
	}
	var env []string
	for k, v := range secrets {
		env = append(env, k+"="+v)
	}
	c := mustLoad(t, "", append(env, "APPSERVER_ALI_ACCESSKEYID=visible-id")...)

	var outputs []string
	red := c.Redacted()
	b, _ := json.Marshal(red)
	outputs = append(outputs, string(b), fmt.Sprint(red), c.String(), fmt.Sprintf("%v %+v %s %v", c, c, c, *c))
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("start", "config", c, "byValue", *c)
		outputs = append(outputs, buf.String())
	}
	for _, out := range outputs {
		if strings.Contains(out, "S3cr3t") {
			t.Errorf("secret leaked: %s", out)
		}
		if !strings.Contains(out, "visible-id") || !strings.Contains(out, Mask) {
			t.Errorf("redacted output lacks the access key id or the mask: %s", out)
		}
	}
	if red["ali"].(map[string]any)["accessKeySecret"] != Mask || red["admin"].(map[string]any)["token"] != Mask {
		t.Errorf("mask missing: %v", red)
	}
	if red["live"].(map[string]any)["noPublishTimeout"] != "3m0s" {
		t.Errorf("durations should print as Go syntax: %v", red["live"])
	}
	// An unset secret is shown empty, so the log tells it was not configured.
	if Default().Redacted()["authKey"] != "" {
		t.Error("unset secret should redact to empty")
	}
}

// A Redis Cluster replaces host/port like Sentinel does: their defaults do not count.
func TestRedisClusterConfigLoads(t *testing.T) {
	c := mustLoad(t, writeYAML(t, "store: redis\nredis:\n  waitReplicas: 1\n  cluster:\n    addrs: [10.0.0.1:7000, 10.0.0.2:7000]\n"))
	if !c.Redis.UsesCluster() || c.Redis.UsesSentinel() || len(c.Redis.Cluster.Addrs) != 2 || c.Redis.WaitReplicas != 1 {
		t.Fatalf("redis = %+v", c.Redis)
	}
	c = mustLoad(t, "", "APPSERVER_STORE=redis", "APPSERVER_REDIS_CLUSTER_ADDRS=10.0.0.1:7000, 10.0.0.2:7000 ,10.0.0.3:7000")
	if got := c.Redis.Cluster.Addrs; len(got) != 3 || got[2] != "10.0.0.3:7000" {
		t.Fatalf("cluster addrs = %q", got)
	}
}

// Validate must accept a hand-built Default (mix still empty) so other packages' tests can
// construct configs without Load.
func TestDefaultValidates(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

// Sentinel replaces host/port: the defaults of redis.host and redis.port do not count as a
// second choice, and the addresses come as a YAML list or one comma-separated variable.
func TestSentinelConfigLoads(t *testing.T) {
	c := mustLoad(t, writeYAML(t, "store: redis\nredis:\n  waitReplicas: 1\n  sentinel:\n    master: main\n    addrs: [10.0.0.1:26379, 10.0.0.2:26379]\n    password: s3\n"))
	if !c.Redis.UsesSentinel() || c.Redis.Sentinel.Master != "main" || len(c.Redis.Sentinel.Addrs) != 2 ||
		c.Redis.Sentinel.Password != "s3" || c.Redis.WaitReplicas != 1 {
		t.Fatalf("redis = %+v", c.Redis)
	}
	c = mustLoad(t, "", "APPSERVER_STORE=redis", "APPSERVER_REDIS_SENTINEL_MASTER=main",
		"APPSERVER_REDIS_SENTINEL_ADDRS=10.0.0.1:26379, 10.0.0.2:26379 ,10.0.0.3:26379")
	if got := c.Redis.Sentinel.Addrs; len(got) != 3 || got[1] != "10.0.0.2:26379" {
		t.Fatalf("sentinel addrs = %q", got)
	}
	if c.Redis.WaitReplicas != 0 {
		t.Fatalf("waitReplicas default = %d, want 0", c.Redis.WaitReplicas)
	}
}
