package actors

// The events of a room and of a call are two closed sets: roomRequest carries a roomEvent,
// callRequest and roomCallRequest a callEvent. The unexported methods close them, so a
// request holds nothing but plain typed data (wire.go encodes each event for a peer) and an
// event of one kind cannot reach an actor of the other.

// roomEvent is an event a room reacts to (room_states.go).
type roomEvent interface{ roomEvent() }

// callEvent is an event a call reacts to (call_states.go).
type callEvent interface{ callEvent() }

func (evCreate) roomEvent()         {}
func (evPlay) roomEvent()           {}
func (evAudienceLeave) roomEvent()  {}
func (evLeave) roomEvent()          {}
func (evComment) roomEvent()        {}
func (evLike) roomEvent()           {}
func (evPublish) roomEvent()        {}
func (evPublishDone) roomEvent()    {}
func (evMixAvailable) roomEvent()   {}
func (evNoPublishDue) roomEvent()   {}
func (evTopicDeleteDue) roomEvent() {}
func (evJoinCall) roomEvent()       {}
func (evLeaveCall) roomEvent()      {}
func (evCallFlags) roomEvent()      {}
func (evAnnounceCall) roomEvent()   {}
func (queryRoom) roomEvent()        {}
func (queryAudience) roomEvent()    {}
func (evRoomMixResult) roomEvent()  {}

func (evCallMixReady) callEvent()  {}
func (evStartAnswered) callEvent() {}
func (evStopAnswered) callEvent()  {}
func (evMixResult) callEvent()     {}
func (evMixEvent) callEvent()      {}
func (evCallStart) callEvent()     {}
func (evCallClose) callEvent()     {}
func (queryCall) callEvent()       {}
