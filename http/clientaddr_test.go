package http

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientAddrBehindTrustedProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	for name, tc := range map[string]struct {
		peer    string
		headers map[string][]string
		want    string
	}{
		"untrusted peer: headers ignored": {"203.0.113.9", map[string][]string{"X-Forwarded-For": {"1.1.1.1"}}, "203.0.113.9"},
		"trusted peer, one hop":           {"127.0.0.1", map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		"spoofed left-most entry":         {"127.0.0.1", map[string][]string{"X-Forwarded-For": {"1.2.3.4, 198.51.100.7"}}, "198.51.100.7"},
		"chain of trusted proxies":        {"10.0.0.2", map[string][]string{"X-Forwarded-For": {"198.51.100.7, 10.0.0.9", "10.1.2.3"}}, "198.51.100.7"},
		"all hops trusted":                {"10.0.0.2", map[string][]string{"X-Forwarded-For": {"10.0.0.5"}}, "10.0.0.5"},
		"no header":                       {"127.0.0.1", nil, "127.0.0.1"},
		"garbage right-most":              {"127.0.0.1", map[string][]string{"X-Forwarded-For": {"198.51.100.7, nonsense"}}, "127.0.0.1"},
		"Forwarded for=":                  {"127.0.0.1", map[string][]string{"Forwarded": {`for=1.2.3.4, for="[2001:db8::1]:443";proto=https`}}, "2001:db8::1"},
		"Forwarded with port":             {"127.0.0.1", map[string][]string{"Forwarded": {`for="198.51.100.7:5000"`}}, "198.51.100.7"},
		"X-Forwarded-For wins":            {"127.0.0.1", map[string][]string{"Forwarded": {"for=1.2.3.4"}, "X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
	} {
		h := http.Header{}
		for k, vs := range tc.headers {
			for _, v := range vs {
				h.Add(k, v)
			}
		}
		if got := clientAddrOf(trusted, netip.MustParseAddr(tc.peer), h); got.String() != tc.want {
			t.Errorf("%s: %s, want %s", name, got, tc.want)
		}
	}
}
