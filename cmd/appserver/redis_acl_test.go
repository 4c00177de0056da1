package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// aclLine is the ACL SETUSER line of docs/security.md for prefix and password.
func aclLine(t *testing.T, prefix, password string) []any {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "security.md"))
	require.NoError(t, err)
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "ACL SETUSER ") {
			l = strings.ReplaceAll(strings.ReplaceAll(l, "{keyprefix}", prefix), "{password}", password)
			var args []any
			for _, f := range strings.Fields(l) {
				args = append(args, f)
			}
			return args
		}
	}
	t.Fatal("docs/security.md has no ACL SETUSER line")
	return nil
}

// A deployment runs as the Redis ACL user of docs/security.md: a two-node cluster serves
// rooms, pushes, callbacks and /reset, and the user cannot touch anything outside its
// prefix.
func TestRedisACLUser(t *testing.T) {
	const password = "acl-user-password-0123456789abcdef"
	c := newTestCluster(t, 3*time.Second, "APPSERVER_CLUSTER_SECRET="+clusterSecretOld,
		"APPSERVER_REDIS_USERNAME=roomengine", "APPSERVER_REDIS_PASSWORD="+password)
	ctx := context.Background()
	admin := goredis.NewClient(&goredis.Options{Addr: c.redis.Addr()})
	defer admin.Close()
	require.NoError(t, admin.Do(ctx, aclLine(t, c.prefix, password)...).Err())
	require.NoError(t, admin.Set(ctx, "other:secret", "x", 0).Err())

	nodes := c.start("n1", "n2")
	host := field(t, nodes[0].call(t, "/login", url.Values{"name": {"host"}}), "id")
	viewer := field(t, nodes[1].call(t, "/login", url.Values{"name": {"viewer"}}), "id")
	room := field(t, nodes[0].call(t, "/live/create", url.Values{"uid": {host}}), "roomId")
	sub := subscribe(t, nodes[1], room, 0)
	nodes[1].call(t, "/live/play", url.Values{"roomId": {room}, "uid": {viewer}})
	for _, n := range nodes {
		n.call(t, "/live/comment", url.Values{"roomId": {room}, "uid": {viewer}, "comment": {"hi"}})
	}
	nodes[1].get(t, "/ali/stream/notify?action=publish&id="+room)
	sub.waitFrames(t, 10*time.Second, "comments and the publish", func(fs []clFrame) bool {
		return countType(fs, 6) == 2 && countType(fs, 9) == 1
	})
	// /reset of everything (SCAN and UNLINK of the prefix): the room is gone on both nodes.
	req, err := http.NewRequest("POST", nodes[0].base+"/reset", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+clusterAdminToken)
	res, err := client.Do(req)
	require.NoError(t, err)
	var env struct{ Code int }
	require.NoError(t, json.NewDecoder(res.Body).Decode(&env))
	res.Body.Close()
	require.Equal(t, 200, env.Code, "/reset as the ACL user")
	eventually(t, 5*time.Second, "the room gone on n2", func() error {
		a := nodes[1].do("/live/comment", url.Values{"roomId": {room}, "uid": {viewer}, "comment": {"x"}})
		if a.code == 200 {
			return fmt.Errorf("comment on a reset room answered 200")
		}
		return nil
	})
	for _, n := range nodes {
		assert.NotContains(t, n.log.String(), "NOPERM", n.name)
		assert.NotContains(t, n.log.String(), password, "%s logged the Redis password", n.name)
	}

	user := goredis.NewClient(&goredis.Options{Addr: c.redis.Addr(), Username: "roomengine", Password: password})
	defer user.Close()
	require.NoError(t, user.Ping(ctx).Err())
	for name, cmd := range map[string][]any{
		"another deployment's key":   {"get", "other:secret"},
		"writing outside the prefix": {"set", "other:x", "1"},
		"KEYS":                       {"keys", "*"},
		"FLUSHALL":                   {"flushall"},
		"CONFIG":                     {"config", "get", "requirepass"},
	} {
		err := user.Do(ctx, cmd...).Err()
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), "NOPERM", name)
		}
	}
	v, err := admin.Get(ctx, "other:secret").Result()
	require.NoError(t, err)
	assert.Equal(t, "x", v)
}
