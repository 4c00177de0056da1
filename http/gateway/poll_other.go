//go:build !linux

package gateway

// poller is Linux's epoll (poll_linux.go); elsewhere each connection is read by a
// goroutine of its own (conn.readBlocking).
type poller struct{}

func newPoller(<-chan struct{}) *poller { return nil }

func (p *poller) watch(*conn) bool { return false }

func (p *poller) forget(*conn) {}
