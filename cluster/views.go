package cluster

import (
	"context"
	"fmt"

	"roomengine/actors"
	apihttp "roomengine/http"
	"roomengine/http/console"
)

// adminView answers GET /admin/cluster.
type adminView struct {
	node   *Node
	engine *actors.Engine
}

func (v adminView) ClusterInfo(ctx context.Context, roomID string) (apihttp.ClusterInfo, error) {
	ms, err := v.node.store.Members(ctx)
	if err != nil {
		return apihttp.ClusterInfo{}, actors.ErrStoreUnavailable(err)
	}
	info := apihttp.ClusterInfo{Node: v.node.member.Node(), Members: make([]apihttp.ClusterMember, 0, len(ms))}
	for _, m := range ms {
		info.Members = append(info.Members, apihttp.ClusterMember{Node: m.Node, Addr: m.Addr})
	}
	if roomID != "" {
		o, err := v.engine.OwnerOf(ctx, roomID)
		if err != nil {
			return apihttp.ClusterInfo{}, err
		}
		info.Owner = o.Node
	}
	return info, nil
}

// consoleView shows the console the members and who owns the rooms it lists.
type consoleView struct{ node *Node }

// consoleOwnersMax bounds the owner lookups of one console refresh (one Redis call each).
const consoleOwnersMax = 200

func (v consoleView) ClusterView(ctx context.Context, roomIDs []string) (console.ClusterView, error) {
	ms, err := v.node.store.Members(ctx)
	if err != nil {
		return console.ClusterView{}, err
	}
	self := v.node.member.Node()
	view := console.ClusterView{Mode: fmt.Sprintf("cluster of %d nodes", len(ms)), Self: self,
		Owners: map[string]string{}}
	for _, m := range ms {
		view.Members = append(view.Members, console.Member{Name: m.Node, Addr: m.Addr, State: "alive", Self: m.Node == self})
	}
	for i, id := range roomIDs {
		if i == consoleOwnersMax {
			break
		}
		if o, live, err := v.node.member.Lookup(ctx, actors.KindRoom, id); err == nil && live {
			view.Owners[id] = o.Node
		}
	}
	return view, nil
}
