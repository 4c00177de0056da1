package actors

import "sync"

// userCache holds the users a node has looked up. A user never changes once created (ids are
// never reused), so a copy stays true until a reset forgets it. The user registry is its
// only writer; a comment served on the node that received it reads it directly, without an
// ask of the registry (a mailbox hop per comment, the most frequent request).
type userCache struct {
	mu    sync.RWMutex
	users map[string]User
}

func newUserCache() *userCache { return &userCache{users: map[string]User{}} }

func (c *userCache) get(id string) (User, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	u, ok := c.users[id]
	return u, ok
}

func (c *userCache) put(u User) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users[u.ID] = u
}

// forget drops one user, or every user when id is "".
func (c *userCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == "" {
		clear(c.users)
	} else {
		delete(c.users, id)
	}
}
