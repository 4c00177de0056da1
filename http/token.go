package http

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// TokenSigner issues and checks the bearer tokens /login hands out: uid and expiry, signed
// with HMAC-SHA256 under auth.secret, so they survive a restart without any stored session.
type TokenSigner struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
}

// NewTokenSigner returns a signer; secret must not be empty.
func NewTokenSigner(secret []byte, ttl time.Duration) *TokenSigner {
	return &TokenSigner{secret: secret, ttl: ttl, now: time.Now}
}

var errBadToken = errors.New("invalid or expired token")

// Issue returns a token for uid valid for the signer's ttl.
func (s *TokenSigner) Issue(uid string) string {
	payload := uid + "." + strconv.FormatInt(s.now().Add(s.ttl).Unix(), 10)
	enc := base64.RawURLEncoding.EncodeToString([]byte(payload))
	return enc + "." + s.sign(enc)
}

// Verify returns the uid of a valid, unexpired token.
func (s *TokenSigner) Verify(token string) (string, error) {
	enc, sig, ok := strings.Cut(token, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.sign(enc))) {
		return "", errBadToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", errBadToken
	}
	uid, expText, ok := strings.Cut(string(raw), ".")
	exp, err := strconv.ParseInt(expText, 10, 64)
	if !ok || err != nil || s.now().Unix() >= exp {
		return "", errBadToken
	}
	return uid, nil
}

func (s *TokenSigner) sign(payload string) string {
	mac := hmac.New(sha256.New, s.secret)
	mac.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
