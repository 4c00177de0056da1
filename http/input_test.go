package http_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// rawDo sends one request and returns the status and the undecoded answer.
func (s *server) rawDo(t *testing.T, method, path, ctype, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw
}

// Old clients send fields the server does not use, objects and arrays among them; like the
// old Express server, the server ignores them. A field it reads must still be a value.
func TestUnusedFieldsAreIgnoredWhateverTheirType(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.do(t, "POST", "/login", "application/json", `{"name":"alice","profile":{"avatar":"x"},"password":null}`), nil)
	var room roomObject
	mustOK(t, s.do(t, "POST", "/live/create", "application/json",
		`{"uid":1,"device":{"os":"ios","v":[1,2]},"tags":["a",{"b":null}],"desc":"from ios"}`), &room)
	if room.UID != "1" || room.Description != "from ios" {
		t.Fatalf("room: %+v", room)
	}
	if r := s.do(t, "POST", "/live/create", "application/json", `{"uid":1,"desc":{"text":"x"}}`); r.Code != 400 ||
		r.Message != "desc类型错误: 不能是对象或数组" {
		t.Fatalf("object desc: %+v", r)
	}
}

// A JSON number written with a fraction or an exponent was a plain number to the old
// server's JavaScript: 2.0 is user 2, 1e0 is a limit of 1.
func TestFractionalJSONNumbersAreTheirJavaScriptValue(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	mustOK(t, s.post(t, "/login", "name", "bob"), nil)
	var a, b roomObject
	mustOK(t, s.do(t, "POST", "/live/create", "application/json", `{"uid":1.0}`), &a)
	mustOK(t, s.do(t, "POST", "/live/create", "application/json", `{"uid":2e0}`), &b)
	if a.UID != "1" || b.UID != "2" {
		t.Fatalf("rooms of uid 1.0 and 2e0: %q %q", a.UID, b.UID)
	}
	var play struct{ UID string }
	mustOK(t, s.do(t, "POST", "/live/play", "application/json", `{"roomId":"`+a.RoomID+`","uid":0.2E1}`), &play)
	if play.UID != "2" {
		t.Fatalf("play as uid 0.2E1: %q", play.UID)
	}
	var list []roomObject
	mustOK(t, s.do(t, "POST", "/live/list", "application/json", `{"roomId":-1.0,"limit":1.0,"offset":1e0}`), &list)
	if len(list) != 1 || list[0].RoomID != b.RoomID {
		t.Fatalf("list roomId -1.0 limit 1.0 offset 1e0: %+v", list)
	}
	mustOK(t, s.do(t, "POST", "/videocall/invite", "application/json",
		`{"inviterUid":1.0,"inviteeUid":2,"liveRoomId":"`+a.RoomID+`","inviterType":2.0}`), nil)
}

// Express's body parser skips a UTF-8 byte order mark before a body.
func TestByteOrderMarkBeforeABody(t *testing.T) {
	s := newServer(t, serverOpts{})
	var u struct{ Name string }
	mustOK(t, s.do(t, "POST", "/login", "application/json", "\ufeff{\"name\":\"bom\"}"), &u)
	if u.Name != "bom" {
		t.Fatalf("JSON with BOM: name %q", u.Name)
	}
	mustOK(t, s.do(t, "POST", "/login", "application/x-www-form-urlencoded", "\ufeffname=form"), &u)
	if u.Name != "form" {
		t.Fatalf("form with BOM: name %q", u.Name)
	}
}

// docs/api.md, Conventions: every route takes a JSON body, the GET ones too; the body wins over the query.
func TestGETRequestsReadTheirBody(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	mustOK(t, s.post(t, "/login", "name", "bob"), nil)
	var a, b roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &a)
	mustOK(t, s.post(t, "/live/create", "uid", "2"), &b)
	mustOK(t, s.post(t, "/live/play", "roomId", a.RoomID, "uid", 2), nil)
	var users []struct{ ID, Name string }
	mustOK(t, s.do(t, "GET", "/im/room/users?roomId=nosuchroom", "application/json", `{"roomId":"`+a.RoomID+`"}`), &users)
	if len(users) != 1 || users[0].ID != "2" {
		t.Fatalf("GET /im/room/users with a JSON body: %+v", users)
	}
	var list []roomObject
	mustOK(t, s.do(t, "GET", "/live/list", "application/x-www-form-urlencoded", "roomId=-1&limit=1&offset=1"), &list)
	if len(list) != 1 || list[0].RoomID != b.RoomID {
		t.Fatalf("GET /live/list with a form body: %+v", list)
	}
}

// An error message quotes the client's input, but never unboundedly.
func TestErrorMessagesAreCapped(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	huge := strings.Repeat("房", 20000) // 60,000 bytes
	status, raw := s.rawDo(t, "POST", "/live/play", "application/json", `{"uid":1,"roomId":"`+huge+`"}`)
	var r reply
	if err := json.Unmarshal(raw, &r); err != nil || status != 200 || r.Code != 2003 {
		t.Fatalf("play of a huge unknown room: HTTP %d %s", status, raw)
	}
	if n := utf8.RuneCountInString(r.Message); n > 200 || !strings.HasSuffix(r.Message, "…") ||
		!strings.Contains(r.Message, "房房房") || len(raw) > 1024 {
		t.Fatalf("message of %d runes, answer of %d bytes: %.80q", n, len(raw), r.Message)
	}
	if r := s.get(t, "/"+strings.Repeat("x", 5000)); r.Status != 404 || utf8.RuneCountInString(r.Message) > 200 {
		t.Fatalf("404 of a long path: HTTP %d, %d runes", r.Status, utf8.RuneCountInString(r.Message))
	}
}

