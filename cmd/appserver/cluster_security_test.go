package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	clusterSecretOld = "cluster-secret-old-0123456789abcdef0123456789"
	clusterSecretNew = "cluster-secret-new-0123456789abcdef0123456789"
)

// signPeer signs a peer request as docs/security.md specifies, written out here again so the
// test checks the documented format, not the code's own idea of it.
func signPeer(h http.Header, secret string, at time.Time, nonce string, body []byte) {
	sum := sha256.Sum256(body)
	ts := strconv.FormatInt(at.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "POST\n/peer/v1\n%s\n%s\n%s", ts, nonce, hex.EncodeToString(sum[:]))
	h.Set("X-Peer-Time", ts)
	h.Set("X-Peer-Nonce", nonce)
	h.Set("X-Peer-Signature", hex.EncodeToString(m.Sum(nil)))
}

func newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// peerPost sends one raw request to a node's cluster address and returns the HTTP status.
func peerPost(t *testing.T, addr string, body []byte, sign func(http.Header)) int {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+"/peer/v1", bytes.NewReader(body))
	require.NoError(t, err)
	if sign != nil {
		sign(req.Header)
	}
	res, err := client.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// peerAddr is the cluster address of n as the members list it.
func (c *testCluster) peerAddr(n *clNode) string {
	c.t.Helper()
	info, err := n.admin(c.t, "")
	require.NoError(c.t, err)
	for _, m := range info.Members {
		if m.Node == n.name {
			return m.Addr
		}
	}
	c.t.Fatalf("%s not among the members %v", n.name, info.Members)
	return ""
}

// forgedComment is the peer message of a comment by uid on room.
func forgedComment(room, uid, text string) []byte {
	b, _ := json.Marshal(map[string]any{"kind": "room", "id": room, "event": "comment",
		"data": map[string]any{"user": map[string]string{"id": uid, "name": "mallory"}, "known": true, "text": text}})
	return b
}

// With a cluster.secret a node obeys only its peers: unsigned, wrongly signed, 31 s old and
// replayed requests to its cluster address are 401 and no push of theirs reaches a
// subscriber, while the requests the nodes forward to each other keep working.
func TestClusterPeersAreSigned(t *testing.T) {
	c := newTestCluster(t, 3*time.Second, "APPSERVER_CLUSTER_SECRET="+clusterSecretOld)
	nodes := c.start("n1", "n2", "n3")
	host := field(t, nodes[0].call(t, "/login", url.Values{"name": {"host"}}), "id")
	viewer := field(t, nodes[1].call(t, "/login", url.Values{"name": {"viewer"}}), "id")
	room := field(t, nodes[0].call(t, "/live/create", url.Values{"uid": {host}}), "roomId")
	owner := c.ownerOf(nodes[2], room)
	var subs []*subscriber
	for _, n := range nodes {
		subs = append(subs, subscribe(t, n, room, 0))
	}
	addr := c.peerAddr(owner)

	// A request a peer really sent, captured on the network, is used once (as its sender
	// did) and then replayed.
	captured := forgedComment(room, viewer, "sent once by a peer")
	capturedHeader := http.Header{}
	signPeer(capturedHeader, clusterSecretOld, time.Now(), newNonce(), captured)
	require.Equal(t, http.StatusOK, peerPost(t, addr, captured, func(h http.Header) { copyHeaders(h, capturedHeader) }))

	forged := forgedComment(room, viewer, "forged")
	for name, sign := range map[string]func(http.Header){
		"unsigned": nil,
		"wrong secret": func(h http.Header) {
			signPeer(h, "not-the-cluster-secret-0123456789abcdef", time.Now(), newNonce(), forged)
		},
		"31 s old": func(h http.Header) {
			signPeer(h, clusterSecretOld, time.Now().Add(-31*time.Second), newNonce(), forged)
		},
		"replayed nonce": func(h http.Header) { copyHeaders(h, capturedHeader) },
	} {
		body := forged
		if name == "replayed nonce" {
			body = captured
		}
		assert.Equal(t, http.StatusUnauthorized, peerPost(t, addr, body, sign), name)
	}
	// Nothing changed: a comment made now through the API is the next push every subscriber
	// gets after the one captured comment; no forged or replayed one came before it.
	for i, n := range nodes {
		n.call(t, "/live/comment", url.Values{"roomId": {room}, "uid": {viewer}, "comment": {fmt.Sprint("real ", i)}})
	}
	for i, s := range subs {
		fs := s.waitFrames(t, 10*time.Second, "the real comments", hasType(6, 4))
		var texts []string
		for _, f := range onlyType(fs, 6) {
			var d struct{ Comment string }
			_ = json.Unmarshal(f.Message.Data, &d)
			texts = append(texts, d.Comment)
		}
		assert.Equal(t, []string{"sent once by a peer", "real 0", "real 1", "real 2"}, texts, "comments on n%d", i+1)
	}
	// The refusals are in the owner's log; the forwarded requests were never refused; no
	// node logged a secret or a signature.
	assert.Contains(t, owner.log.String(), "peer request refused")
	for _, n := range c.others(owner) {
		assert.NotContains(t, n.log.String(), "answer refused")
	}
	for _, n := range nodes {
		for _, secret := range []string{clusterSecretOld, clusterAdminToken, capturedHeader.Get("X-Peer-Signature")} {
			assert.NotContains(t, n.log.String(), secret, "%s's log", n.name)
		}
	}
}

