package main

import (
	"testing"

	"roomengine/config"
)

// topicLocation tells a client where the room's messages are: the MNS topic only when they
// are published to MNS, else this server's WebSocket gateway (even with an Aliyun account
// configured for other things).
func TestTopicLocationFollowsThePushBackends(t *testing.T) {
	account := []string{"APPSERVER_ALI_OWNERID=1252745454", "APPSERVER_ALI_MNSREGION=cn-qingdao",
		"APPSERVER_ALI_ACCESSKEYID=id", "APPSERVER_ALI_ACCESSKEYSECRET=secret", "APPSERVER_PORT=4555"}
	for _, c := range []struct{ push, want string }{
		{"websocket", "ws://localhost:4555/ws?topic=abc"},
		{"mns", "http://1252745454.mns.cn-qingdao.aliyuncs.com/topics/abc"},
		{"websocket,mns", "http://1252745454.mns.cn-qingdao.aliyuncs.com/topics/abc"},
	} {
		cfg, err := config.Load("", append(account, "APPSERVER_PUSH="+c.push))
		if err != nil {
			t.Fatal(err)
		}
		if got := newURLs(cfg).TopicLocation("abc"); got != c.want {
			t.Errorf("push %s: topicLocation %q, want %q", c.push, got, c.want)
		}
	}
}
