package gateway

import "slices"

// smallTagSet is how many tags a subscription may have before its filter becomes a map.
// Clients pass one or two (the room tag and their user tag), for which a scan beats
// hashing; past a few, a map keeps the filter O(1) per message and subscriber.
const smallTagSet = 4

// tagSet is a subscription's tag filter; the zero value (no tags) lets every frame through.
// It never changes after the subscription, so Publish reads it without a lock.
type tagSet struct {
	list []string
	set  map[string]struct{}
}

func newTagSet(tags []string) tagSet {
	if len(tags) <= smallTagSet {
		return tagSet{list: tags}
	}
	set := make(map[string]struct{}, len(tags))
	for _, t := range tags {
		set[t] = struct{}{}
	}
	return tagSet{set: set}
}

// match reports whether a frame tagged tag passes the filter.
func (s tagSet) match(tag string) bool {
	if s.set != nil {
		_, ok := s.set[tag]
		return ok
	}
	return len(s.list) == 0 || slices.Contains(s.list, tag)
}
