package http

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"roomengine/aliyun"
)

// MNSInfo is what POST /mns/topic/websocket/info needs to know about the Aliyun account
// (config ali.* and http.publicUrl). AccessKeySecret only signs; it is never answered or
// logged (MNSInfo's String and LogValue redact it).
type MNSInfo struct {
	AccessKeyID     string
	AccessKeySecret string
	OwnerID         string
	// Region is the MNS region (ali.mnsRegion, or the old server's ali.region).
	Region string
	// Version is x-mns-version (ali.mnsVersion, default 2015-06-06).
	Version                string
	TopicWebsocketServerIP string
	// PublicURL is this server's external base URL (http.publicUrl); empty: derived from
	// each request's Host and scheme.
	PublicURL string
}

// String shows the settings with the secret redacted.
func (m MNSInfo) String() string {
	return "{AccessKeyID:" + m.AccessKeyID + " AccessKeySecret:" + redacted(m.AccessKeySecret) +
		" OwnerID:" + m.OwnerID + " Region:" + m.Region + " Version:" + m.Version +
		" TopicWebsocketServerIP:" + m.TopicWebsocketServerIP + " PublicURL:" + m.PublicURL + "}"
}

// GoString is String for %#v.
func (m MNSInfo) GoString() string { return "http.MNSInfo" + m.String() }

// LogValue logs the settings with the secret redacted.
func (m MNSInfo) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("accessKeyID", m.AccessKeyID), slog.String("accessKeySecret", redacted(m.AccessKeySecret)),
		slog.String("ownerId", m.OwnerID), slog.String("region", m.Region), slog.String("version", m.Version),
		slog.String("topicWebsocketServerIp", m.TopicWebsocketServerIP), slog.String("publicUrl", m.PublicURL))
}

func redacted(secret string) string {
	if secret == "" {
		return ""
	}
	return "[redacted]"
}

// mnsWebsocketInfo is the answer of /mns/topic/websocket/info (docs/api.md); key order as the
// old server sent it.
type mnsWebsocketInfo struct {
	Authentication              string `json:"authentication"`
	Date                        string `json:"date"`
	TopicWebsocketServerIP      string `json:"topicWebsocketServerIp"`
	TopicWebsocketServerAddress string `json:"topicWebsocketServerAddress"`
	AccountID                   string `json:"accountId"`
	AccessID                    string `json:"accessId"`
	WebsocketURL                string `json:"websocketUrl"`
}

// mnsTopicWebsocketInfo answers what a client needs to subscribe to topic: over MNS's own
// WebSocket server (authentication signed over the returned date, for old clients), and over
// this server's gateway (websocketUrl, for new ones).
//
// Without an access key secret, authentication is "" (nothing can be signed); without an
// owner id or region, topicWebsocketServerAddress is "" (the old server printed "undefined").
// websocketUrl is "" only when this server has no gateway.
func (h *Handler) mnsTopicWebsocketInfo(_ context.Context, p params, r *http.Request) (any, error) {
	v, err := p.require("topic")
	if err != nil {
		return nil, err
	}
	topic := v[0]
	sub := p.get("subscriptionName")
	if sub == "" {
		sub = topic
	}
	// Only MNS names (letters, digits, hyphens) are signed: anything else would not name a
	// topic MNS accepts, and a "/" or a newline would let a caller choose what the secret
	// signs.
	if !validMNSName(topic) {
		return nil, &badInput{msg: "topic格式错误（只允许字母、数字和-，最长256）"}
	}
	if !validMNSName(sub) {
		return nil, &badInput{msg: "subscriptionName格式错误（只允许字母、数字和-，最长256）"}
	}
	m := h.opts.MNSInfo
	date := h.opts.Now().UTC().Format(http.TimeFormat)
	info := mnsWebsocketInfo{
		Date:                   date,
		TopicWebsocketServerIP: m.TopicWebsocketServerIP,
		AccountID:              m.OwnerID,
		AccessID:               m.AccessKeyID,
	}
	if m.AccessKeySecret != "" {
		info.Authentication = aliyun.WebsocketAuth(m.AccessKeySecret, date, m.Version, topic, sub)
	}
	if m.OwnerID != "" && m.Region != "" {
		info.TopicWebsocketServerAddress = "ws://" + m.OwnerID + ".mns-websocket." + m.Region + ".aliyuncs.com/mns"
	}
	if h.opts.Gateway != nil {
		info.WebsocketURL = gatewayBase(r, m.PublicURL) + "/ws?topic=" + url.QueryEscape(topic)
	}
	return info, nil
}

// gatewayBase is the ws:// or wss:// base URL of this server: publicURL when configured
// (http→ws, https→wss), else the request's Host, with wss when the request came over TLS or
// through a proxy that says so (X-Forwarded-Proto: https).
func gatewayBase(r *http.Request, publicURL string) string {
	if publicURL != "" {
		base := strings.TrimSuffix(publicURL, "/")
		switch {
		case strings.HasPrefix(base, "https://"):
			return "wss://" + strings.TrimPrefix(base, "https://")
		case strings.HasPrefix(base, "http://"):
			return "ws://" + strings.TrimPrefix(base, "http://")
		}
		return base
	}
	scheme := "ws"
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	if r.TLS != nil || strings.EqualFold(strings.TrimSpace(proto), "https") {
		scheme = "wss"
	}
	return scheme + "://" + r.Host
}

// validMNSName: letters, digits and hyphens, not starting with a hyphen, at most 256.
func validMNSName(n string) bool {
	if n == "" || len(n) > 256 || n[0] == '-' {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
