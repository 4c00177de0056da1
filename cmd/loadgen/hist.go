package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// hist is a fixed-size log-linear latency histogram in the spirit of HdrHistogram: values
// below 128ns get a bucket each, and every power-of-two range above is cut into 64 linear
// sub-buckets, so any recorded value is known to within 1/64 (1.6%) of itself. Its size
// does not depend on how many values it holds, which keeps a long run's memory bounded.
// It is not safe for concurrent use: each worker owns one and they are merged at the end.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64 // nanoseconds, for the mean
	min    int64
	max    int64
}

const (
	histLinear  = 128 // values below this (ns) are exact
	histSub     = 64  // sub-buckets per power of two above histLinear
	histBuckets = histLinear + 57*histSub
)

func histBucket(v int64) int {
	if v < histLinear {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	e := bits.Len64(uint64(v)) - 7 // ≥ 1; v>>e is in [64, 128)
	return histLinear + (e-1)*histSub + int(v>>e) - histSub
}

// histLower is the smallest value that falls into bucket b.
func histLower(b int) int64 {
	if b < histLinear {
		return int64(b)
	}
	e := (b-histLinear)/histSub + 1
	m := int64((b-histLinear)%histSub + histSub)
	return m << e
}

func (h *hist) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[histBucket(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

func (h *hist) merge(o *hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// quantile returns the value at quantile q (0 < q ≤ 1): the upper edge of the bucket that
// holds the ceil(q·n)-th smallest value, never more than the true maximum.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			upper := histLower(b+1) - 1
			if upper < 0 { // the last buckets' edge overflows int64
				upper = h.max
			}
			return time.Duration(min(max(upper, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *hist) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// atomicHist is a hist that many goroutines record into at once (every subscriber records
// the delivery latency of every frame): the same buckets, counted with atomic adds, so a
// record costs a few nanoseconds and no lock, and the memory is one histogram per run
// rather than one per subscriber.
type atomicHist struct {
	counts [histBuckets]atomic.Uint64
	max    atomic.Int64
}

func (h *atomicHist) record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[histBucket(v)].Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// snapshot is the histogram so far as a hist (the minimum and the sum are approximated
// by the lower edges of the buckets).
func (h *atomicHist) snapshot() hist {
	var out hist
	for b := range h.counts {
		c := h.counts[b].Load()
		if c == 0 {
			continue
		}
		lo := histLower(b)
		if out.n == 0 {
			out.min = lo
		}
		out.counts[b] = c
		out.n += c
		out.sum += float64(lo) * float64(c)
	}
	out.max = h.max.Load()
	return out
}
