package redis

import (
	"fmt"
	"testing"
	"time"

	"roomengine/actors"
	"roomengine/persistence/redis/redistest"
)

// TestClusterModeOnRedisCluster runs the cluster-mode tests that need no server stopped or
// connection killed on a Redis Cluster of three masters and three replicas: every script
// touches one slot (a cross-slot one fails there with CROSSSLOT), and membership, claims,
// fencing, the due set, call admission, the push feed, the subscriber and the room-change
// feed keep their promises there. The same tests run on one redis-server on their own.
func TestClusterModeOnRedisCluster(t *testing.T) {
	onRedisCluster = redistest.StartCluster(t)
	t.Cleanup(func() { onRedisCluster = nil })
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"JoinRefusesNameOfLiveMember", TestJoinRefusesNameOfLiveMember},
		{"RenewAfterExpiryIsExpelledForever", TestRenewAfterExpiryIsExpelledForever},
		{"ClaimByMemberWhoseKeyVanishedIsRefused", TestClaimByMemberWhoseKeyVanishedIsRefused},
		{"RunRenewsUntilExpelled", TestRunRenewsUntilExpelled},
		{"MembersListsLiveOnesSortedAndDropsDead", TestMembersListsLiveOnesSortedAndDropsDead},
		{"LeaveHandsOwnedEntitiesOver", TestLeaveHandsOwnedEntitiesOver},
		{"ClaimRaceHasOneOwner", TestClaimRaceHasOneOwner},
		{"TakeoverAfterOwnerExpired", TestTakeoverAfterOwnerExpired},
		{"EpochNeverGoesBack", TestEpochNeverGoesBack},
		{"OwnedCountsByKind", TestOwnedCountsByKind},
		{"RejoinedNameTakesOverAsNewIncarnation", TestRejoinedNameTakesOverAsNewIncarnation},
		{"FencedWriteAtStaleEpochIsRefused", TestFencedWriteAtStaleEpochIsRefused},
		{"FencedWriteOfAnotherOwnerIsRefused", TestFencedWriteOfAnotherOwnerIsRefused},
		{"FencedWriteFromExpiredMemberIsRefused", TestFencedWriteFromExpiredMemberIsRefused},
		{"FencedWriteRefusedWhenLeaseLapsed", TestFencedWriteRefusedWhenLeaseLapsed},
		{"FencedWritesKeepTheDueSet", TestFencedWritesKeepTheDueSet},
		{"StaleDueStepIsRefused", TestStaleDueStepIsRefused},
		{"DueCompletesAnInterruptedDelete", TestDueCompletesAnInterruptedDelete},
		{"FencedDeleteKeepsTheEpoch", TestFencedDeleteKeepsTheEpoch},
		{"FencedRoomChangesGoOnTheFeedInOrder", TestFencedRoomChangesGoOnTheFeedInOrder},
		{"UnfencedWritesTouchNoClusterKeys", TestUnfencedWritesTouchNoClusterKeys},
		{"LoadOneSnapshot", TestLoadOneSnapshot},
		{"ReserveAllOrNothingUnderConcurrency", TestReserveAllOrNothingUnderConcurrency},
		{"ReserveReportsFirstBusyAndIsRepeatable", TestReserveReportsFirstBusyAndIsRepeatable},
		{"UnreserveLeavesAnotherCallsKeys", TestUnreserveLeavesAnotherCallsKeys},
		{"ReserveByExpiredMemberIsRefused", TestReserveByExpiredMemberIsRefused},
		{"ReservationInProgressExpires", TestReservationInProgressExpires},
		{"PushesReachTheFeedInPublishOrder", TestPushesReachTheFeedInPublishOrder},
		{"ResentBatchIsAppliedOnce", TestResentBatchIsAppliedOnce},
		{"FencedPushes", TestFencedPushes},
		{"CrossSlotFencedPushes", TestCrossSlotFencedPushes},
		{"ReadHistory", TestReadHistory},
		{"ResetIsAnnouncedOnTheFeed", TestResetIsAnnouncedOnTheFeed},
		{"SubscriberReceivesOnlyFollowedTopics", TestSubscriberReceivesOnlyFollowedTopics},
		{"SubscriberHoldsAPushUntilTheReadModelHasTheChange", TestSubscriberHoldsAPushUntilTheReadModelHasTheChange},
		{"FeedHeadAndRoomEntries", TestFeedHeadAndRoomEntries},
		{"KeysSpreadOverMastersInClusterMode", testClusterModeKeysSpread},
	} {
		t.Run(tc.name, tc.fn)
	}
}

// testClusterModeKeysSpread: three nodes join, 60 rooms are claimed, saved fenced (with a
// deadline), given an audience member and a reservation; each of the three masters holds
// at least 15% of the keys under the prefix.
func testClusterModeKeysSpread(t *testing.T) {
	c := newCluster(t)
	var stores []*Store
	var members []*Member
	for _, n := range []string{"n1", "n2", "n3"} {
		s, m := c.join(n, time.Minute)
		stores, members = append(stores, s), append(members, m)
	}
	for i := range 60 {
		s, m := stores[i%3], members[i%3]
		id := fmt.Sprint("room", i)
		ctx, _ := own(t, m, actors.KindRoom, id)
		room := actors.Room{ID: id, UID: fmt.Sprint(i + 1), Name: "r", NoPublishDeadline: time.Now().Add(time.Hour)}
		if err := s.SaveRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		if err := s.AddAudience(ctx, id, actors.User{ID: fmt.Sprint(i + 1), Name: "u"}); err != nil {
			t.Fatal(err)
		}
		if busy, err := m.Reserve(t.Context(), fmt.Sprint("call", i), []string{id}, []string{fmt.Sprint(i + 1)}); err != nil || busy != "" {
			t.Fatalf("Reserve = %q, %v", busy, err)
		}
	}
	requireKeysSpread(t, c.rc.Masters(), c.prefix+":*", "keys per master in cluster mode, 60 rooms")
}
