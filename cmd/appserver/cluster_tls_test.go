package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testPKI writes a CA and one certificate for 127.0.0.1 signed by it (both usable as
// server and client) into dir, and returns their paths.
func testPKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "roomengine test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	nodeTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	nodeDER, err := x509.CreateCertificate(rand.Reader, nodeTmpl, caCert, &nodeKey.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(nodeKey)
	require.NoError(t, err)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("node.pem", "CERTIFICATE", nodeDER), write("node-key.pem", "EC PRIVATE KEY", keyDER)
}

// With cluster.tls the nodes talk TLS with client certificates: requests forwarded between
// them work, while a plain connection and a TLS client without a certificate of the
// cluster's CA get nothing.
func TestClusterPeerTLS(t *testing.T) {
	ca, cert, key := testPKI(t, t.TempDir())
	c := newTestCluster(t, 3*time.Second, "APPSERVER_CLUSTER_SECRET="+clusterSecretOld,
		"APPSERVER_CLUSTER_TLS_CERT="+cert, "APPSERVER_CLUSTER_TLS_KEY="+key, "APPSERVER_CLUSTER_TLS_CA="+ca)
	nodes := c.start("n1", "n2")
	host := field(t, nodes[0].call(t, "/login", url.Values{"name": {"host"}}), "id")
	room := field(t, nodes[0].call(t, "/live/create", url.Values{"uid": {host}}), "roomId")
	owner := c.ownerOf(nodes[1], room)
	other := c.others(owner)[0]
	sub := subscribe(t, owner, room, 0)
	other.call(t, "/live/comment", url.Values{"roomId": {room}, "uid": {host}, "comment": {"over TLS"}})
	sub.waitFrames(t, 10*time.Second, "the comment forwarded over TLS", hasType(6, 1))

	addr := c.peerAddr(owner)
	body := []byte(`{"kind":"room","id":"` + room + `","event":"queryRoom"}`)
	// Plain HTTP, even correctly signed: refused.
	req, err := http.NewRequest("POST", "http://"+addr+"/peer/v1", strings.NewReader(string(body)))
	require.NoError(t, err)
	signPeer(req.Header, clusterSecretOld, time.Now(), newNonce(), body)
	if res, err := client.Do(req); err == nil {
		res.Body.Close()
		assert.NotEqual(t, http.StatusOK, res.StatusCode, "plain HTTP to a TLS cluster port")
	}
	// TLS that trusts the server but has no client certificate: the handshake fails.
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(ca)
	require.NoError(t, err)
	pool.AppendCertsFromPEM(caPEM)
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, err = http.NewRequest("POST", "https://"+addr+"/peer/v1", strings.NewReader(string(body)))
	require.NoError(t, err)
	signPeer(req.Header, clusterSecretOld, time.Now(), newNonce(), body)
	res, err := noCert.Do(req)
	if err == nil {
		res.Body.Close()
	}
	require.Error(t, err, "a TLS client without a certificate of the cluster's CA")
}
