package actors

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Rooms and Calls are the console's read views: the live rooms (ended ones left out),
// and each call with its legs.
func TestRoomsAndCallsViews(t *testing.T) {
	h := newHarness(t, nil, nil)
	alice, bob, carol := mustLogin(t, h.eng, "alice"), mustLogin(t, h.eng, "bob"), mustLogin(t, h.eng, "carol")
	a, err := h.eng.CreateRoom(bg, alice.ID, "")
	require.NoError(t, err)
	b, err := h.eng.CreateRoom(bg, bob.ID, "")
	require.NoError(t, err)
	c, err := h.eng.CreateRoom(bg, carol.ID, "")
	require.NoError(t, err)
	require.NoError(t, h.eng.Leave(bg, c.ID))

	calls, err := h.eng.Calls(bg)
	require.NoError(t, err)
	assert.Empty(t, calls)

	_, err = h.eng.Feedback(bg, FeedbackRequest{Status: FeedbackAccept, InviterUID: alice.ID, InviteeUID: bob.ID,
		InviterType: TypeHost, InviteeType: TypeHost})
	require.NoError(t, err)
	waitFor(t, "rooms joined the call", func() bool {
		rooms, err := h.eng.Rooms(bg)
		return err == nil && len(rooms) == 2 && rooms[0].CallID != "" && rooms[1].CallID != ""
	})
	rooms, err := h.eng.Rooms(bg)
	require.NoError(t, err)
	require.Len(t, rooms, 2)
	assert.ElementsMatch(t, []string{a.ID, b.ID}, []string{rooms[0].ID, rooms[1].ID}, "the ended room is left out")

	calls, err = h.eng.Calls(bg)
	require.NoError(t, err)
	require.Len(t, calls, 1)
	assert.Equal(t, rooms[0].CallID, calls[0].ID)
	assert.Equal(t, a.ID, calls[0].Inviter.RoomID)
	assert.Equal(t, b.ID, calls[0].Invitee.RoomID)
	assert.Len(t, calls[0].Legs, 2)

	require.NoError(t, h.eng.CloseCall(bg, a.ID, ""))
	waitFor(t, "call released", func() bool { cs, err := h.eng.Calls(bg); return err == nil && len(cs) == 0 })
}
