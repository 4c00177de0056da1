package aliyun

import (
	"crypto/md5"
	"encoding/hex"
	"strconv"
)

// AuthKeyA returns the auth_key value of Aliyun CDN URL authentication type A for path
// (starting with "/") expiring at exp (Unix seconds): "{exp}-0-0-{md5hex(path-exp-0-0-key)}".
// The two zeros are rand and uid, which Aliyun allows to be 0; the old server used 0 too.
func AuthKeyA(path string, exp int64, key string) string {
	ts := strconv.FormatInt(exp, 10)
	sum := md5.Sum([]byte(path + "-" + ts + "-0-0-" + key))
	return ts + "-0-0-" + hex.EncodeToString(sum[:])
}
