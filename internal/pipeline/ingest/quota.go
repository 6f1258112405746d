package ingest

import "sync"

const quotaShards = 64

// traceQuota hands out room under the spans-per-trace limit. A request reserves its spans of a
// trace before it is written and gives the reservation back once they are in the head; what is
// free is the limit minus what the head holds minus what other requests have reserved. Reading
// the head's count under the same lock as the reservations makes the limit exact however many
// requests for one trace arrive at once: at worst a request finishing concurrently is counted
// twice for a moment, which refuses a span too many, never lets one too many in.
type traceQuota struct {
	shards [quotaShards]quotaShard
}

type quotaShard struct {
	mu       sync.Mutex
	reserved map[[16]byte]int
}

func (q *traceQuota) init() {
	for i := range q.shards {
		q.shards[i].reserved = map[[16]byte]int{}
	}
}

// reserve grants up to want spans of trace id, given held (the spans the head has of it) and
// limit.
func (q *traceQuota) reserve(id [16]byte, want, limit int, held func([16]byte) int) int {
	sh := &q.shards[id[15]%quotaShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	free := limit - held(id) - sh.reserved[id]
	granted := max(0, min(want, free))
	if granted > 0 {
		sh.reserved[id] += granted
	}
	return granted
}

func (q *traceQuota) release(id [16]byte, n int) {
	if n == 0 {
		return
	}
	sh := &q.shards[id[15]%quotaShards]
	sh.mu.Lock()
	if left := sh.reserved[id] - n; left > 0 {
		sh.reserved[id] = left
	} else {
		delete(sh.reserved, id)
	}
	sh.mu.Unlock()
}

// reservations is how many traces hold a reservation now; zero when no request is in flight.
func (q *traceQuota) reservations() int {
	n := 0
	for i := range q.shards {
		sh := &q.shards[i]
		sh.mu.Lock()
		n += len(sh.reserved)
		sh.mu.Unlock()
	}
	return n
}

// reserve takes the quota for every trace of the scanned request and counts what did not fit.
func (in *Ingester) reserve(sc *scan) {
	sc.granted = make(map[[16]byte]int, len(sc.traceCounts))
	for id, n := range sc.traceCounts {
		g := in.quota.reserve(id, n, sc.lim.MaxSpansPerTrace, in.store.TraceSpans)
		sc.granted[id] = g
		if g < n {
			sc.overTrace += n - g
			if sc.truncated == nil {
				sc.truncated = map[[16]byte]bool{}
			}
			sc.truncated[id] = true
		}
	}
}

func (in *Ingester) releaseQuota(sc *scan) {
	for id, g := range sc.granted {
		in.quota.release(id, g)
	}
}
