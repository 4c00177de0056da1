package cluster

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roomengine/config"
	"roomengine/http/gateway"
	"roomengine/persistence/embedded"
	"roomengine/push"
)

// A node alone is Single: the gateway's memory feed numbers its pushes, nothing joins.
func TestNewAloneIsSingle(t *testing.T) {
	store, err := embedded.Open(filepath.Join(t.TempDir(), "db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	topo, err := New(t.Context(), Options{Config: &config.Config{}, Store: store, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.Equal(t, Single{}, topo)
	gw := gateway.New(gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = gw.Shutdown(t.Context()) })
	assert.Same(t, gw.Feed().(*push.Memory), topo.Feed(gw))
	assert.Nil(t, topo.Engine(), "the engine is a single node")
	assert.Nil(t, topo.Expelled(), "nobody expels a node alone")
	assert.NoError(t, topo.Ready(store)(t.Context()))
}

// A cluster needs the shared Redis store: one on a local file is refused before anything
// listens or joins.
func TestJoinNeedsRedis(t *testing.T) {
	store, err := embedded.Open(filepath.Join(t.TempDir(), "db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	cfg := &config.Config{}
	cfg.Cluster.Enabled = true
	_, err = New(t.Context(), Options{Config: cfg, Store: store, Logger: slog.New(slog.DiscardHandler)})
	assert.ErrorContains(t, err, "store: redis")
}
