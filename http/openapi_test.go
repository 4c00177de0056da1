package http_test

import (
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roomengine/docs"
	"roomengine/http/apitest"
)

// apiCheck validates every answer of the test servers (newServer watches each) against
// docs/openapi.yaml: http.DefaultClient and every client without a transport of its own go
// through it.
var apiCheck = apitest.Install()

func TestMain(m *testing.M) {
	code := m.Run()
	if !apitest.Report(os.Stderr) && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// GET /openapi.json serves docs/openapi.yaml, as JSON, and it is a valid OpenAPI 3.0
// document for kin-openapi.
func TestOpenAPIDocumentIsServed(t *testing.T) {
	s := newServer(t, serverOpts{})
	res, err := http.Get(s.URL + "/openapi.json")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, 200, res.StatusCode)
	assert.Equal(t, "application/json; charset=utf-8", res.Header.Get("Content-Type"))
	var served map[string]any
	require.NoError(t, json.NewDecoder(res.Body).Decode(&served))
	assert.Equal(t, "3.0.3", served["openapi"])

	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPIYAML)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(t.Context()))
	for path := range doc.Paths.Map() {
		assert.Contains(t, served["paths"], path)
	}
}

// The validator is not a rubber stamp: answers of the wrong shape are refused, each with a
// message naming what is wrong.
func TestOpenAPIValidationRefusesWrongAnswers(t *testing.T) {
	v, err := apitest.Load()
	require.NoError(t, err)
	jsonHeader := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	room := `{"uid":"1","name":"alice","roomId":"0123456789","rtmpUrl":"rtmp://p/A/0123456789","playUrl":"x","m3u8PlayUrl":"x",` +
		`"rtmpPlayUrl":"x","status":0,"type":2,"isMixReady":false,"isMixed":false,"mixedStatus":0,` +
		`"mns":{"topic":"0123456789","subscriptionName":"0123456789","topicLocation":"ws://h/ws?topic=0123456789","roomTag":"0123456789","userRoomTag":"1"},` +
		`"description":"alice的直播","createTime":"2024-01-02 03:04:05"}`
	good := []struct{ method, target, body string }{
		{"POST", "/login", `{"code":200,"message":"成功","data":{"id":"1","name":"alice","token":"t"}}`},
		{"POST", "/login", `{"code":20001,"message":"name不能为空"}`},
		{"POST", "/live/create", `{"code":200,"message":"成功","data":` + room + `}`},
		{"GET", "/live/list?roomId=-1", `{"code":200,"message":"成功","data":[` + room + `]}`},
		{"POST", "/live/comment", `{"code":200,"message":"成功"}`},
	}
	for _, c := range good {
		assert.NoError(t, v.Check(c.method, c.target, 200, jsonHeader, []byte(c.body)), c.body)
	}
	wrong := map[string]struct{ method, target, body string }{
		"id as a number":          {"POST", "/login", `{"code":200,"message":"成功","data":{"id":1,"name":"alice"}}`},
		"a field missing":         {"POST", "/login", `{"code":200,"message":"成功","data":{"name":"alice"}}`},
		"a field not documented":  {"POST", "/live/create", `{"code":200,"message":"成功","data":` + room[:len(room)-1] + `,"extra":1}}`},
		"a code the route lacks":  {"POST", "/login", `{"code":2003,"message":"直播间不存在"}`},
		"data on a failure":       {"POST", "/live/play", `{"code":2003,"message":"x","data":{}}`},
		"data where none is":      {"POST", "/live/comment", `{"code":200,"message":"成功","data":{"uid":"1"}}`},
		"status out of its range": {"POST", "/live/create", `{"code":200,"message":"成功","data":` + room[:len(room)-1] + `}`},
	}
	wrong["status out of its range"] = struct{ method, target, body string }{"GET", "/live/list", `{"code":200,"message":"成功","data":[` +
		`{"uid":"1"}]}`}
	for name, c := range wrong {
		assert.Error(t, v.Check(c.method, c.target, 200, jsonHeader, []byte(c.body)), name)
	}
	assert.Error(t, v.Check("POST", "/login", 500, jsonHeader, []byte(`{"code":500,"message":"x"}`)), "an HTTP status not documented")
	assert.Error(t, v.Check("GET", "/no/such/route", 200, jsonHeader, []byte(`{"code":200,"message":"成功"}`)), "a route not documented")
	assert.NoError(t, v.Check("GET", "/no/such/route", 404, jsonHeader, []byte(`{"code":404,"message":"Not Found: /no/such/route"}`)))
	assert.Error(t, v.Check("POST", "/login", 200, http.Header{"Content-Type": {"text/html"}}, []byte(`<p>hi</p>`)), "not JSON")

	// Push frames: the frame and the data of its type.
	frame := func(typ int, data string) []byte {
		return []byte(`{"topic":"r","seq":1733300000000001,"tag":"r","importance":8,"message":{"data":` + data +
			`,"type":` + strconv.Itoa(typ) + `,"time":1733300000000}}`)
	}
	assert.NoError(t, v.CheckFrame(frame(6, `{"uid":"2","name":"carol","comment":"hi"}`)))
	assert.NoError(t, v.CheckFrame(frame(3, `{"inviteeUid":"3","inviteeName":"bob","status":2,"code":503,"message":"x"}`)))
	assert.Error(t, v.CheckFrame(frame(6, `{"uid":"2","name":"carol","comment":"hi","extra":1}`)), "a field not documented")
	assert.Error(t, v.CheckFrame(frame(9, `{"uid":"2","name":"carol"}`)), "a field missing")
	assert.Error(t, v.CheckFrame(frame(11, `{}`)), "a push type not documented")
	assert.Error(t, v.CheckFrame([]byte(`{"topic":"r","seq":"1","tag":"r","importance":8,"message":{"data":{},"type":8,"time":1}}`)), "seq as a string")
}
