package apifake

import (
	"testing"
	"time"
)

func TestEncode(t *testing.T) {
	for in, want := range map[string]string{"a b": "a%20b", "*": "%2A", "~": "~", "+": "%2B", "/": "%2F", "é": "%C3%A9"} {
		if got := Encode(in); got != want {
			t.Errorf("Encode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFaults(t *testing.T) {
	var f Faults
	f.Fail("A", 2, 500, "InternalError", "x")
	f.SetDelay(time.Second)
	for name, tc := range map[string]struct {
		action string
		fails  bool
	}{"another action is not failed": {"B", false}} {
		t.Run(name, func(t *testing.T) {
			if fail, d := f.Take(tc.action); (fail != nil) != tc.fails || d != time.Second {
				t.Fatalf("%v %v", fail, d)
			}
		})
	}
	for i := range 2 {
		if fail, _ := f.Take("A"); fail == nil || fail.Code != "InternalError" {
			t.Fatalf("take %d: %v", i, fail)
		}
	}
	if fail, _ := f.Take("A"); fail != nil {
		t.Fatal("failed more than twice")
	}
	f.Clear()
	if _, d := f.Take("A"); d != 0 {
		t.Fatal("delay not cleared")
	}
}
