package embedded

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"roomengine/actors"
)

// ErrUserConflict: an imported user's id already belongs to a user with another name.
var ErrUserConflict = errors.New("id taken by another user")

// ImportUsers stores users under the ids they already have (appserver import-legacy), all
// in one transaction: if any id belongs to a different user, nothing is written. A user
// already there with the same name is left as it is, so an import can run again. The id
// counter is raised to the highest imported id, so new ids never collide with them.
func (s *Store) ImportUsers(ctx context.Context, users []actors.User) error {
	var highest uint64
	for _, u := range users {
		id, err := strconv.ParseUint(u.ID, 10, 64)
		if err != nil || id == 0 {
			return fmt.Errorf("embedded: import user %q: not a decimal id", u.ID)
		}
		highest = max(highest, id)
	}
	return s.submit(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		for _, u := range users {
			if old := b.Get([]byte(u.ID)); old != nil {
				var have actors.User
				if err := json.Unmarshal(old, &have); err != nil || have.Name != u.Name {
					return fmt.Errorf("embedded: import user %s: %w", u.ID, ErrUserConflict)
				}
				continue
			}
			val, err := json.Marshal(u)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(u.ID), val); err != nil {
				return err
			}
		}
		return raiseLastUserID(tx, highest)
	})
}

// ReserveUserIDs raises the id counter to last unless it is already higher, so the next
// CreateUser returns an id above every id the old server handed out.
func (s *Store) ReserveUserIDs(ctx context.Context, last uint64) error {
	return s.submit(ctx, func(tx *bolt.Tx) error { return raiseLastUserID(tx, last) })
}

func raiseLastUserID(tx *bolt.Tx, atLeast uint64) error {
	meta := tx.Bucket(bucketMeta)
	last, err := lastUserID(meta)
	if err != nil || last >= atLeast {
		return err
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], atLeast)
	return meta.Put(keyLastUserID, buf[:])
}
