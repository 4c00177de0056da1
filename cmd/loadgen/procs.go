package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// -cpu-pids: the CPU time of named processes (every server node and redis-server, say)
// over exactly the measured window, read from /proc/<pid>/stat (utime + stime). The server's
// own /metrics counts only that process; a cluster's cost per request is the sum over all
// of them, Redis included, and the load generator is left out by construction.

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, 100 on every Linux
// architecture the kernel exports to user space (sysconf(_SC_CLK_TCK)).
const userHZ = 100

// maxPids bounds -cpu-pids.
const maxPids = 64

// parsePids reads a comma-separated list of process ids.
func parsePids(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var pids []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("-cpu-pids: %q is not a process id", f)
		}
		pids = append(pids, p)
	}
	if len(pids) > maxPids {
		return nil, fmt.Errorf("-cpu-pids: at most %d processes", maxPids)
	}
	return pids, nil
}

// procCPU is the user + system CPU seconds a process has used so far, or -1 when it cannot
// be read (the process is gone, or this is not Linux).
func procCPU(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a /proc/<pid>/stat line. The
// command name (field 2) is in parentheses and may contain spaces, so fields are counted
// from its closing parenthesis.
func parseStatCPU(stat string) float64 {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return float64(ut+st) / userHZ
}

func sampleProcs(pids []int) []float64 {
	out := make([]float64, len(pids))
	for i, p := range pids {
		out[i] = procCPU(p)
	}
	return out
}

// procResult is one -cpu-pids process's CPU over the measured window.
type procResult struct {
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_s"` // -1: not measured
	// USPerReq is its CPU-µs per measured request.
	USPerReq float64 `json:"cpu_us_per_req"`
}

// procResults turns two samples into per-process figures and their sum per request (-1
// when any process could not be read).
func procResults(pids []int, from, to []float64, requests uint64) ([]procResult, float64) {
	res := make([]procResult, len(pids))
	total, ok := 0.0, true
	for i, p := range pids {
		r := procResult{PID: p, CPUSeconds: -1, USPerReq: -1}
		if from[i] >= 0 && to[i] >= from[i] {
			r.CPUSeconds = to[i] - from[i]
			total += r.CPUSeconds
			if requests > 0 {
				r.USPerReq = r.CPUSeconds * 1e6 / float64(requests)
			}
		} else {
			ok = false
		}
		res[i] = r
	}
	if !ok || requests == 0 {
		return res, -1
	}
	return res, total * 1e6 / float64(requests)
}
