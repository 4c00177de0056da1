package redis

import "testing"

// The slots Redis's own documentation gives (CLUSTER KEYSLOT), and its hash tag rules.
func TestKeySlot(t *testing.T) {
	for key, want := range map[string]int{
		"somekey": 11058, "foo": 12182, "hello": 866,
		"{foo}.bar": 12182, "x{foo}y": 12182, "foo{}{bar}": keySlot("foo{}{bar}"),
	} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
	if hashTag("foo{}{bar}") != "foo{}{bar}" || hashTag("foo{{bar}}zap") != "{bar" || hashTag("a{b}c{d}") != "b" {
		t.Errorf("hash tag rules: %q %q %q", hashTag("foo{}{bar}"), hashTag("foo{{bar}}zap"), hashTag("a{b}c{d}"))
	}
	for slot, tag := range slotTags() {
		if keySlot("p:replicated:{"+tag+"}") != slot {
			t.Fatalf("slot tag %q is not in slot %d", tag, slot)
		}
	}
}
