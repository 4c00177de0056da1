// Package http is the HTTP face of roomengine: the routes old clients speak, Aliyun's
// callbacks, the response envelope, and the operational endpoints.
package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// params are a request's parameters, merged from the query string and the body (the body
// wins). Old clients send numbers both as JSON numbers and as strings, so every value is
// kept as the text the client sent.
type params map[string]string

// errTooLarge marks a body over the configured limit.
var errTooLarge = errors.New("request body too large")

// badInput is a malformed request: answered with code 400 in the envelope, nothing changes.
type badInput struct{ msg string }

func (e *badInput) Error() string { return e.msg }

// decodeParams reads the query string and, for JSON and form bodies, the body. Bodies of
// other content types are ignored, as the old server did.
func decodeParams(r *http.Request, maxBody int64) (params, error) {
	p := params{}
	for k, v := range r.URL.Query() {
		if len(v) > 0 {
			p[k] = v[0]
		}
	}
	if r.Body == nil || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return p, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errTooLarge
		}
		return nil, &badInput{msg: "读取请求体失败"}
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return p, nil
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case mediaType == "application/json" || strings.HasSuffix(mediaType, "+json") ||
		(mediaType == "" && body[0] == '{'):
		if err := mergeJSON(p, body); err != nil {
			return nil, err
		}
	case mediaType == "application/x-www-form-urlencoded":
		values, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, &badInput{msg: "表单格式错误: " + err.Error()}
		}
		for k, v := range values {
			if len(v) > 0 {
				p[k] = v[0]
			}
		}
	}
	return p, nil
}

// mergeJSON decodes a JSON object body into p. Strings, numbers (kept as written, so a
// 18-digit room id loses nothing) and booleans are accepted; null means absent; objects and
// arrays are a type error naming the field. Values are decoded one by one from raw
// messages, which costs far less than a streaming decoder on these small bodies.
func mergeJSON(p params, body []byte) error {
	if !utf8.Valid(body) {
		return &badInput{msg: "请求体不是合法的UTF-8"}
	}
	if body[0] != '{' {
		return &badInput{msg: "请求体不是合法的JSON对象: 需要一个对象"}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return &badInput{msg: "请求体不是合法的JSON对象: " + jsonErrorText(err)}
	}
	for k, raw := range obj {
		switch raw[0] {
		case '"':
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return &badInput{msg: k + "不是合法的字符串"}
			}
			p[k] = v
		case 'n': // null
			delete(p, k)
		case 't', 'f':
			p[k] = string(raw)
		case '{', '[':
			return &badInput{msg: k + "类型错误: 需要字符串或数字"}
		default: // a number, kept exactly as written
			p[k] = string(raw)
		}
	}
	return nil
}

func jsonErrorText(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("语法错误 (offset %d)", syntax.Offset)
	case errors.As(err, &typ):
		return "需要一个对象"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "内容不完整"
	}
	return "无法解析"
}

// get returns a trimmed parameter ("" when absent).
func (p params) get(name string) string { return strings.TrimSpace(p[name]) }

// first returns the first present parameter of names (aliases), trimmed.
func (p params) first(names ...string) string {
	for _, n := range names {
		if v := p.get(n); v != "" {
			return v
		}
	}
	return ""
}

// require returns the named parameters or a 20001 error naming the first missing one.
func (p params) require(names ...string) ([]string, error) {
	out := make([]string, len(names))
	for i, n := range names {
		v := p.get(n)
		if v == "" {
			return nil, errMissing(n)
		}
		out[i] = v
	}
	return out, nil
}

// maxLen refuses a value longer than limit characters.
func (p params) maxLen(name string, limit int) error {
	if utf8.RuneCountInString(p[name]) > limit {
		return &badInput{msg: fmt.Sprintf("%s过长（最多%d个字符）", name, limit)}
	}
	return nil
}
