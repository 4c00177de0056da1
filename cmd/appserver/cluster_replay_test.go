package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clAnswer is one API envelope.
type clAnswer struct {
	Status  int
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// send makes one request to n with headers (name, value, …).
func (n *clNode) send(t *testing.T, method, path string, form url.Values, headers ...string) clAnswer {
	t.Helper()
	req, err := http.NewRequest(method, n.base+path, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var a clAnswer
	require.NoError(t, json.NewDecoder(res.Body).Decode(&a))
	a.Status = res.StatusCode
	return a
}

// aliSigned are Aliyun's callback headers for key at ts.
func aliSigned(key string, ts time.Time) []string {
	s := strconv.FormatInt(ts.Unix(), 10)
	sum := md5.Sum([]byte("videocall.push.aliyun.com|" + s + "|" + key))
	return []string{"ALI-LIVE-TIMESTAMP", s, "ALI-LIVE-SIGNATURE", hex.EncodeToString(sum[:])}
}

// In a cluster a captured callback replayed to another node changes nothing, and a
// WebSocket ticket used on one node is refused on another: the memory of what was used
// once is the deployment's (Redis), not a node's.
func TestClusterReplaysAcrossNodes(t *testing.T) {
	const cbKey = "callback-key-0123456789abcdef0123456789"
	c := newTestCluster(t, 3*time.Second, "APPSERVER_CLUSTER_SECRET="+clusterSecretOld, "APPSERVER_AUTH_REQUIRED=true",
		"APPSERVER_AUTH_SECRET=auth-secret-0123456789abcdef0123456789", "APPSERVER_ALI_CALLBACKAUTHKEY="+cbKey)
	nodes := c.start("n1", "n2")
	n1, n2 := nodes[0], nodes[1]
	var alice struct{ ID, Token string }
	login := n1.send(t, "POST", "/login", url.Values{"name": {"alice"}})
	require.NoError(t, json.Unmarshal(login.Data, &alice))
	bearer := []string{"Authorization", "Bearer " + alice.Token}
	created := n1.send(t, "POST", "/live/create", url.Values{"uid": {alice.ID}}, bearer...)
	require.Equal(t, 200, created.Code, created.Message)
	room := field(t, created.Data, "roomId")
	status := func(n *clNode) int {
		a := n.send(t, "GET", "/live/list?roomId=-1", nil, bearer...)
		var rooms []struct {
			RoomID string
			Status int
		}
		require.NoError(t, json.Unmarshal(a.Data, &rooms))
		for _, r := range rooms {
			if r.RoomID == room {
				return r.Status
			}
		}
		return -1
	}
	notify := "/ali/stream/notify?action=%s&id=" + room
	now := time.Now()
	require.Equal(t, 200, n1.send(t, "GET", fmt.Sprintf(notify, "publish"), nil, aliSigned(cbKey, now)...).Code)
	captured := aliSigned(cbKey, now.Add(-time.Second))
	require.Equal(t, 200, n1.send(t, "GET", fmt.Sprintf(notify, "publish_done"), nil, captured...).Code)
	require.Equal(t, 200, n1.send(t, "GET", fmt.Sprintf(notify, "publish"), nil, aliSigned(cbKey, now.Add(time.Second))...).Code)
	replay := n2.send(t, "GET", fmt.Sprintf(notify, "publish_done"), nil, captured...)
	assert.Equal(t, 200, replay.Code, "the replay is answered like the original")
	eventually(t, 5*time.Second, "the room publishing on both nodes", func() error {
		if s1, s2 := status(n1), status(n2); s1 != 1 || s2 != 1 {
			return fmt.Errorf("status %d on n1, %d on n2", s1, s2)
		}
		return nil
	})
	assert.Contains(t, metricsText(t, n2), `roomengine_callbacks_refused_total{reason="replay",route="/ali/stream/notify"} 1`)

	ticket := n1.send(t, "POST", "/ws/ticket", nil, bearer...)
	require.Equal(t, 200, ticket.Code, ticket.Message)
	tk := field(t, ticket.Data, "ticket")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws?topic=%s&ticket=%s", n1.port, room, tk), nil)
	require.NoError(t, err, "the ticket's first use")
	conn.CloseNow()
	_, res, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws?topic=%s&ticket=%s", n2.port, room, tk), nil)
	require.Error(t, err, "the same ticket on another node")
	require.NotNil(t, res)
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)
}
