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

// UsesCluster reports whether Redis is a Redis Cluster reached through redis.cluster.addrs.
func (r Redis) UsesCluster() bool { return len(r.Cluster.Addrs) > 0 }

// validateRedisTopology checks that one way to reach Redis is chosen: host/port, the
// sentinels, or a Redis Cluster's seeds. Setting two is a mistake an operator must hear
// about (which one would win is not obvious); a default (redis.host's 127.0.0.1) does not
// count as set.
func (c *Config) validateRedisTopology() error {
	if c.Redis.FailoverGrace < 0 {
		return c.errorf("redis.failoverGrace", "must not be negative (0 turns it off)")
	}
	if c.Redis.UsesCluster() {
		return c.validateRedisCluster()
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

// validateRedisCluster checks redis.cluster.addrs against the other ways to reach Redis.
func (c *Config) validateRedisCluster() error {
	for _, k := range []string{"redis.host", "redis.port", "redis.db", "redis.sentinel.master", "redis.sentinel.addrs"} {
		if c.isSet(k) {
			return c.errorf(k, "set either %s or redis.cluster.addrs, not both", k)
		}
	}
	for _, a := range c.Redis.Cluster.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c.errorf("redis.cluster.addrs", "%q is not host:port", a)
		}
	}
	if strings.ContainsAny(c.Redis.KeyPrefix, "{}") {
		return c.errorf("redis.keyprefix", "must not contain { or } on a Redis Cluster (they would override the store's hash tags)")
	}
	return nil
}

// isSet reports whether the file or the environment set the key at path.
func (c *Config) isSet(path string) bool {
	_, ok := c.sources[path]
	return ok
}
