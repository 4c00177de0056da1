package http_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestControlCharactersInFreeTextAreRefused(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)

	for _, bad := range []string{"a\x00b", "a\rb", "a\x1b[31mred", "a\x7f", "a\u0085b", "\x01"} {
		r := s.post(t, "/login", "name", bad)
		assert.Equal(t, 400, r.Code, "name %q", bad)
		assert.Contains(t, r.Message, "name不能包含控制字符", "name %q", bad)
		r = s.post(t, "/live/comment", "uid", "1", "roomId", room.RoomID, "comment", bad)
		assert.Equal(t, 400, r.Code, "comment %q", bad)
		assert.Contains(t, r.Message, "comment不能包含控制字符")
		r = s.post(t, "/live/create", "uid", "1", "desc", bad)
		assert.Equal(t, 400, r.Code, "desc %q", bad)
	}
	// The same refusal whichever way the text arrives.
	r := s.do(t, "POST", "/login?name=a%00b", "", "")
	assert.Equal(t, 400, r.Code)
	r = s.do(t, "POST", "/login", "application/x-www-form-urlencoded", "name=a%00b")
	assert.Equal(t, 400, r.Code)
	r = s.do(t, "POST", "/login", "application/json", `{"name":"a\u0000b"}`)
	assert.Equal(t, 400, r.Code)
	assert.Contains(t, r.Message, "U+0000")

	// Tab and newline are text.
	mustOK(t, s.post(t, "/login", "name", "a\tb"), nil)
	mustOK(t, s.post(t, "/live/comment", "uid", "1", "roomId", room.RoomID, "comment", "line one\nline two\twith tab 中文"), nil)
}

func TestInvalidUTF8IsRefusedAlikeInJSONFormAndQuery(t *testing.T) {
	s := newServer(t, serverOpts{})
	cases := []struct{ name, target, ctype, body string }{
		{"json raw byte", "/login", "application/json", "{\"name\":\"a\xffb\"}"},
		{"json lone surrogate", "/login", "application/json", `{"name":"a\ud800b"}`},
		{"json key", "/login", "application/json", "{\"name\":\"a\",\"x\xff\":\"1\"}"},
		{"form", "/login", "application/x-www-form-urlencoded", "name=a%FFb"},
		{"form surrogate", "/login", "application/x-www-form-urlencoded", "name=a%ED%A0%80b"},
		{"query", "/login?name=a%FFb", "", ""},
		{"query key", "/login?name=a&x%FF=1", "", ""},
		{"query overlong", "/login?name=%C0%AF", "", ""},
	}
	for _, c := range cases {
		r := s.do(t, "POST", c.target, c.ctype, c.body)
		assert.Equal(t, 200, r.Status, c.name)
		assert.Equal(t, 400, r.Code, c.name)
		assert.Contains(t, r.Message, "UTF-8", c.name)
	}
	// A literal U+FFFD, spelled or escaped, is valid text.
	mustOK(t, s.do(t, "POST", "/login", "application/json", `{"name":"a\ufffdb \uFFFD �"}`), nil)
	mustOK(t, s.do(t, "POST", "/login?name="+url.QueryEscape("a\uFFFDb"), "", ""), nil)
	// Surrogate pairs are fine.
	mustOK(t, s.do(t, "POST", "/login", "application/json", `{"name":"\ud83d\ude00"}`), nil)
}

func TestCallbacksKeepWorkingWithInvalidUTF8(t *testing.T) {
	s := newServer(t, serverOpts{})
	r := s.do(t, "GET", "/ali/stream/notify?action=publish&id=nosuch%FF&usrargs=%FE", "", "")
	require.Equal(t, 200, r.Status)
	assert.Equal(t, 200, r.Code, r.Message)
	r = s.do(t, "POST", "/ali/mix/status/notify", "application/json",
		"{\"MainMixStream\":\"nosuch\",\"Code\":\"Success\",\"Message\":\"\xff "+strings.Repeat("x", 10)+"\"}")
	assert.Equal(t, 200, r.Code, r.Message)
}
