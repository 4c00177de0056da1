package http_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	apihttp "roomengine/http"
)

const testMNSSecret = "mns-Secret-4f1c9b"

type wsInfo struct {
	Authentication              string `json:"authentication"`
	Date                        string `json:"date"`
	TopicWebsocketServerIP      string `json:"topicWebsocketServerIp"`
	TopicWebsocketServerAddress string `json:"topicWebsocketServerAddress"`
	AccountID                   string `json:"accountId"`
	AccessID                    string `json:"accessId"`
	WebsocketURL                string `json:"websocketUrl"`
}

// wantWebsocketAuth recomputes the authentication from the formula of docs/api.md (MNS helper).
func wantWebsocketAuth(secret, date, version, topic, sub string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte("PUT\n\ntext/xml;charset=UTF-8\n" + date + "\nx-mns-auth-only:1\nx-mns-version:" + version +
		"\n/topics/" + topic + "/subscriptions/" + sub))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// postInfo posts body to /mns/topic/websocket/info with the given Host and headers and
// returns the raw answer and its decoded envelope.
func postInfo(t *testing.T, s *server, host, contentType, body string, header ...string) ([]byte, reply) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.URL+"/mns/topic/websocket/info", strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var r reply
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("not an envelope: %q", raw)
	}
	r.Status = res.StatusCode
	return raw, r
}

func TestMNSWebsocketInfo(t *testing.T) {
	fixed := time.Date(2015, 7, 9, 3, 1, 34, 0, time.UTC)
	logs := &syncBuffer{}
	s := newServer(t, serverOpts{
		now:    func() time.Time { return fixed },
		logOut: logs,
		mnsInfo: apihttp.MNSInfo{AccessKeyID: "AKID-1", AccessKeySecret: testMNSSecret, OwnerID: "1252745454",
			Region: "cn-hangzhou", Version: "2015-06-06", TopicWebsocketServerIP: "115.28.250.251"},
	})
	const date = "Thu, 09 Jul 2015 03:01:34 GMT"

	raw, r := postInfo(t, s, "api.example.com:8080", "application/json", `{"topic":"a1b2c3d4e5","subscriptionName":"sub-1"}`)
	var info wsInfo
	mustOK(t, r, &info)
	want := wsInfo{
		Authentication:              wantWebsocketAuth(testMNSSecret, date, "2015-06-06", "a1b2c3d4e5", "sub-1"),
		Date:                        date,
		TopicWebsocketServerIP:      "115.28.250.251",
		TopicWebsocketServerAddress: "ws://1252745454.mns-websocket.cn-hangzhou.aliyuncs.com/mns",
		AccountID:                   "1252745454",
		AccessID:                    "AKID-1",
		WebsocketURL:                "ws://api.example.com:8080/ws?topic=a1b2c3d4e5",
	}
	if info != want {
		t.Fatalf("info:\n got %+v\nwant %+v", info, want)
	}
	// Key order as the old server sent it.
	keys := []string{"authentication", "date", "topicWebsocketServerIp", "topicWebsocketServerAddress", "accountId", "accessId", "websocketUrl"}
	last := -1
	for _, k := range keys {
		i := bytes.Index(r.Data, []byte(`"`+k+`"`))
		if i <= last {
			t.Fatalf("key %s out of order in %s", k, r.Data)
		}
		last = i
	}
	if bytes.Contains(raw, []byte(testMNSSecret)) {
		t.Fatalf("the secret is in the answer: %s", raw)
	}

	// subscriptionName defaults to the topic; form bodies work as well; behind a TLS proxy
	// the gateway URL is wss.
	_, r = postInfo(t, s, "live.example.com", "application/x-www-form-urlencoded", "topic=room-9", "X-Forwarded-Proto", "https")
	mustOK(t, r, &info)
	if info.Authentication != wantWebsocketAuth(testMNSSecret, date, "2015-06-06", "room-9", "room-9") ||
		info.WebsocketURL != "wss://live.example.com/ws?topic=room-9" {
		t.Fatalf("default subscription / wss: %+v", info)
	}

	// A missing topic is 20001.
	for _, body := range []string{`{}`, `{"topic":""}`, `{"subscriptionName":"x"}`} {
		_, r = postInfo(t, s, "", "application/json", body)
		if r.Code != 20001 || r.Message != "topic不能为空" {
			t.Fatalf("%s: %+v", body, r)
		}
	}
	// Names MNS would not accept are not signed (a "/" or newline would choose what the
	// secret signs).
	for _, body := range []string{`{"topic":"a/subscriptions/b"}`, `{"topic":"a\nx-mns-version:1"}`, `{"topic":"ok","subscriptionName":"../x"}`} {
		_, r = postInfo(t, s, "", "application/json", body)
		if r.Code != 400 || len(r.Data) != 0 {
			t.Fatalf("%q: %+v", body, r)
		}
	}
	// GET is not the route.
	if r := s.get(t, "/mns/topic/websocket/info?topic=x"); r.Code != 405 {
		t.Fatalf("GET: %+v", r)
	}
	if strings.Contains(logs.String(), testMNSSecret) {
		t.Fatalf("the secret is in the log:\n%s", logs.String())
	}
}

