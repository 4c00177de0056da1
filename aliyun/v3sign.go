package aliyun

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
)

// V3Algorithm is the name of Aliyun's OpenAPI signature V3.
const V3Algorithm = "ACS3-HMAC-SHA256"

// V3Request is what the V3 signature covers: the method, the path (URI), the query
// parameters, the headers and the hex SHA-256 of the body.
type V3Request struct {
	Method string
	Path   string // "" means "/"
	Query  map[string]string
	// Headers by name; only host, content-type and x-acs-* are signed (names compared
	// lower-cased, values trimmed).
	Headers     map[string]string
	PayloadHash string // hex SHA-256 of the body (of "" for an empty body)
}

// HashHex is the hex SHA-256 of b, the x-acs-content-sha256 of a body.
func HashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// V3SignedHeaders returns the signed header names (lower case, sorted, joined by ";") and
// the canonical headers block ("name:value\n" each).
func V3SignedHeaders(headers map[string]string) (names, canonical string) {
	values := map[string]string{}
	for k, v := range headers {
		lk := strings.ToLower(strings.TrimSpace(k))
		if lk == "host" || lk == "content-type" || strings.HasPrefix(lk, "x-acs-") {
			values[lk] = strings.TrimSpace(v)
		}
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + ":" + values[k] + "\n")
	}
	return strings.Join(keys, ";"), b.String()
}

// SignV3 returns the Authorization header of r signed with signature V3 (ACS3-HMAC-SHA256):
// canonical request = method \n path \n canonical query \n canonical headers \n signed
// header names \n payload hash; string to sign = algorithm \n hex SHA-256(canonical request);
// signature = hex HMAC-SHA256(secret, string to sign).
func SignV3(r V3Request, accessKeyID, secret string) string {
	path := r.Path
	if path == "" {
		path = "/"
	}
	names, canonicalHeaders := V3SignedHeaders(r.Headers)
	canonicalRequest := strings.Join([]string{r.Method, path, CanonicalQuery(r.Query),
		canonicalHeaders, names, r.PayloadHash}, "\n")
	toSign := V3Algorithm + "\n" + HashHex([]byte(canonicalRequest))
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(toSign))
	return V3Algorithm + " Credential=" + accessKeyID + ",SignedHeaders=" + names +
		",Signature=" + hex.EncodeToString(m.Sum(nil))
}
