package main

import (
	"os"
	"testing"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses must not shift the fields.
	line := "4242 (redis server (x)) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 5 0 100 0 0"
	if got := parseStatCPU(line); got != 3.25 {
		t.Fatalf("parseStatCPU = %v, want 3.25 (325 ticks)", got)
	}
	if got := parseStatCPU("garbage"); got != -1 {
		t.Fatalf("parseStatCPU(garbage) = %v, want -1", got)
	}
}

func TestProcCPUOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if got := procCPU(os.Getpid()); got < 0 {
		t.Fatalf("procCPU(self) = %v", got)
	}
	if got := procCPU(1 << 30); got != -1 {
		t.Fatalf("procCPU(no such pid) = %v, want -1", got)
	}
}

func TestProcResults(t *testing.T) {
	res, per := procResults([]int{1, 2}, []float64{1, 2}, []float64{1.5, 3}, 1000)
	if per != 1500 || res[0].USPerReq != 500 || res[1].CPUSeconds != 1 {
		t.Fatalf("procResults = %+v, %v", res, per)
	}
	if _, per := procResults([]int{1}, []float64{-1}, []float64{2}, 10); per != -1 {
		t.Fatalf("unreadable process: per request %v, want -1", per)
	}
	if _, err := parsePids("12,x"); err == nil {
		t.Fatal("parsePids accepted x")
	}
}
