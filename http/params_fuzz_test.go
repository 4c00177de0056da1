package http

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// adversarialInputs are bodies and queries of about n bytes built to stress the decoder.
func adversarialInputs(n int) []struct{ ctype, query, body string } {
	return []struct{ ctype, query, body string }{
		{"application/json", "", `{"a":` + strings.Repeat("[", n/2) + strings.Repeat("]", n/2) + `}`},
		{"application/json", "", `{"a":` + strings.Repeat(`{"b":`, n/6) + "1" + strings.Repeat("}", n/6) + `}`},
		{"application/json", "", "{" + strings.Repeat(`"k":"v",`, n/8) + `"k":"v"}`},
		{"application/json", "", `{"uid":0.` + strings.Repeat("1", n) + `e-5}`},
		{"application/json", "", `{"name":"` + strings.Repeat(`\u00e9`, n/6) + `"}`},
		{"application/x-www-form-urlencoded", "", strings.Repeat("a=%41&", n/6)},
		{"", strings.Repeat("&", n), ""},
		{"", strings.Repeat("%", n), ""},
		{"", strings.Repeat("a=b&", n/4), ""},
		{"a/b" + strings.Repeat(";a=b", n/4), "", `{"a":1}`},
	}
}

// FuzzDecodeParams feeds arbitrary bodies, content types and query strings to the request
// decoder: it must never panic, and it either returns parameters or one of its own errors.
func FuzzDecodeParams(f *testing.F) {
	seeds := []struct{ ctype, query, body string }{
		{"application/json", "", `{"name":"alice"}`},
		{"application/json", "roomId=1", `{"roomId":230176387716088260,"status":"1"}`},
		{"application/json", "", `{"name":{"x":1}}`},
		{"application/json", "", `{not json`},
		{"application/json", "", `["a"]`},
		{"application/json; charset=utf-8", "", `{"a":null,"b":true,"c":1e400}`},
		{"application/x-www-form-urlencoded", "", "name=dave&uid=%zz"},
		{"text/plain", "name=q", "whatever"},
		{"", "", `{"uid":"1"}`},
		{"multipart/form-data; boundary=x", "", "--x--"},
		{"application/json", "", "\ufeff{\"uid\":4.0,\"device\":{\"os\":\"ios\"},\"t\":[1e400,-0.5e-7]}"},
		{"", "Message=100% bad %zz value&a=1;b=2&a=3", ""},
		// Text the decoder must refuse or mend alike in every encoding.
		{"application/json", "", `{"name":"a\ud800b","comment":"\u0000"}`},
		{"application/json", "", "{\"name\":\"a\xffb\"}"},
		{"application/x-www-form-urlencoded", "x%ff=1", "name=a%ED%A0%80b&c=%C0%AF"},
	}
	// The shapes that could make a decoder superlinear, at the size of a real body: deep
	// nesting, many pairs, many escapes, long numbers (see TestDecodeParamsIsLinear).
	for _, s := range adversarialInputs(2048) {
		seeds = append(seeds, s)
	}
	for _, s := range seeds {
		f.Add(s.ctype, s.query, s.body)
	}
	f.Fuzz(func(t *testing.T, ctype, query, body string) {
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(body))
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", ctype)
		strict := len(query)%2 == 0 // both modes: API routes and Aliyun's callbacks
		p, err := decodeParams(req, 4096, strict)
		if err != nil && strings.TrimSpace(strings.TrimPrefix(body, "\ufeff")) == "" &&
			!(strict && strings.Contains(err.Error(), "UTF-8")) {
			t.Fatalf("a request without a body was refused: %v", err) // queries are parsed leniently
		}
		if err != nil {
			var bad *badInput
			if !errors.As(err, &bad) && !errors.Is(err, errTooLarge) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if p != nil {
				t.Fatal("parameters returned together with an error")
			}
			return
		}
		if len(body) > 4096 {
			t.Fatal("a body over the limit was accepted")
		}
		for k, v := range p {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				t.Fatalf("parameter %q=%q is not valid UTF-8", k, v)
			}
		}
	})
}
