package aliyun_test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"roomengine/actors"
	"roomengine/aliyun"
)

var _ actors.URLs = (*aliyun.URLBuilder)(nil)

func builder() aliyun.URLBuilder {
	return aliyun.URLBuilder{
		AppName:      "DemoApp",
		RtmpHost:     "videocall.push.aliyun.com",
		PlayHost:     "videocall.play.aliyun.com",
		TemplateName: "_mix",
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestPushURL(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.FixedZone("CST", 8*3600))
	exp := now.Add(24 * time.Hour).Unix()
	if exp != 1714622400 {
		t.Fatalf("exp = %d", exp)
	}
	// The auth_key is recomputed from docs/api.md (The room object) with the path /A/R.
	authKey := fmt.Sprintf("%d-0-0-%s", exp, md5hex(fmt.Sprintf("/DemoApp/3ff0274890-%d-0-0-qupaivid", exp)))
	for _, tc := range []struct {
		name   string
		centre bool
		key    string
		want   string
	}{
		{"plain", false, "", "rtmp://videocall.push.aliyun.com/DemoApp/3ff0274890"},
		{"centre", true, "", "rtmp://video-center.alivecdn.com/DemoApp/3ff0274890?vhost=videocall.play.aliyun.com"},
		{"auth", false, "qupaivid", "rtmp://videocall.push.aliyun.com/DemoApp/3ff0274890?auth_key=" + authKey},
		{"centre auth", true, "qupaivid", "rtmp://video-center.alivecdn.com/DemoApp/3ff0274890?vhost=videocall.play.aliyun.com&auth_key=" + authKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := builder()
			b.CenterPush, b.AuthKey = tc.centre, tc.key
			if got := b.PushURL("3ff0274890", now); got != tc.want {
				t.Errorf("PushURL =\n %s\nwant\n %s", got, tc.want)
			}
		})
	}
}

func TestPlayURLs(t *testing.T) {
	b := builder()
	flv, m3u8, rtmp := b.PlayURLs("3ff0274890")
	for _, c := range []struct{ got, want string }{
		{flv, "http://videocall.play.aliyun.com/DemoApp/3ff0274890_mix.flv"},
		{m3u8, "http://videocall.play.aliyun.com/DemoApp/3ff0274890_mix.m3u8"},
		{rtmp, "rtmp://videocall.play.aliyun.com/DemoApp/3ff0274890_mix"},
		{b.ShortDelayPlayURL("3ff0274890"), "http://videocall.play.aliyun.com/DemoApp/3ff0274890.flv?ali_flv_retain=0"},
		{b.MixPlayURL("3ff0274890_mix"), "http://videocall.play.aliyun.com/DemoApp/3ff0274890_mix"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	// Play URLs are never signed or centre-pushed: those settings only affect pushing.
	b.AuthKey, b.CenterPush = "k", true
	if f, _, _ := b.PlayURLs("r"); f != "http://videocall.play.aliyun.com/DemoApp/r_mix.flv" {
		t.Errorf("play URL changed by push settings: %s", f)
	}
}

func TestTopicLocation(t *testing.T) {
	b := builder()
	if got := b.TopicLocation("abc"); got != "" {
		t.Errorf("without TopicBase: %q", got)
	}
	for _, base := range []string{"http://123.mns.cn-hangzhou.aliyuncs.com", "http://123.mns.cn-hangzhou.aliyuncs.com/"} {
		b.TopicBase = base
		if got, want := b.TopicLocation("abc"), "http://123.mns.cn-hangzhou.aliyuncs.com/topics/abc"; got != want {
			t.Errorf("TopicLocation = %q, want %q", got, want)
		}
	}
}

func TestMNSEndpoint(t *testing.T) {
	for _, tc := range []struct{ owner, region, override, want string }{
		{"1252745454", "cn-hangzhou", "", "http://1252745454.mns.cn-hangzhou.aliyuncs.com"},
		{"1252745454", "cn-hangzhou", "http://127.0.0.1:9000/", "http://127.0.0.1:9000"},
		{"", "cn-hangzhou", "http://mns.test", "http://mns.test"},
		{"", "cn-hangzhou", "", ""},
		{"1252745454", "", "", ""},
	} {
		if got := aliyun.MNSEndpoint(tc.owner, tc.region, tc.override); got != tc.want {
			t.Errorf("MNSEndpoint(%q, %q, %q) = %q, want %q", tc.owner, tc.region, tc.override, got, tc.want)
		}
	}
}

// A self-hosted media server's play URL templates replace Aliyun's scheme for every play
// URL (the push URL is unchanged).
func TestPlayURLTemplates(t *testing.T) {
	b := &aliyun.URLBuilder{AppName: "DemoApp", RtmpHost: "127.0.0.1:1935", PlayHost: "127.0.0.1:1935", TemplateName: "_mix",
		FLVTemplate: "http://media.example:8080/flv?app={appName}&stream={stream}", HLSTemplate: "http://media.example:8088/hls/{stream}.m3u8",
		RTMPTemplate: "rtmp://{playHost}/{appName}/{stream}"}
	flv, m3u8, rtmp := b.PlayURLs("r1")
	for _, c := range []struct{ got, want string }{
		{flv, "http://media.example:8080/flv?app=DemoApp&stream=r1_mix"},
		{m3u8, "http://media.example:8088/hls/r1_mix.m3u8"},
		{rtmp, "rtmp://127.0.0.1:1935/DemoApp/r1_mix"},
		{b.ShortDelayPlayURL("r1"), "http://media.example:8080/flv?app=DemoApp&stream=r1"},
		{b.MixPlayURL("r1_mix.flv"), "http://media.example:8080/flv?app=DemoApp&stream=r1_mix"},
		{b.PushURL("r1", time.Unix(0, 0)), "rtmp://127.0.0.1:1935/DemoApp/r1"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
}
