package http

import (
	"context"
	"net/http"

	"roomengine/actors"
)

// ClusterView answers GET /admin/cluster on a node of a cluster: this node's name, the live
// members and, when roomID is not empty, the node that acts for that room now (placing the
// room if it has no live owner).
type ClusterView interface {
	ClusterInfo(ctx context.Context, roomID string) (ClusterInfo, error)
}

// ClusterInfo is the data of GET /admin/cluster.
type ClusterInfo struct {
	Node    string          `json:"node"`
	Members []ClusterMember `json:"members"`
	Owner   string          `json:"owner,omitempty"`
}

// ClusterMember is one live member: its name and the address the other nodes reach it at.
type ClusterMember struct {
	Node string `json:"node"`
	Addr string `json:"addr"`
}

func (h *Handler) adminCluster(ctx context.Context, p params, r *http.Request) (any, error) {
	if err := h.checkAdmin(r); err != nil {
		return nil, err
	}
	if h.opts.Cluster == nil {
		return nil, actors.Errorf(actors.CodeBadState, "不是集群节点（cluster.enabled为false）")
	}
	return h.opts.Cluster.ClusterInfo(ctx, p.get("roomId"))
}
