package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	"roomengine/actors"
)

const successMessage = "成功"

// envelope is the body of every API answer. Old clients read code, never the HTTP status.
type envelope struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func errMissing(name string) *actors.Error {
	return actors.Errorf(actors.CodeMissingParam, "%s不能为空", name)
}

// codeRecorder carries the envelope code from a handler to the metrics middleware.
type codeRecorder interface{ setCode(int) }

// maxMessageRunes caps an envelope's message: error messages quote client input (an unknown
// room id, a path), which must not make an answer as large as the request.
const maxMessageRunes = 200

// capMessage shortens msg to maxMessageRunes runes, the last one an ellipsis.
func capMessage(msg string) string {
	if len(msg) <= maxMessageRunes || utf8.RuneCountInString(msg) <= maxMessageRunes {
		return msg
	}
	n := 0
	for i := range msg {
		if n == maxMessageRunes-1 {
			return msg[:i] + "…"
		}
		n++
	}
	return msg
}

// envelopeEncoder is a pooled buffer and the encoder writing into it. HTML escaping is off:
// Node's JSON.stringify writes '&', '<' and '>' as they are (an rtmpUrl's "&auth_key=").
type envelopeEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var envelopeEncoders = sync.Pool{New: func() any {
	e := &envelopeEncoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

// writeEnvelope answers with env, its message capped at maxMessageRunes.
func writeEnvelope(w http.ResponseWriter, status int, env envelope) {
	env.Message = capMessage(env.Message)
	e := envelopeEncoders.Get().(*envelopeEncoder)
	e.buf.Reset()
	var body []byte
	if err := e.enc.Encode(env); err != nil {
		status, body = http.StatusOK, []byte(`{"code":500,"message":"系统异常"}`)
		env.Code = actors.CodeInternal
	} else {
		body = bytes.TrimSuffix(e.buf.Bytes(), []byte("\n")) // Encode ends with a newline
	}
	writeBody(w, status, env.Code, body)
	if e.buf.Cap() <= 64<<10 { // a rare huge answer does not pin its buffer in the pool
		envelopeEncoders.Put(e)
	}
}

// jsonContentType is shared by every answer; assigning it directly skips the key
// canonicalisation and the slice Header.Set allocates each time.
var jsonContentType = []string{"application/json; charset=utf-8"}

func writeBody(w http.ResponseWriter, status, code int, body []byte) {
	if rec, ok := w.(codeRecorder); ok {
		rec.setCode(code)
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// okBody is the answer of every success without data (comments, likes, callbacks...).
var okBody = []byte(`{"code":200,"message":"` + successMessage + `"}`)

// writeOK answers success, with data when it is not nil.
func writeOK(w http.ResponseWriter, data any) {
	if data == nil {
		writeBody(w, http.StatusOK, actors.CodeOK, okBody)
		return
	}
	writeEnvelope(w, http.StatusOK, envelope{Code: actors.CodeOK, Message: successMessage, Data: data})
}

var (
	rawPrefix = []byte(`{"code":200,"message":"` + successMessage + `","data":`)
	rawSuffix = []byte(`}`)
)

// writeRawData answers success with data that is already JSON (the pre-rendered room
// list, shared between requests): written in three parts, never copied into one body.
func writeRawData(w http.ResponseWriter, data []byte) {
	if rec, ok := w.(codeRecorder); ok {
		rec.setCode(actors.CodeOK)
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(rawPrefix) + len(data) + len(rawSuffix))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rawPrefix)
	_, _ = w.Write(data)
	_, _ = w.Write(rawSuffix)
}

// errorCode is the envelope code writeError answers err with.
func errorCode(err error) int {
	var domain *actors.Error
	if errors.As(err, &domain) {
		return domain.Code
	}
	var bad *badInput
	switch {
	case errors.As(err, &bad):
		return 400
	case errors.Is(err, errTooLarge):
		return actors.CodeTooLarge
	}
	return actors.CodeInternal
}

// writeError maps an error to the envelope. Domain errors keep their code; malformed input
// is 400; a body over the limit is 413 (also as HTTP status, docs/api.md Error codes); 401/403 set the HTTP
// status too. Anything else is a 500 whose details stay in the log.
func writeError(w http.ResponseWriter, err error) {
	var domain *actors.Error
	var bad *badInput
	switch {
	case errors.As(err, &domain):
		status := http.StatusOK
		if domain.Code == actors.CodeUnauthorized || domain.Code == actors.CodeForbidden {
			status = domain.Code
		}
		writeEnvelope(w, status, envelope{Code: domain.Code, Message: domain.Message})
	case errors.As(err, &bad):
		writeEnvelope(w, http.StatusOK, envelope{Code: 400, Message: bad.msg})
	case errors.Is(err, errTooLarge):
		writeEnvelope(w, http.StatusRequestEntityTooLarge, envelope{Code: actors.CodeTooLarge, Message: "请求体过大"})
	default:
		writeEnvelope(w, http.StatusOK, envelope{Code: actors.CodeInternal, Message: "系统异常"})
	}
}