// A limit too large for an int means all rooms; an offset that large is past the end.
func TestListLimitAndOffsetBeyondInt(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	mustOK(t, s.post(t, "/live/create", "uid", "1"), nil)
	mustOK(t, s.post(t, "/live/create", "uid", "1"), nil)
	var all, list []roomObject
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &all)
	mustOK(t, s.get(t, "/live/list?roomId=-1&limit=99999999999999999999999"), &list)
	if len(all) == 0 || len(list) != len(all) {
		t.Fatalf("huge limit listed %d of %d rooms", len(list), len(all))
	}
	mustOK(t, s.do(t, "POST", "/live/list", "application/json", `{"roomId":"-1","offset":99999999999999999999999}`), &list)
	if len(list) != 0 {
		t.Fatalf("huge offset listed %d rooms", len(list))
	}
}

// Node's JSON.stringify writes & < > as they are; so do the answers.
func TestAnswersDoNotEscapeHTMLCharacters(t *testing.T) {
	s := newServer(t, serverOpts{})
	_, raw := s.rawDo(t, "POST", "/login", "application/json", `{"name":"Tom & Jerry <3>"}`)
	if !strings.Contains(string(raw), `"name":"Tom & Jerry <3>"`) {
		t.Fatalf("login answer: %s", raw)
	}
	_, raw = s.rawDo(t, "POST", "/live/play", "application/json", `{"uid":1,"roomId":"a&b<c>"}`)
	if !strings.Contains(string(raw), "a&b<c>") {
		t.Fatalf("error answer: %s", raw)
	}
}

// Aliyun's callbacks are answered 200 also when they come as POST, with the parameters in
// the query or in a form body.
func TestCallbacksAcceptPOST(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)
	R := room.RoomID
	sub := s.subscribe(t, "topic="+R)
	mustOK(t, s.do(t, "POST", "/ali/stream/notify", "application/x-www-form-urlencoded", "action=publish&id="+R+"&app=DemoApp"), nil)
	checkFrame(t, sub.next(), 9, R, 5, map[string]any{"roomId": R})
	mustOK(t, s.do(t, "POST", "/ali/mix/availability/notify?Stream="+R+"_mix&Event=MixAvailable", "", ""), nil)
	var list []roomObject
	mustOK(t, s.get(t, "/live/list"), &list)
	if len(list) != 1 || list[0].Status != 1 || !list[0].IsMixReady {
		t.Fatalf("after POSTed publish and mix-available: %+v", list)
	}
	mustOK(t, s.do(t, "POST", "/ali/mix/status/notify", "application/x-www-form-urlencoded",
		"MainMixStream="+R+"&MixStream=other_mix&Event=MixResult&Code=Success&Message=100% done"), nil)
	checkFrame(t, sub.next(), 16, R, 5, map[string]any{"code": "Success", "message": "100% done"})
}

// Aliyun sends MixResult's Message unencoded: a '%' that starts no escape is kept, and the
// message is not lost.
func TestMixResultMessageWithLiteralPercent(t *testing.T) {
	s := newServer(t, serverOpts{})
	a, b := twoHosts(t, s)
	sub := s.subscribe(t, "topic="+a.RoomID)
	target := "/ali/mix/status/notify?MainMixStream=" + a.RoomID + "&MixStream=" + b.RoomID +
		"_mix&Event=MixResult&Code=InternalError&Message=100% bad %zz value"
	if code := rawGet(s.Addr, target); code != 200 {
		t.Fatalf("raw callback answered %d", code)
	}
	checkFrame(t, sub.next(), 16, a.RoomID, 5, map[string]any{"code": "InternalError", "message": "100% bad %zz value"})
}

// A client that sends less body than it announced is answered and cut off after the body
// read timeout, on an API route as on an unknown one; the connection is not held.
func TestSlowBodyIsTimedOut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := newServer(t, serverOpts{bodyReadTimeout: timeout})
	for _, c := range []struct {
		path         string
		status, code int
		msg          string
	}{
		{"/login", 200, 400, "读取请求体超时"},
		{"/nope", 404, 404, "Not Found"},
	} {
		conn, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":", c.path)
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: no answer: %v", c.path, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		elapsed := time.Since(start)
		var r reply
		_ = json.Unmarshal(body, &r)
		if res.StatusCode != c.status || r.Code != c.code || !strings.Contains(r.Message, c.msg) || !res.Close {
			t.Fatalf("%s: HTTP %d close=%v %s", c.path, res.StatusCode, res.Close, body)
		}
		if elapsed < timeout || elapsed > timeout+3*time.Second {
			t.Fatalf("%s: answered after %v, want about %v", c.path, elapsed, timeout)
		}
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: connection not closed after the answer: %v", c.path, err)
		}
	}
}

// The body deadline ends with the body: a keep-alive connection idle for longer, a slow
// handler and a WebSocket subscriber are not cut.
func TestBodyTimeoutSparesKeepAliveAndWebSockets(t *testing.T) {
	const timeout = 200 * time.Millisecond
	s := newServer(t, serverOpts{bodyReadTimeout: timeout})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)
	sub := s.subscribe(t, "topic="+room.RoomID)

	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for i := range 2 {
		body := fmt.Sprintf(`{"uid":1,"roomId":"%s","comment":"c%d"}`, room.RoomID, i)
		fmt.Fprintf(conn, "POST /live/comment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on the kept-alive connection: %v", i+1, err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || res.Close || !strings.Contains(string(raw), `"code":200`) {
			t.Fatalf("request %d: HTTP %d close=%v %s", i+1, res.StatusCode, res.Close, raw)
		}
		time.Sleep(3 * timeout) // idle well past the body timeout
	}
	for i := range 2 {
		checkFrame(t, sub.next(), 6, room.RoomID, 8, map[string]any{"comment": fmt.Sprint("c", i)})
	}
}
