package aliyun

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"testing"
	"time"
)

func TestPercentEncode(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "",
		"AZaz09-_.~":       "AZaz09-_.~",
		"a b":              "a%20b",
		"*":                "%2A",
		"/":                "%2F",
		"+":                "%2B",
		"a=b&c":            "a%3Db%26c",
		"2016-02-23T12:46": "2016-02-23T12%3A46",
		"é":                "%C3%A9",
		"%":                "%25",
	} {
		if got := PercentEncode(in); got != want {
			t.Errorf("PercentEncode(%q) = %q, want %q", in, got, want)
		}
	}
}

// Published vector from Aliyun's RPC signature documentation.
func TestSignRPCPublishedVector(t *testing.T) {
	params := map[string]string{
		"AccessKeyId":      "testid",
		"Action":           "DescribeRegions",
		"Format":           "XML",
		"SignatureMethod":  "HMAC-SHA1",
		"SignatureNonce":   "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
		"SignatureVersion": "1.0",
		"Timestamp":        "2016-02-23T12:46:24Z",
		"Version":          "2014-05-26",
	}
	const want = "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
	if got := SignRPC("GET", params, "testsecret"); got != want {
		t.Fatalf("SignRPC = %q, want %q", got, want)
	}
	// A Signature already in the map must not change the result.
	params["Signature"] = "stale"
	if got := SignRPC("GET", params, "testsecret"); got != want {
		t.Fatalf("SignRPC with Signature param = %q, want %q", got, want)
	}
}

func TestCanonicalQuerySorted(t *testing.T) {
	got := CanonicalQuery(map[string]string{"b": "x y", "a": "*", "Signature": "s"})
	if want := "a=%2A&b=x%20y"; got != want {
		t.Fatalf("CanonicalQuery = %q, want %q", got, want)
	}
}

// Published vector of CDN URL authentication type A (Aliyun's documentation).
func TestAuthKeyAPublishedVector(t *testing.T) {
	sum := md5.Sum([]byte("/video/standard/test.mp4-1444435200-0-0-aliyuncdnexp1234"))
	if got := hex.EncodeToString(sum[:]); got != "23bf85053008f5c0e791667a313e28ce" {
		t.Fatalf("vector md5 = %s", got)
	}
	got := AuthKeyA("/video/standard/test.mp4", 1444435200, "aliyuncdnexp1234")
	if want := "1444435200-0-0-23bf85053008f5c0e791667a313e28ce"; got != want {
		t.Fatalf("AuthKeyA = %q, want %q", got, want)
	}
}

// Published vector from the MNS signature documentation.
func TestSignMNSPublishedVector(t *testing.T) {
	sts := "GET\n\n\nThu, 09 Jul 2015 03:01:34 GMT\nx-mns-version:2015-06-06\n/MyQueue"
	if got, want := SignMNS(sts, "TestAccessSecret"), "uwx3yeWoILzgmvesW0BQSgfM7b8="; got != want {
		t.Fatalf("SignMNS = %q, want %q", got, want)
	}
}

func TestWebsocketAuth(t *testing.T) {
	const (
		secret = "TestAccessSecret"
		date   = "Thu, 09 Jul 2015 03:01:34 GMT"
	)
	// Recomputed here from the formula of docs/api.md (MNS helper) without the package's helpers.
	sts := "PUT\n\ntext/xml;charset=UTF-8\n" + date + "\nx-mns-auth-only:1\nx-mns-version:2015-06-06\n/topics/abc123/subscriptions/sub1"
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(sts))
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	if got := WebsocketAuth(secret, date, "2015-06-06", "abc123", "sub1"); got != want {
		t.Fatalf("WebsocketAuth = %q, want %q", got, want)
	}
	if WebsocketAuth(secret, date, "2015-06-06", "abc123", "sub2") == want {
		t.Fatal("subscription name is not covered by the signature")
	}
}

// A push URL's own auth_key passes; a wrong path, key or digit, a malformed or missing value
// and an expired one are refused, each for its reason.
func TestCheckAuthKeyA(t *testing.T) {
	now := time.Unix(1444435200, 0)
	good := AuthKeyA("/app/room1", now.Add(time.Hour).Unix(), "k")
	for name, tc := range map[string]struct {
		path, value, key string
		at               time.Time
		want             error
	}{
		"valid":              {"/app/room1", good, "k", now, nil},
		"the published test": {"/video/standard/test.mp4", "1444435200-0-0-23bf85053008f5c0e791667a313e28ce", "aliyuncdnexp1234", now, nil},
		"another room":       {"/app/room2", good, "k", now, ErrAuthKeyInvalid},
		"another key":        {"/app/room1", good, "k2", now, ErrAuthKeyInvalid},
		"expired":            {"/app/room1", good, "k", now.Add(2 * time.Hour), ErrAuthKeyExpired},
		"missing":            {"/app/room1", "", "k", now, ErrAuthKeyMissing},
		"malformed":          {"/app/room1", "abc", "k", now, ErrAuthKeyInvalid},
		"not a number":       {"/app/room1", "x-0-0-" + good[len(good)-32:], "k", now, ErrAuthKeyInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			if got := CheckAuthKeyA(tc.path, tc.value, tc.key, tc.at); got != tc.want {
				t.Fatalf("CheckAuthKeyA = %v, want %v", got, tc.want)
			}
		})
	}
}
