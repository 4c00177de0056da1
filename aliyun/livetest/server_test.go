package livetest

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The fake's own signer against Aliyun's published V3 vector (OpenAPI util tests): method
// empty, path /, query empty= and test=ok, header x-acs-test: http,https.
func TestSignaturePublishedVector(t *testing.T) {
	got := Signature("", "/", url.Values{"empty": {""}, "test": {"ok"}}, map[string]string{"x-acs-test": "http,https"},
		"55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23", "secret")
	if want := "4ab59fffe3c5738ff8a2729f90cc04fe18b02a4b15b2102cbaf92f9ff3df2ea3"; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}

// A request that is not signed at all is refused before it can have any effect.
func TestRefusesUnsignedRequests(t *testing.T) {
	s := New("id", "secret")
	defer s.Close()
	for name, header := range map[string]http.Header{
		"no headers": {},
		"wrong credential": {"Authorization": {"ACS3-HMAC-SHA256 Credential=other,SignedHeaders=host,Signature=00"},
			"X-Acs-Action": {ActionCreate}, "X-Acs-Version": {"2016-11-01"}, "X-Acs-Date": {"2026-01-01T00:00:00Z"},
			"X-Acs-Signature-Nonce": {"n"}, "X-Acs-Content-Sha256": {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}},
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/?DomainName=x", strings.NewReader(""))
			for k, v := range header {
				req.Header[k] = v
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode < 400 || len(s.Calls()) != 0 || len(s.Mixes()) != 0 {
				t.Fatalf("status %d, calls %v", res.StatusCode, s.Calls())
			}
		})
	}
}
