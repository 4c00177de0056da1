package config

import (
	"net"
	"strings"
)

// maxWaitReplicas bounds redis.waitReplicas: a deployment with more replicas than this
// waits for a quorum of them, not all.
const maxWaitReplicas = 16

// UsesSentinel reports whether the primary is found through Redis Sentinel.
func (r Redis) UsesSentinel() bool { return r.Sentinel.Master != "" || len(r.Sentinel.Addrs) > 0 }

// validateRedisTopology checks that one way to reach Redis is chosen: host/port, or the
// sentinels. Setting both is a mistake an operator must hear about (which one would win is
// not obvious); a default (redis.host's 127.0.0.1) does not count as set.
func (c *Config) validateRedisTopology() error {
	if c.Redis.FailoverGrace < 0 {
		return c.errorf("redis.failoverGrace", "must not be negative (0 turns it off)")
	}
	if !c.Redis.UsesSentinel() {
		return nil
	}
	for _, k := range []string{"redis.host", "redis.port"} {
		if c.isSet(k) {
			return c.errorf(k, "set either %s or redis.sentinel.*, not both", k)
		}
	}
	if strings.TrimSpace(c.Redis.Sentinel.Master) == "" {
		return c.errorf("redis.sentinel.master", "must name the primary the sentinels monitor when redis.sentinel.addrs is set")
	}
	if len(c.Redis.Sentinel.Addrs) == 0 {
		return c.errorf("redis.sentinel.addrs", "must list the sentinels (host:port, comma-separated) when redis.sentinel.master is set")
	}
	for _, a := range c.Redis.Sentinel.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c.errorf("redis.sentinel.addrs", "%q is not host:port", a)
		}
	}
	return nil
}

// isSet reports whether the file or the environment set the key at path.
func (c *Config) isSet(path string) bool {
	_, ok := c.sources[path]
	return ok
}
