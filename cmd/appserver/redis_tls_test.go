package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// A node reaches a real redis-server over TLS with a client certificate (redis.tls.*) and
// serves from it.
func TestRedisOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs redis-server and an appserver process")
	}
	dir := t.TempDir()
	ca, cert, key := testPKI(t, dir)
	port := freePort(t)
	srv := exec.Command("redis-server", "--port", "0", "--tls-port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "yes",
		"--save", "", "--appendonly", "no", "--dir", dir)
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := &syncBuffer{}
	srv.Stdout, srv.Stderr = out, out
	require.NoError(t, srv.Start())
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })

	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(ca)
	require.NoError(t, err)
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(cert, key)
	require.NoError(t, err)
	rdb := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port),
		TLSConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"}})
	defer rdb.Close()
	eventually(t, 10*time.Second, "redis-server answering over TLS", func() error {
		return rdb.Ping(context.Background()).Err()
	})

	node := start(t, binary(t), freePort(t), "APPSERVER_STORE=redis", "APPSERVER_REDIS_HOST=127.0.0.1",
		fmt.Sprint("APPSERVER_REDIS_PORT=", port), "APPSERVER_REDIS_KEYPREFIX=tls", "APPSERVER_REDIS_TLS_ENABLED=true",
		"APPSERVER_REDIS_TLS_CA="+ca, "APPSERVER_REDIS_TLS_CERT="+cert, "APPSERVER_REDIS_TLS_KEY="+key)
	host := field(t, node.call(t, "/login", url.Values{"name": {"host"}}), "id")
	room := field(t, node.call(t, "/live/create", url.Values{"uid": {host}}), "roomId")
	n, err := rdb.Exists(context.Background(), "tls:room:{"+room+"}").Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "the room is stored in the TLS redis-server\n%s", out)
}
