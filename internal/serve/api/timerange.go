package api

import (
	"math"
	"time"
)

// Query times are compared as int64 unix nanoseconds, which end in April 2262. A bound past
// that (Grafana and scripts send far-future ends to mean "open") would wrap negative and match
// nothing, silently, so bounds are clamped into what nanoseconds hold: a far end means the end
// of time, an early start the epoch, and the answer is the honest one.
var (
	minQueryTime = time.Unix(0, 0)
	maxQueryTime = time.Unix(0, math.MaxInt64)
)

func clampTime(t time.Time) time.Time {
	switch {
	case t.Before(minQueryTime):
		return minQueryTime
	case t.After(maxQueryTime):
		return maxQueryTime
	}
	return t
}

// unixSeconds is time.Unix(sec, nsec) clamped, without the overflow time.Unix cannot see.
func unixSeconds(sec, nsec int64) time.Time {
	switch {
	case sec < 0:
		return minQueryTime
	case sec >= math.MaxInt64/int64(time.Second):
		return maxQueryTime
	}
	return clampTime(time.Unix(sec, nsec))
}
