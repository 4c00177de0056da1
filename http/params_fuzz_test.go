package http

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

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
	}
	for _, s := range seeds {
		f.Add(s.ctype, s.query, s.body)
	}
	f.Fuzz(func(t *testing.T, ctype, query, body string) {
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(body))
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", ctype)
		p, err := decodeParams(req, 4096)
		if err != nil && strings.TrimSpace(strings.TrimPrefix(body, "\ufeff")) == "" {
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
			_ = k + v
		}
	})
}