func copyHeaders(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// The secret is rotated one node at a time with no failed request: every node first accepts
// the new secret (previousSecret), then signs with it (the old one still accepted), then the
// old one is dropped. Requests forwarded between nodes run throughout.
func TestClusterSecretRotation(t *testing.T) {
	c := newTestCluster(t, 3*time.Second)
	phase0 := []string{"APPSERVER_CLUSTER_SECRET=" + clusterSecretOld}
	for _, name := range []string{"n1", "n2", "n3"} {
		c.startEnv(name, phase0...)
	}
	n1 := c.nodes["n1"]
	viewer := field(t, n1.call(t, "/login", url.Values{"name": {"viewer"}}), "id")
	var rooms []string
	for i, name := range []string{"n1", "n2", "n3"} {
		host := field(t, n1.call(t, "/login", url.Values{"name": {fmt.Sprint("host", i)}}), "id")
		rooms = append(rooms, field(t, c.nodes[name].call(t, "/live/create", url.Values{"uid": {host}}), "roomId"))
	}
	var (
		mu       sync.Mutex
		failures []string
		sent     int
		up       = map[string]bool{"n1": true, "n2": true, "n3": true}
		inFlight = map[string]int{}
		// current is the running process of each node (c.nodes is the harness's own,
		// written while the loop below runs).
		current = map[string]*clNode{"n1": c.nodes["n1"], "n2": c.nodes["n2"], "n3": c.nodes["n3"]}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			var via *clNode
			for _, name := range []string{"n1", "n2", "n3"} {
				if up[name] && (via == nil || i%3 == int(name[1]-'1')) {
					via = current[name]
				}
			}
			inFlight[via.name]++
			mu.Unlock()
			_, err := via.try("/live/comment", url.Values{"roomId": {rooms[i%3]}, "uid": {viewer}, "comment": {fmt.Sprint(i)}})
			mu.Lock()
			inFlight[via.name]--
			sent++
			if err != nil {
				failures = append(failures, fmt.Sprintf("via %s: %v", via.name, err))
			}
			mu.Unlock()
		}
	})
	for _, phase := range [][]string{
		{"APPSERVER_CLUSTER_SECRET=" + clusterSecretOld, "APPSERVER_CLUSTER_PREVIOUSSECRET=" + clusterSecretNew},
		{"APPSERVER_CLUSTER_SECRET=" + clusterSecretNew, "APPSERVER_CLUSTER_PREVIOUSSECRET=" + clusterSecretOld},
		{"APPSERVER_CLUSTER_SECRET=" + clusterSecretNew},
	} {
		for _, name := range []string{"n1", "n2", "n3"} {
			mu.Lock()
			up[name] = false
			mu.Unlock()
			// The test's own client is done with the node (a request of its own to a node
			// that stops is not what this test is about); peers still forward to it.
			eventually(t, 5*time.Second, "no request in flight to "+name, func() error {
				mu.Lock()
				defer mu.Unlock()
				if inFlight[name] > 0 {
					return fmt.Errorf("%d in flight", inFlight[name])
				}
				return nil
			})
			current[name].signal(t, 15)
			require.Equal(t, 0, current[name].exited(t, 20*time.Second))
			n := c.startEnv(name, phase...)
			mu.Lock()
			current[name], up[name] = n, true
			before := sent
			mu.Unlock()
			eventually(t, 10*time.Second, "requests after restarting "+name, func() error {
				mu.Lock()
				defer mu.Unlock()
				if sent < before+30 {
					return fmt.Errorf("%d sent", sent-before)
				}
				return nil
			})
		}
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, failures, "requests failed during the rotation (%d sent)", sent)
	t.Logf("%d comments forwarded across the rotation", sent)
	for _, n := range c.nodes {
		assert.NotContains(t, n.log.String(), "peer request refused", n.name)
	}
}
