package head

// Cut runs on every flush tick (250 ms). Walking every live trace to find the idle and the old
// ones cost a pass over the whole head each time, under each shard's lock, in the way of the
// appends and the searches waiting for it. Instead each shard keeps two queues in time order:
// idle has an entry (trace, time) for every append to a trace, at the back, so the front holds
// the least recently appended; age has one (trace, first append) per live entry begun. Cut pops
// entries from the fronts up to its deadlines: an entry is current when the trace still has that
// last (or first) append, else a later entry stands for it (or it is gone) and it is dropped.
// A tick therefore touches what it cuts and what went stale, not every trace. Appends are
// stamped when their request began, so a queue is only nearly ordered: a trace behind a later
// entry is cut at the next tick after it.

type cutEntry struct {
	id [16]byte
	at int64
}

// cutQueue is a FIFO of cut entries.
type cutQueue struct {
	e    []cutEntry
	head int
}

func (q *cutQueue) push(id [16]byte, at int64) { q.e = append(q.e, cutEntry{id, at}) }

// reset empties q, keeping its memory.
func (q *cutQueue) reset() { q.e, q.head = q.e[:0], 0 }

func (q *cutQueue) len() int { return len(q.e) - q.head }

func (q *cutQueue) front() *cutEntry { return &q.e[q.head] }

func (q *cutQueue) pop() {
	q.head++
	if q.head == len(q.e) {
		q.e, q.head = q.e[:0], 0
	} else if q.head >= 1024 && q.head > len(q.e)/2 {
		n := copy(q.e, q.e[q.head:])
		q.e, q.head = q.e[:n], 0
	}
}

// compact drops the entries for which current is false, when they outnumber the live traces
// (entries stuck behind a trace that stays live for long), so that a queue stays in proportion
// to the head.
func (q *cutQueue) compact(live int, current func(e *cutEntry) bool) {
	if q.len() <= 2*live+1024 {
		return
	}
	kept := q.e[:0]
	for i := q.head; i < len(q.e); i++ {
		if current(&q.e[i]) {
			kept = append(kept, q.e[i])
		}
	}
	clear(q.e[len(kept):])
	q.e, q.head = kept, 0
}

// cutDue moves the shard's live traces idle since idleBefore, or (maxAge) begun before
// ageBefore, to the flushing set and appends them to out; runs under the shard lock.
func (sh *shard) cutDue(idleBefore, ageBefore int64, maxAge bool, out []*Trace) ([]*Trace, int64) {
	var cut int64
	take := func(t *Trace) {
		delete(sh.live, t.ID)
		sh.liveBytes -= int64(len(t.buf))
		sh.flushing[t.ID] = append(sh.flushing[t.ID], t)
		out = append(out, t)
		cut += int64(len(t.buf))
	}
	for sh.idleQ.len() > 0 && sh.idleQ.front().at <= idleBefore {
		e := sh.idleQ.front()
		if t := sh.live[e.id]; t != nil && t.lastAppend <= idleBefore {
			take(t)
		}
		sh.idleQ.pop()
	}
	for sh.ageQ.len() > 0 {
		e := sh.ageQ.front()
		t := sh.live[e.id]
		if t != nil && t.firstAppend == e.at {
			if !maxAge || e.at > ageBefore {
				break
			}
			take(t)
		}
		sh.ageQ.pop()
	}
	sh.idleQ.compact(len(sh.live), func(e *cutEntry) bool {
		t := sh.live[e.id]
		return t != nil && t.lastAppend == e.at
	})
	sh.ageQ.compact(len(sh.live), func(e *cutEntry) bool {
		t := sh.live[e.id]
		return t != nil && t.firstAppend == e.at
	})
	return out, cut
}
