package aliyun

import (
	"strings"
	"time"
)

// centerPushHost is Aliyun's centre push ingest; the play domain then travels as vhost.
const centerPushHost = "video-center.alivecdn.com"

// pushURLLifetime is how long a signed push URL stays valid. It is signed once when a room
// is created, so it must outlive any realistic broadcast.
const pushURLLifetime = 24 * time.Hour

// URLBuilder builds the stream URLs handed to clients (docs/api.md, The room object). It implements actors.URLs.
// The zero value is not useful: AppName, RtmpHost and PlayHost must be set.
type URLBuilder struct {
	AppName      string
	RtmpHost     string
	PlayHost     string
	TemplateName string // suffix of mixed streams, e.g. "_mix"
	AuthKey      string // URL auth type A key; empty means unsigned push URLs
	CenterPush   bool
	// TopicBase is the base URL of the topic service (the MNS endpoint); empty when the
	// push backend has no topic URL.
	TopicBase string
	// Play URL templates of a self-hosted media server (media.playUrl.*); empty keeps
	// Aliyun's scheme. {playHost}, {appName} and {stream} are replaced.
	FLVTemplate, HLSTemplate, RTMPTemplate string
}

// expand fills a play URL template.
func (b *URLBuilder) expand(template, stream string) string {
	return strings.NewReplacer("{playHost}", b.PlayHost, "{appName}", b.AppName, "{stream}", stream).Replace(template)
}

// PushURL is the RTMP push URL of a room, signed until now+24h when AuthKey is set.
func (b *URLBuilder) PushURL(roomID string, now time.Time) string {
	path := "/" + b.AppName + "/" + roomID
	var u string
	if b.CenterPush {
		u = "rtmp://" + centerPushHost + path + "?vhost=" + b.PlayHost
	} else {
		u = "rtmp://" + b.RtmpHost + path
	}
	if b.AuthKey == "" {
		return u
	}
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	// Aliyun signs the path only; vhost is not part of it.
	return u + sep + "auth_key=" + AuthKeyA(path, now.Add(pushURLLifetime).Unix(), b.AuthKey)
}

// PlayURLs are the play URLs of the room's mixed stream (FLV, HLS, RTMP).
func (b *URLBuilder) PlayURLs(roomID string) (flv, m3u8, rtmp string) {
	stream := b.AppName + "/" + roomID + b.TemplateName
	flv, m3u8, rtmp = "http://"+b.PlayHost+"/"+stream+".flv",
		"http://"+b.PlayHost+"/"+stream+".m3u8",
		"rtmp://"+b.PlayHost+"/"+stream
	if b.FLVTemplate != "" {
		flv = b.expand(b.FLVTemplate, roomID+b.TemplateName)
	}
	if b.HLSTemplate != "" {
		m3u8 = b.expand(b.HLSTemplate, roomID+b.TemplateName)
	}
	if b.RTMPTemplate != "" {
		rtmp = b.expand(b.RTMPTemplate, roomID+b.TemplateName)
	}
	return flv, m3u8, rtmp
}

// ShortDelayPlayURL is the unmixed FLV URL a co-streaming partner plays; ali_flv_retain=0
// turns off the CDN's GOP cache so the partner sees the other side with minimal delay. With
// an FLV template it is that template's URL of the room's own stream.
func (b *URLBuilder) ShortDelayPlayURL(roomID string) string {
	if b.FLVTemplate != "" {
		return b.expand(b.FLVTemplate, roomID)
	}
	return "http://" + b.PlayHost + "/" + b.AppName + "/" + roomID + ".flv?ali_flv_retain=0"
}

// MixPlayURL is the play URL of a stream name a mix Start returned (with an FLV template:
// that template's URL of the stream, a ".flv" suffix of the name dropped).
func (b *URLBuilder) MixPlayURL(streamName string) string {
	if b.FLVTemplate != "" {
		return b.expand(b.FLVTemplate, strings.TrimSuffix(streamName, ".flv"))
	}
	return "http://" + b.PlayHost + "/" + b.AppName + "/" + streamName
}

// TopicLocation is where clients find a room's topic, or "" without a TopicBase.
func (b *URLBuilder) TopicLocation(topic string) string {
	if b.TopicBase == "" {
		return ""
	}
	return strings.TrimSuffix(b.TopicBase, "/") + "/topics/" + topic
}

// MNSEndpoint is the MNS endpoint of an account: override when set, else
// http://{ownerID}.mns.{region}.aliyuncs.com, or "" when there is no account to address.
func MNSEndpoint(ownerID, region, override string) string {
	if override != "" {
		return strings.TrimSuffix(override, "/")
	}
	if ownerID == "" || region == "" {
		return ""
	}
	return "http://" + ownerID + ".mns." + region + ".aliyuncs.com"
}
