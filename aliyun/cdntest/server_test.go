package cdntest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The fake's own signer must pass Aliyun's published RPC vector, so that it is a
// trustworthy judge of the client's signer.
func TestSignaturePublishedVector(t *testing.T) {
	params := url.Values{
		"AccessKeyId":      {"testid"},
		"Action":           {"DescribeRegions"},
		"Format":           {"XML"},
		"SignatureMethod":  {"HMAC-SHA1"},
		"SignatureNonce":   {"3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"},
		"SignatureVersion": {"1.0"},
		"Timestamp":        {"2016-02-23T12:46:24Z"},
		"Version":          {"2014-05-26"},
		"Signature":        {"ignored"},
	}
	if got, want := Signature("GET", params, "testsecret"), "OLeaidS1JvxuMvnyHOwuJ+uX5qY="; got != want {
		t.Fatalf("Signature = %q, want %q", got, want)
	}
}

// signedQuery builds a valid request query for the fake, signed with its own signer.
func signedQuery(s *Server, action, nonce string, ts time.Time, drop string) string {
	p := url.Values{
		"Action": {action}, "Format": {"JSON"}, "Version": {"2014-11-11"}, "AccessKeyId": {s.AccessKeyID},
		"SignatureMethod": {"HMAC-SHA1"}, "SignatureVersion": {"1.0"}, "SignatureNonce": {nonce},
		"Timestamp":      {ts.UTC().Format("2006-01-02T15:04:05Z")},
		"MainDomainName": {"d"}, "MainAppName": {"a"}, "MainStreamName": {"m"},
		"MixDomainName": {"d"}, "MixAppName": {"a"}, "MixStreamName": {"x"},
		"MixTemplate": {"picture_in_picture"}, "MixType": {"channel"},
	}
	p.Del(drop)
	p.Set("Signature", Signature("GET", p, s.AccessKeySecret))
	return p.Encode()
}

func get(t *testing.T, s *Server, query string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(s.URL + "/?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func TestServerChecks(t *testing.T) {
	s := New("id", "secret")
	defer s.Close()
	now := time.Now()

	if status, body := get(t, s, signedQuery(s, ActionStart, "n1", now, "")); status != 200 {
		t.Fatalf("valid start: %d %v", status, body)
	} else if !strings.Contains(toJSON(body), `"StreamName":"m_x"`) {
		t.Fatalf("start answer %v", body)
	}
	for name, tc := range map[string]struct {
		query  string
		status int
		code   string
	}{
		"nonce reused":  {signedQuery(s, ActionStart, "n1", now, ""), 400, "SignatureNonceUsed"},
		"stale":         {signedQuery(s, ActionStart, "n2", now.Add(-16*time.Minute), ""), 400, "InvalidTimeStamp.Expired"},
		"future":        {signedQuery(s, ActionStart, "n3", now.Add(16*time.Minute), ""), 400, "InvalidTimeStamp.Expired"},
		"tampered":      {strings.Replace(signedQuery(s, ActionStart, "n4", now, ""), "MainStreamName=m", "MainStreamName=z", 1), 400, "SignatureDoesNotMatch"},
		"no template":   {signedQuery(s, ActionStart, "n5", now, "MixTemplate"), 400, "MissingParameter"},
		"no nonce":      {signedQuery(s, ActionStart, "", now, ""), 400, "MissingParameter"},
		"unknown":       {signedQuery(s, "DescribeRegions", "n6", now, ""), 404, "InvalidAction.NotFound"},
		"stop no extra": {signedQuery(s, ActionStop, "n7", now, "MixType"), 200, ""},
	} {
		status, body := get(t, s, tc.query)
		if status != tc.status || tc.code != "" && body["Code"] != tc.code {
			t.Errorf("%s: %d %v, want %d %s", name, status, body, tc.status, tc.code)
		}
	}
	if n := len(s.Calls()); n != 2 {
		t.Fatalf("%d calls recorded, want the 2 valid ones", n)
	}
	if s.Requests() != 9 {
		t.Fatalf("Requests() = %d, want 9", s.Requests())
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
