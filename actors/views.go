package actors

import (
	"bytes"
	"encoding/json"
	"time"
)

// The shapes below are what old clients parse: key names and order are kept from the old
// server (docs/api.md: the room object, push messages). Ids are strings, as the old server's
// documentation has them.

// MNSInfo tells a client where and how to subscribe to a room's messages.
type MNSInfo struct {
	Topic            string `json:"topic"`
	SubscriptionName string `json:"subscriptionName,omitempty"`
	TopicLocation    string `json:"topicLocation"`
	RoomTag          string `json:"roomTag"`
	UserRoomTag      string `json:"userRoomTag"`
}

// RoomView is the room object of /live/create and /live/list.
type RoomView struct {
	UID         string  `json:"uid"`
	Name        string  `json:"name"`
	RoomID      string  `json:"roomId"`
	RtmpURL     string  `json:"rtmpUrl"`
	PlayURL     string  `json:"playUrl"`
	M3U8PlayURL string  `json:"m3u8PlayUrl"`
	RtmpPlayURL string  `json:"rtmpPlayUrl"`
	Status      int     `json:"status"`
	Type        int     `json:"type"`
	IsMixReady  bool    `json:"isMixReady"`
	IsMixed     bool    `json:"isMixed"`
	MixedStatus int     `json:"mixedStatus"`
	MNS         MNSInfo `json:"mns"`
	Description string  `json:"description"`
	CreateTime  string  `json:"createTime"`
}

// CreateTimeLayout is the old server's local-time format.
const CreateTimeLayout = "2006-01-02 15:04:05"

// ViewOf renders a room for clients.
func ViewOf(r Room, urls URLs) RoomView {
	flv, m3u8, rtmp := urls.PlayURLs(r.ID)
	return RoomView{
		UID: r.UID, Name: r.Name, RoomID: r.ID,
		RtmpURL: r.PushURL, PlayURL: flv, M3U8PlayURL: m3u8, RtmpPlayURL: rtmp,
		Status: r.Status, Type: r.Type,
		IsMixReady: r.IsMixReady, IsMixed: r.IsMixed, MixedStatus: r.MixedStatus,
		MNS: MNSInfo{
			Topic: r.ID, SubscriptionName: r.ID, TopicLocation: urls.TopicLocation(r.ID),
			RoomTag: r.ID, UserRoomTag: r.UID,
		},
		Description: r.Description,
		CreateTime:  r.CreateTime.Local().Format(CreateTimeLayout),
	}
}

// PlayView is the answer of /live/play.
type PlayView struct {
	UID     string  `json:"uid"`
	Name    string  `json:"name"`
	RoomID  string  `json:"roomId"`
	PlayURL string  `json:"playUrl"`
	MNS     MNSInfo `json:"mns"`
}

// PlayViewOf renders the /live/play answer for a viewer of a room.
func PlayViewOf(r Room, viewer User, urls URLs) PlayView {
	flv, _, _ := urls.PlayURLs(r.ID)
	return PlayView{
		UID: viewer.ID, Name: viewer.Name, RoomID: r.ID, PlayURL: flv,
		MNS: MNSInfo{TopicLocation: urls.TopicLocation(r.ID), Topic: r.ID, RoomTag: r.ID, UserRoomTag: viewer.ID},
	}
}

// listed is the /live/list filter: a publishing host room whose mix stream is ready.
func listed(r Room) bool {
	return r.Status == StatusPublishing && r.Type == TypeHost && r.IsMixReady
}

// Push payloads (the "data" of each message type).
type (
	commentData struct {
		UID     string `json:"uid"`
		Name    string `json:"name"`
		Comment string `json:"comment"`
	}
	likeData struct {
		UID  string `json:"uid"`
		Name string `json:"name"`
	}
	streamData struct {
		UID    string `json:"uid"`
		Name   string `json:"name"`
		RoomID string `json:"roomId"`
	}
	roomEndedData struct {
		RoomID string `json:"roomId"`
	}
)

type pushBody struct {
	Data any   `json:"data"`
	Type int   `json:"type"`
	Time int64 `json:"time"`
}

// MarshalJSON encodes v as Node's JSON.stringify does, without escaping &, < and > (a URL
// with auth_key keeps its "&"; old clients may compare URLs byte for byte).
func MarshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// EncodePush builds the message every backend delivers: {"data", "type", "time"}.
func EncodePush(topic, tag string, importance, typ int, data any, now time.Time) Push {
	body, err := MarshalJSON(pushBody{Data: data, Type: typ, Time: now.UnixMilli()})
	if err != nil {
		// Payloads are plain structs of strings and numbers; this cannot fail.
		panic("actors: encode push: " + err.Error())
	}
	return Push{Topic: topic, Tag: tag, Importance: importance, Type: typ, Body: body}
}
