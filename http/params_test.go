package http

import (
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// Every parameter name a route reads is in knownParams, so an object or array sent under
// it is refused rather than silently treated as absent. The names are collected from the
// package's sources, the way a reviewer would grep them.
func TestKnownParamsCoverEveryRead(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	reads := regexp.MustCompile(`(?:p\.(?:get|first|require|maxLen)|nonNegative|memberType|param|hostOf)\(([^)]*)\)|p\["([^"]+)"\]`)
	literal := regexp.MustCompile(`"([A-Za-z]+)"`)
	seen := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range reads.FindAllStringSubmatch(string(src), -1) {
			for _, l := range literal.FindAllStringSubmatch(m[1]+` "`+m[2]+`"`, -1) {
				seen++
				if !knownParams[l[1]] {
					t.Errorf("%s reads parameter %q, which knownParams lacks", f, l[1])
				}
			}
		}
	}
	if seen < len(knownParams) {
		t.Fatalf("found only %d parameter reads for %d known names: the pattern no longer matches the code", seen, len(knownParams))
	}
}

func TestJSONNumberText(t *testing.T) {
	cases := map[string]string{
		// Integers without fraction or exponent: exactly as written.
		"4": "4", "0": "0", "-0": "-0", "230176387716088260": "230176387716088260",
		"123456789012345678901234567890": "123456789012345678901234567890",
		// Fractions and exponents: as JavaScript's String(Number(text)).
		"4.0": "4", "4e0": "4", "4E0": "4", "2.0": "2", "0.4e1": "4", "-1.0": "-1", "-0.0": "0",
		"1.5": "1.5", "12.5e-1": "1.25", "1E2": "100", "1e20": "100000000000000000000",
		"1e21": "1e+21", "1.5e21": "1.5e+21", "0.000001": "0.000001", "1e-7": "1e-7",
		"1.25e-7": "1.25e-7", "0.1": "0.1", "230176387716088260.0": "230176387716088260",
		"1e-400": "0",
		// Beyond float64: as written.
		"1e400": "1e400", "-1e400": "-1e400",
	}
	for in, want := range cases {
		if got := jsonNumberText(in); got != want {
			t.Errorf("jsonNumberText(%s) = %q, want %q", in, got, want)
		}
	}
	if got := jsNumberString(math.MaxFloat64); got != "1.7976931348623157e+308" {
		t.Errorf("max float64: %q", got)
	}
}

func TestLenientQuery(t *testing.T) {
	cases := []struct {
		raw  string
		want params
	}{
		{"a=1&b=x+y", params{"a": "1", "b": "x y"}},
		{"Message=100%25%20done", params{"Message": "100% done"}},
		// Invalid escapes stay as they are; no pair is dropped.
		{"Code=InternalError&Message=100%%20bad%20%zz%20value&x=%", params{"Code": "InternalError", "Message": "100% bad %zz value", "x": "%"}},
		{"m=%4", params{"m": "%4"}},
		{"m=%e4%bd%a0%E5%A5%BD", params{"m": "你好"}},
		// The first value of a repeated name counts; ';' is an ordinary character.
		{"a=1&a=2", params{"a": "1"}},
		{"a=1;b=2", params{"a": "1;b=2"}},
		{"&&flag&=v&k=", params{"flag": "", "k": ""}},
	}
	for _, c := range cases {
		got := params{}
		mergeForm(got, c.raw)
		if len(got) != len(c.want) {
			t.Errorf("%q: %v, want %v", c.raw, got, c.want)
			continue
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%q: %s = %q, want %q", c.raw, k, got[k], v)
			}
		}
	}
	// A form body overwrites the query, and within the body the first value counts.
	req := httptest.NewRequest("POST", "/x?a=q&b=q", strings.NewReader("a=f1&a=f2"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	p, err := decodeParams(req, 1024, true)
	if err != nil || p["a"] != "f1" || p["b"] != "q" {
		t.Fatalf("form over query: %v %v", p, err)
	}
}

func TestNonNegative(t *testing.T) {
	for in, want := range map[string]int{
		"": 0, "0": 0, "7": 7, " 3 ": 3,
		"99999999999999999999999": math.MaxInt, "9223372036854775808": math.MaxInt,
	} {
		if got, err := nonNegative(params{"limit": in}, "limit"); err != nil || got != want {
			t.Errorf("nonNegative(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "-99999999999999999999999", "1.5", "x", "1e3"} {
		if _, err := nonNegative(params{"limit": in}, "limit"); err == nil {
			t.Errorf("nonNegative(%q) accepted", in)
		}
	}
}

func TestCapMessage(t *testing.T) {
	short := strings.Repeat("房", maxMessageRunes)
	if capMessage(short) != short {
		t.Fatal("a message at the limit was shortened")
	}
	for _, long := range []string{strings.Repeat("x", 60000), strings.Repeat("房", 1000), "a" + strings.Repeat("间", 300)} {
		got := capMessage(long)
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) != maxMessageRunes ||
			!strings.HasSuffix(got, "…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
			t.Fatalf("capMessage(%d bytes) = %q", len(long), got)
		}
	}
}
