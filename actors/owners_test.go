package actors

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A single node's reservations behave as Placement's in a cluster: all or none, a room held
// by another call is named before a user, a call frees only what it holds, and the calls
// loaded at start-up hold their rooms and users.
func TestOneNodeReservations(t *testing.T) {
	ctx := t.Context()
	o := newOneNode([]Call{{ID: "call-old", Inviter: CallSide{UID: "1", RoomID: "a"}, Invitee: CallSide{UID: "2", RoomID: "b"}}})
	id, err := o.callOf(ctx, "b")
	require.NoError(t, err)
	assert.Equal(t, "call-old", id, "a loaded call holds its rooms")

	busy, err := o.reserve(ctx, "call-1", []string{"c", "a"}, []string{"2", "3"})
	require.NoError(t, err)
	assert.Equal(t, "a", busy, "the busy room is named before the busy user")
	busy, _ = o.reserve(ctx, "call-1", []string{"c"}, []string{"3", "1"})
	assert.Equal(t, "1", busy)
	id, _ = o.callOf(ctx, "c")
	assert.Empty(t, id, "a refused reservation holds nothing")

	busy, _ = o.reserve(ctx, "call-1", []string{"c"}, []string{"3"})
	assert.Empty(t, busy)
	busy, _ = o.reserve(ctx, "call-1", []string{"d"}, []string{"3"})
	assert.Empty(t, busy, "a call may add to what it holds (a co-stream room)")
	require.NoError(t, o.unreserve(ctx, "call-old", []string{"a", "c"}, []string{"1", "3"}))
	id, _ = o.callOf(ctx, "c")
	assert.Equal(t, "call-1", id, "another call's reservations stay")
	id, _ = o.callOf(ctx, "a")
	assert.Empty(t, id)
	busy, _ = o.reserve(ctx, "call-2", nil, []string{"3"})
	assert.Equal(t, "3", busy, "a user is in one call at most")

	o.forget()
	id, _ = o.callOf(ctx, "d")
	assert.Empty(t, id, "a wiped store holds no reservation")
}
