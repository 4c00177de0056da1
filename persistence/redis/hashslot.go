package redis

import (
	"strconv"
	"strings"
	"sync"
)

// Redis Cluster puts every key in one of 16384 hash slots: CRC16 (XMODEM) of the key, or
// of its hash tag — the part between the first '{' and the first '}' after it, when that
// part is not empty. Keys that a transaction or script touches together must share a slot;
// the store's key names (keys.go) give each entity's keys the entity's id as their tag.
//
// The store needs the slot itself in one place: WAIT (replicawait.go) has to reach the
// master that took a write through a write of its own on that master, so it writes a
// marker key chosen to fall in the same slot.

const numSlots = 16384

var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

func crc16(s string) uint16 {
	var c uint16
	for i := 0; i < len(s); i++ {
		c = c<<8 ^ crc16Table[byte(c>>8)^s[i]]
	}
	return c
}

// hashTag is the part of key that Redis Cluster hashes.
func hashTag(key string) string {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			return key[open+1 : open+1+end]
		}
	}
	return key
}

// keySlot is the hash slot of key.
func keySlot(key string) int { return int(crc16(hashTag(key)) % numSlots) }

// slotTags holds, for each slot, a short decimal string whose slot it is: a hash tag that
// puts a key of ours in any slot we need.
var slotTags = sync.OnceValue(func() []string {
	tags := make([]string, numSlots)
	for n, left := 0, numSlots; left > 0; n++ {
		s := strconv.Itoa(n)
		if slot := keySlot(s); tags[slot] == "" {
			tags[slot] = s
			left--
		}
	}
	return tags
})
