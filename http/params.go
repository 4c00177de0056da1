// Package http is the HTTP face of roomengine: the routes old clients speak, Aliyun's
// callbacks, the response envelope, and the operational endpoints.
package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// params are a request's parameters, merged from the query string and the body (the body
// wins). Old clients send numbers both as JSON numbers and as strings, so every value is
// kept as text: what the client sent, or, for a JSON number written with a fraction or an
// exponent, the text JavaScript would have made of it.
type params map[string]string

// knownParams are the parameter names some route reads (every name passed to get, first,
// require, maxLen, p[...], nonNegative, memberType, layout, param and hostOf in this
// package; TestKnownParamsCoverEveryRead keeps the list complete). An object or an array
// under one of these names is a type error; under any other name it is ignored, as the old
// Express server ignored fields it did not use (old clients send e.g. "device": {...}).
var knownParams = map[string]bool{
	// users and rooms
	"name": true, "uid": true, "roomId": true, "desc": true, "comment": true,
	"offset": true, "limit": true, "key": true, "token": true,
	// co-streaming
	"inviterUid": true, "inviteeUid": true, "liveRoomId": true, "inviterType": true,
	"inviteeType": true, "type": true, "status": true,
	"closeRoomId": true, "closeRooomId": true, "notifiedRoomId": true,
	// MNS helper
	"topic": true, "subscriptionName": true,
	// Aliyun callbacks
	"id": true, "action": true, "Stream": true, "Event": true,
	"MainMixDomain": true, "MainMixApp": true, "MainMixStream": true,
	"MixDomain": true, "MixApp": true, "MixStream": true, "MixType": true, "MixTemplate": true,
	"Code": true, "Message": true,
}

// errTooLarge marks a body over the configured limit.
var errTooLarge = errors.New("request body too large")

// badInput is a malformed request: answered with code 400 in the envelope, nothing changes.
// bodyUnread marks a body that could not be read to its end (timeout, broken connection):
// the connection is closed after the answer, as what is left on it is not a request.
type badInput struct {
	msg        string
	bodyUnread bool
}

func (e *badInput) Error() string { return e.msg }

// utf8BOM is skipped at the start of a body, as Express's body-parser does.
var utf8BOM = []byte("\xef\xbb\xbf")

// decodeParams reads the query string and, for JSON and form bodies, the body, whatever the
// method but HEAD (docs/api.md, Conventions: every route accepts a JSON body, GET ones too). Bodies of other
// content types are ignored, as the old server did. Text that is not valid UTF-8 is treated
// alike in all three: with strict (API routes) it is refused with code 400, else (Aliyun's
// callbacks) each bad sequence becomes U+FFFD.
func decodeParams(r *http.Request, maxBody int64, strict bool) (params, error) {
	p, err := decodeRaw(r, maxBody, strict)
	if err != nil {
		return nil, err
	}
	if err := validUTF8(p, strict); err != nil {
		return nil, err
	}
	return p, nil
}

func decodeRaw(r *http.Request, maxBody int64, strict bool) (params, error) {
	p := params{}
	mergeForm(p, r.URL.RawQuery)
	if r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodHead {
		return p, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return nil, errTooLarge
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, &badInput{msg: "读取请求体超时", bodyUnread: true}
		}
		return nil, &badInput{msg: "读取请求体失败", bodyUnread: true}
	}
	body = bytes.TrimSpace(bytes.TrimPrefix(body, utf8BOM))
	if len(body) == 0 {
		return p, nil
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case mediaType == "application/json" || strings.HasSuffix(mediaType, "+json") ||
		(mediaType == "" && body[0] == '{'):
		if !strict {
			body = bytes.ToValidUTF8(body, []byte("\uFFFD"))
		}
		if err := mergeJSON(p, body, strict); err != nil {
			return nil, err
		}
	case mediaType == "application/x-www-form-urlencoded":
		mergeForm(p, string(body))
	}
	return p, nil
}

// mergeForm sets the pairs of a query string or form body in p, overwriting what p holds;
// of a name given twice, the first value counts. It is lenient where url.ParseQuery drops
// whole pairs: a '%' that does not start a valid escape is kept as it is (Aliyun's
// MixResult callback sends Message unencoded, e.g. "100% done"), and ';' is an ordinary
// character, as in Express's query parser.
func mergeForm(p params, raw string) {
	// Walking the pairs from the last one lets the first occurrence of a name win without
	// remembering which names this string has set.
	for raw != "" {
		pair := raw
		if i := strings.LastIndexByte(raw, '&'); i >= 0 {
			pair, raw = raw[i+1:], raw[:i]
		} else {
			raw = ""
		}
		k, v, _ := strings.Cut(pair, "=")
		if k = lenientUnescape(k); k != "" {
			p[k] = lenientUnescape(v)
		}
	}
}

// lenientUnescape decodes '+' as a space and each valid %XX escape; any other '%' stays.
func lenientUnescape(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// mergeJSON decodes a JSON object body into p. Strings, numbers and booleans (as their
// text) are accepted; null means absent. An object or array is a type error naming the
// field when a route reads that name (knownParams), and is ignored otherwise. Values are
// decoded one by one from raw messages, which costs far less than a streaming decoder on
// these small bodies.
func mergeJSON(p params, body []byte, strict bool) error {
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
				return &badInput{msg: capName(k) + "不是合法的字符串"}
			}
			if strict && replacedSurrogates(raw, v) {
				return &badInput{msg: "参数" + capName(k) + "不是合法的UTF-8文本"}
			}
			p[k] = v
		case 'n': // null
			delete(p, k)
		case 't', 'f':
			p[k] = string(raw)
		case '{', '[':
			if knownParams[k] {
				return &badInput{msg: k + "类型错误: 不能是对象或数组"}
			}
		default:
			p[k] = jsonNumberText(string(raw))
		}
	}
	return nil
}

// jsonNumberText is the text of a JSON number as the old server saw it. An integer written
// without fraction or exponent is kept exactly as written (an 18-digit room id loses
// nothing, where a JavaScript number would round it). One with a fraction or an exponent
// ("4.0", "4e0") becomes what JavaScript's String(Number(text)) gives ("4"), so it names
// the same id or type as in the old server; a value beyond float64 (1e400) stays as written.
func jsonNumberText(raw string) string {
	if strings.IndexAny(raw, ".eE") < 0 {
		return raw
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil || math.IsInf(f, 0) {
		return raw
	}
	return jsNumberString(f)
}

// jsNumberString formats a finite f like JavaScript's Number::toString (ECMA-262): the
// shortest digits that round-trip, as a plain integer or decimal for exponents in
// [-7, 21), else in exponent form ("1e+21", "1.5e-7").
func jsNumberString(f float64) string {
	if f == 0 {
		return "0" // also for -0
	}
	if f < 0 {
		return "-" + jsNumberString(-f)
	}
	mant, exp, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, 64), "e")
	digits := strings.Replace(mant, ".", "", 1)
	e, _ := strconv.Atoi(exp)
	k, n := len(digits), e+1 // f = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		return digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		return digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		return "0." + strings.Repeat("0", -n) + digits
	}
	sign := "+"
	if e < 0 {
		sign, e = "-", -e
	}
	if k == 1 {
		return digits + "e" + sign + strconv.Itoa(e)
	}
	return digits[:1] + "." + digits[1:] + "e" + sign + strconv.Itoa(e)
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
