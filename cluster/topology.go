// Package cluster is what only a cluster needs outside the domain, behind one seam: the
// Topology a node's wiring (cmd/appserver) holds. New returns the single node's (Single) or
// joins a cluster (Node: the membership, the room-change feed follower, the push feed
// publisher and subscriber, the peer transport and its listener, the admin and console
// views, the cluster metrics). The domain's own seam is actors' ownership interface
// (actors/owners.go), which EngineConfig configures.
package cluster

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomengine/actors"
	"roomengine/config"
	apihttp "roomengine/http"
	"roomengine/http/console"
	"roomengine/http/gateway"
)

// Topology is how this node is deployed, alone or as one node of a cluster: what the
// wiring asks of it, in the order it asks.
type Topology interface {
	// Gateway sets where the push gateway's frames come from (a cluster's Redis feed; on a
	// single node the gateway's own memory feed, left as it is).
	Gateway(opts *gateway.Options)
	// Feed is the numbered push feed the engine publishes to.
	Feed(gw *gateway.Gateway) actors.Publisher
	// Register adds the topology's metrics.
	Register(reg prometheus.Registerer)
	// Engine is the engine's cluster configuration (nil: a single node).
	Engine() *actors.ClusterConfig
	// Ready is /readyz: the store answers (and, in a cluster, this node is a member).
	Ready(store actors.Store) func(context.Context) error
	// Lease reports whether this node may act now (MNS stops sending when it may not).
	Lease() func() bool
	// AdminView answers GET /admin/cluster; ConsoleView feeds the console's cluster panel.
	// Both are nil on a single node, which http and the console answer themselves.
	AdminView(engine *actors.Engine) apihttp.ClusterView
	ConsoleView() console.Cluster
	// Start begins serving the other nodes and following the cluster, once the engine runs.
	Start(engine *actors.Engine)
	// Expelled is closed when the cluster declared this node dead (nil: never).
	Expelled() <-chan struct{}
	// Stop ends it all after the engine stopped: a leave that hands the node's rooms over,
	// or, for an expelled node, only a stop.
	Stop(expelled bool)
}

// Options are what New needs besides the configuration.
type Options struct {
	Config *config.Config
	Store  actors.Store
	Logger *slog.Logger
	// HistorySize is how many frames of a topic the shared history keeps for since.
	HistorySize int
	// StartupWait is how long a join that Redis's replicas have not confirmed is retried.
	StartupWait time.Duration
}

// New returns the topology cfg describes: a single node, or this node joined to its
// cluster (cluster.enabled).
func New(ctx context.Context, opts Options) (Topology, error) {
	if !opts.Config.Cluster.Enabled {
		return Single{}, nil
	}
	return Join(ctx, opts)
}
