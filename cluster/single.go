package cluster

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"roomengine/actors"
	apihttp "roomengine/http"
	"roomengine/http/console"
	"roomengine/http/gateway"
	"roomengine/push"
)

// Single is a node alone: pushes are numbered in the gateway's memory feed, the store alone
// says whether the node is ready, and there is nothing to join, follow or leave.
type Single struct{}

var _ Topology = Single{}

func (Single) Gateway(*gateway.Options) {}

// Feed is the gateway's own feed: pushes numbered in memory, delivered at once.
func (Single) Feed(gw *gateway.Gateway) actors.Publisher { return gw.Feed().(*push.Memory) }

func (Single) Register(prometheus.Registerer) {}
func (Single) Engine() *actors.ClusterConfig  { return nil }

func (Single) Ready(store actors.Store) func(context.Context) error { return store.Ping }

func (Single) Lease() func() bool                           { return nil }
func (Single) AdminView(*actors.Engine) apihttp.ClusterView { return nil }
func (Single) ConsoleView() console.Cluster                 { return nil }
func (Single) Start(*actors.Engine)                         {}
func (Single) Expelled() <-chan struct{}                    { return nil }
func (Single) Stop(bool)                                    {}
