// Package aliyun holds the Aliyun-specific pieces of roomengine: request signing for the
// OpenAPI (RPC style) and MNS, CDN URL authentication, and the stream URLs handed to clients.
package aliyun

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"sort"
	"strings"
)

// PercentEncode encodes s the way Aliyun's RPC signature requires (RFC 3986): only
// A-Z a-z 0-9 - _ . ~ stay literal, every other byte becomes %XX in upper case. This differs
// from url.QueryEscape, which writes a space as + and leaves * alone, and would make the
// signature mismatch.
func PercentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 3)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
	return b.String()
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

// CanonicalQuery is the sorted, percent-encoded query string that RPC requests sign and
// send; sending exactly these bytes avoids a second encoder disagreeing with the signer.
// A "Signature" entry is left out, since a signature cannot cover itself.
func CanonicalQuery(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "Signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = PercentEncode(k) + "=" + PercentEncode(params[k])
	}
	return strings.Join(parts, "&")
}

// SignRPC computes the Aliyun RPC signature v1 (SignatureMethod HMAC-SHA1,
// SignatureVersion 1.0) of a request with the given method and parameters (every
// parameter except Signature itself).
func SignRPC(method string, params map[string]string, secret string) string {
	stringToSign := method + "&" + PercentEncode("/") + "&" + PercentEncode(CanonicalQuery(params))
	// RPC keys on secret+"&"; the empty part after & is a token secret Aliyun never uses.
	return hmacSHA1Base64(secret+"&", stringToSign)
}

func hmacSHA1Base64(key, msg string) string {
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
