package aliyun

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// AuthKeyA returns the auth_key value of Aliyun CDN URL authentication type A for path
// (starting with "/") expiring at exp (Unix seconds): "{exp}-0-0-{md5hex(path-exp-0-0-key)}".
// The two zeros are rand and uid, which Aliyun allows to be 0; the old server used 0 too.
func AuthKeyA(path string, exp int64, key string) string {
	ts := strconv.FormatInt(exp, 10)
	sum := md5.Sum([]byte(path + "-" + ts + "-0-0-" + key))
	return ts + "-0-0-" + hex.EncodeToString(sum[:])
}

// Reasons CheckAuthKeyA refuses a value.
var (
	ErrAuthKeyMissing = errors.New("auth_key missing")
	ErrAuthKeyInvalid = errors.New("auth_key malformed or wrong")
	ErrAuthKeyExpired = errors.New("auth_key expired")
)

// CheckAuthKeyA verifies an auth_key of URL authentication type A for path at now: the
// form "{exp}-{rand}-{uid}-{md5hex(path-exp-rand-uid-key)}" with exp not in the past. A
// self-hosted media server's publish hook uses it to let only the room's push URL publish.
func CheckAuthKeyA(path, value, key string, now time.Time) error {
	if value == "" {
		return ErrAuthKeyMissing
	}
	parts := strings.Split(value, "-")
	if len(parts) != 4 {
		return ErrAuthKeyInvalid
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return ErrAuthKeyInvalid
	}
	sum := md5.Sum([]byte(path + "-" + parts[0] + "-" + parts[1] + "-" + parts[2] + "-" + key))
	want := hex.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(parts[3]))) != 1 {
		return ErrAuthKeyInvalid
	}
	if now.Unix() > exp {
		return ErrAuthKeyExpired
	}
	return nil
}