// Without credentials (no secret, no owner or region) the route still answers, with an
// empty authentication and address, and the gateway URL new clients need.
func TestMNSWebsocketInfoWithoutCredentials(t *testing.T) {
	s := newServer(t, serverOpts{})
	before := time.Now().Add(-time.Second)
	_, r := postInfo(t, s, "127.0.0.1:4000", "application/json", `{"topic":"abc"}`)
	var info wsInfo
	mustOK(t, r, &info)
	if info.Authentication != "" || info.TopicWebsocketServerAddress != "" || info.AccountID != "" || info.AccessID != "" ||
		info.WebsocketURL != "ws://127.0.0.1:4000/ws?topic=abc" {
		t.Fatalf("info without credentials: %+v", info)
	}
	d, err := time.Parse(http.TimeFormat, info.Date)
	if err != nil || !strings.HasSuffix(info.Date, " GMT") || d.Before(before) || d.After(time.Now().Add(time.Second)) {
		t.Fatalf("date %q is not now in RFC 1123 GMT: %v", info.Date, err)
	}
}

// http.publicUrl wins over the Host header; a TLS request gets wss.
func TestMNSWebsocketInfoGatewayURL(t *testing.T) {
	for _, c := range []struct {
		publicURL, target string
		header            []string
		want              string
	}{
		{"https://live.example.com/", "http://ignored.example/mns/topic/websocket/info", nil, "wss://live.example.com/ws?topic=T1"},
		{"http://10.0.0.5:4000", "http://ignored.example/mns/topic/websocket/info", nil, "ws://10.0.0.5:4000/ws?topic=T1"},
		{"", "https://secure.example/mns/topic/websocket/info", nil, "wss://secure.example/ws?topic=T1"},
		{"", "http://plain.example:81/mns/topic/websocket/info", []string{"X-Forwarded-Proto", "http"}, "ws://plain.example:81/ws?topic=T1"},
		{"", "http://proxied.example/mns/topic/websocket/info", []string{"X-Forwarded-Proto", "HTTPS, http"}, "wss://proxied.example/ws?topic=T1"},
	} {
		h := apihttp.NewHandler(apihttp.Options{
			Gateway: http.NotFoundHandler(), Logger: slog.New(slog.DiscardHandler),
			MNSInfo: apihttp.MNSInfo{PublicURL: c.publicURL},
		})
		req := httptest.NewRequest("POST", c.target, strings.NewReader(`{"topic":"T1"}`))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(c.header); i += 2 {
			req.Header.Set(c.header[i], c.header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var env struct {
			Code int
			Data wsInfo
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Code != 200 || env.Data.WebsocketURL != c.want {
			t.Errorf("publicUrl %q, %s %v: %s, want websocketUrl %s", c.publicURL, c.target, c.header, rec.Body, c.want)
		}
	}
	// Without a gateway there is no URL to hand out.
	h := apihttp.NewHandler(apihttp.Options{Logger: slog.New(slog.DiscardHandler)})
	req := httptest.NewRequest("POST", "http://x.example/mns/topic/websocket/info?topic=T1", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `"websocketUrl":""`) {
		t.Errorf("without a gateway: %s", rec.Body)
	}
}

func TestMNSInfoRedactsTheSecret(t *testing.T) {
	m := apihttp.MNSInfo{AccessKeyID: "AKID", AccessKeySecret: testMNSSecret, OwnerID: "1"}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "mns", m)
	for _, s := range []string{fmt.Sprint(m), fmt.Sprintf("%+v", m), fmt.Sprintf("%v", &m), fmt.Sprintf("%#v", m), logs.String()} {
		if strings.Contains(s, testMNSSecret) || !strings.Contains(s, "AKID") {
			t.Errorf("not redacted: %s", s)
		}
	}
}
