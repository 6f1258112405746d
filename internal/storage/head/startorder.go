package head

import (
	"cmp"
	"slices"
)

// A search with a limit wants the newest traces first, and stops once it has enough; reading
// every trace's summary to find the newest costs a pass over the whole head, however few it
// wants. So each shard also lists its traces by the second their first run of spans started
// (byStart), and the traces marked split (splitIDs), which a search must see whatever their
// age. A trace's start only moves earlier as spans arrive, so its listed second is an upper
// bound of its start: everything not yet read from seconds before s started before s+1. And
// a trace whose start moves to an earlier second is listed again there, so a trace is always
// listed under the second of its start (and perhaps later ones): a search ending at t need not
// read the seconds after t.
// Lists are appended to as traces begin and pruned of traces the head let go by the periodic
// sweep; readers skip IDs the head no longer holds.

func startSecond(start uint64) int64 { return int64(start / 1e9) }

// listStart records a new live entry; runs under the shard lock.
func (sh *shard) listStart(t *Trace) {
	k := startSecond(t.Start)
	sh.byStart[k] = append(sh.byStart[k], t.ID)
	if t.Split {
		sh.splitIDs[t.ID] = struct{}{}
	}
}

// sweepStarts drops what the shard no longer holds; runs under the shard lock.
func (sh *shard) sweepStarts() {
	held := func(id [16]byte) bool {
		_, live := sh.live[id]
		return live || len(sh.flushing[id]) > 0
	}
	for k, ids := range sh.byStart {
		ids = slices.DeleteFunc(ids, func(id [16]byte) bool { return !held(id) })
		if len(ids) == 0 {
			delete(sh.byStart, k)
		} else {
			sh.byStart[k] = slices.Clip(ids)
		}
	}
	for id := range sh.splitIDs {
		if !held(id) {
			delete(sh.splitIDs, id)
		}
	}
	sh.maxSpans = 0
	var s Summary
	for id := range sh.live {
		sh.summary(id, &s)
		sh.maxSpans = max(sh.maxSpans, s.SpanCount)
	}
	for id := range sh.flushing {
		sh.summary(id, &s)
		sh.maxSpans = max(sh.maxSpans, s.SpanCount)
	}
}

// MaxSpans is at least the span count of every trace the head holds (its parts added up), so
// that a search for traces with more spans can skip the head.
func (h *Head) MaxSpans() int {
	n := 0
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		n = max(n, sh.maxSpans)
		sh.mu.Unlock()
	}
	return n
}

// StartSeconds returns the seconds (unix) under which the head lists traces, newest first:
// every trace listed under s started before s+1.
func (h *Head) StartSeconds() []int64 {
	var out []int64
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for k := range sh.byStart {
			out = append(out, k)
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b int64) int { return cmp.Compare(b, a) })
	return slices.Compact(out)
}

// SummariesAt calls fn with the summary of each trace listed under second s (see
// StartSeconds), once per trace ID the head still holds; a trace may also be listed under
// another second (a late part), and a caller that reads several seconds sees it again. fn runs
// outside the shard locks (the summaries are taken a shard at a time) so a search never holds
// up ingest; the summary is reused after it returns.
func (h *Head) SummariesAt(s int64, fn func(s *Summary)) {
	h.markRead()
	var sums []Summary
	for i := range h.shards {
		sh := &h.shards[i]
		sums = sums[:0]
		sh.mu.Lock()
		h.catchUp(sh)
		for _, id := range sh.byStart[s] {
			var sum Summary
			if sh.summary(id, &sum) {
				sums = append(sums, sum)
			}
		}
		sh.mu.Unlock()
		for j := range sums {
			fn(&sums[j])
		}
	}
}

// SplitSummaries calls fn with the summary of every trace that has or may have parts outside
// the head (Summary.Split or Unchecked), without reading the others. fn runs outside the shard
// locks, as SummariesAt's.
func (h *Head) SplitSummaries(fn func(s *Summary)) {
	h.markRead()
	var sums []Summary
	seen := map[[16]byte]bool{}
	for i := range h.shards {
		sh := &h.shards[i]
		sums = sums[:0]
		sh.mu.Lock()
		h.catchUp(sh)
		for _, ids := range [][][16]byte{sh.unchecked, keysOf(sh.splitIDs)} {
			for _, id := range ids {
				var sum Summary
				if !seen[id] && sh.summary(id, &sum) && (sum.Split || sum.Unchecked) {
					seen[id] = true
					sums = append(sums, sum)
				}
			}
		}
		sh.mu.Unlock()
		for j := range sums {
			fn(&sums[j])
		}
	}
}

func keysOf(m map[[16]byte]struct{}) [][16]byte {
	out := make([][16]byte, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	return out
}

// summary fills s with the summary of trace id over its live and flushing parts; false when
// the shard holds none. Runs under the shard lock.
func (sh *shard) summary(id [16]byte, s *Summary) bool {
	*s = Summary{ID: id}
	found := false
	if t := sh.live[id]; t != nil {
		s.merge(t)
		found = true
	}
	for _, t := range sh.flushing[id] {
		s.merge(t)
		found = true
	}
	return found
}
