package head

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func testSpan(trace byte, id byte, parent bool, name string, code int32, start, end uint64) *otlpwire.Span {
	s := &otlpwire.Span{TraceID: bytes.Repeat([]byte{trace}, 16), SpanID: bytes.Repeat([]byte{id}, 8),
		Name: []byte(name), StatusCode: code, Start: start, End: end}
	if parent {
		s.ParentID = bytes.Repeat([]byte{9}, 8)
	}
	s.Raw = append([]byte(name), id)
	return s
}

func TestAppendGetCutRelease(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	h := New()
	h.now = c.now
	// Two requests' worth of groups with equal content in different buffers must intern to one.
	g1 := &otlpwire.Group{Resource: []byte("res-A"), Scope: []byte("scope"), ServiceName: []byte("task-api")}
	g2 := &otlpwire.Group{Resource: []byte("res-A"), Scope: []byte("scope"), ServiceName: []byte("task-api")}
	a := h.Appender(3)
	a.Append(g1, testSpan(1, 1, false, "root", 0, 100, 400))
	a.Append(g1, testSpan(1, 2, true, "child", otlpwire.StatusError, 150, 200))
	a.Append(g1, testSpan(2, 3, true, "other", 0, 10, 20))
	c.t = c.t.Add(3 * time.Second)
	a.Commit()
	b := h.Appender(5)
	b.Append(g2, testSpan(2, 4, true, "late", 0, 5, 30))
	b.Commit()

	if st := h.Stats(); st.Traces != 2 || st.Spans != 4 || st.Groups != 1 {
		t.Fatalf("stats %+v", st)
	}
	parts := h.Get([16]byte(bytes.Repeat([]byte{1}, 16)))
	if len(parts) != 1 {
		t.Fatalf("got %d parts", len(parts))
	}
	tr := parts[0]
	if tr.SpanCount != 2 || tr.ErrorCount != 1 || tr.Start != 100 || tr.End != 400 || tr.RootName != "root" || tr.RootService != "task-api" {
		t.Fatalf("summary %+v", tr)
	}
	var raws []string
	tr.Spans(func(g *otlpwire.Group, raw []byte) {
		if string(g.Resource) != "res-A" {
			t.Errorf("group %q", g.Resource)
		}
		raws = append(raws, string(raw))
	})
	if len(raws) != 2 || raws[0] != "root\x01" || raws[1] != "child\x02" {
		t.Fatalf("raws %q", raws)
	}
	if seq, ok := h.MinSegment(); !ok || seq != 3 {
		t.Fatalf("MinSegment = %d %v", seq, ok)
	}

	// Trace 1 has been idle 3s, trace 2 was just appended to.
	cut := h.Cut(CutPolicy{Idle: 2 * time.Second})
	if len(cut) != 1 || cut[0].ID[0] != 1 {
		t.Fatalf("cut %d traces", len(cut))
	}
	// Cut traces stay readable until released.
	if len(h.Get(cut[0].ID)) != 1 {
		t.Fatal("cut trace not readable")
	}
	// A late span for a cut trace starts a new live entry; readers see both parts.
	late := h.Appender(6)
	late.Append(g1, testSpan(1, 5, true, "straggler", 0, 500, 600))
	late.Commit()
	if got := len(h.Get(cut[0].ID)); got != 2 {
		t.Fatalf("parts after late span = %d", got)
	}
	h.Release(cut)
	if got := len(h.Get(cut[0].ID)); got != 1 {
		t.Fatalf("parts after release = %d", got)
	}
	if seq, _ := h.MinSegment(); seq != 3 { // trace 2 began in segment 3
		t.Fatalf("MinSegment after release = %d, want 3", seq)
	}
	all := h.Cut(CutPolicy{All: true})
	h.Release(all)
	if st := h.Stats(); st.Traces != 0 || st.Spans != 0 || st.Bytes != 0 {
		t.Fatalf("after releasing everything: %+v", st)
	}
	if _, ok := h.MinSegment(); ok {
		t.Fatal("empty head has a min segment")
	}
}

func TestCutOverBudgetTakesOldest(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	h := New()
	h.now = c.now
	g := &otlpwire.Group{Resource: []byte("r")}
	for i := byte(1); i <= 10; i++ {
		c.t = c.t.Add(time.Millisecond)
		a := h.Appender(1)
		a.Append(g, testSpan(i, i, false, "s", 0, 1, 2))
		a.Commit()
	}
	per := h.Bytes() / 10
	cut := h.Cut(CutPolicy{Idle: time.Hour, MaxBytes: per * 7})
	if len(cut) != 3 {
		t.Fatalf("cut %d traces, want the 3 oldest", len(cut))
	}
	for _, tr := range cut {
		if tr.ID[0] > 3 {
			t.Fatalf("cut trace %d, not among the oldest", tr.ID[0])
		}
	}
}

// Many senders appending to one trace at once: the counters must match what the head holds, and
// return to zero once everything is cut and released. Before the fix, Commit measured the
// trace's buffer after unlocking and counted other senders' bytes as its own.
func TestCountersExactUnderConcurrentAppendsToOneTrace(t *testing.T) {
	h := New()
	g := &otlpwire.Group{Resource: []byte("res"), Scope: []byte("scope"), ServiceName: []byte("svc")}
	const senders, requests, perRequest = 16, 200, 5
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < requests; r++ {
				a := h.Appender(uint64(r + 1))
				for i := 0; i < perRequest; i++ {
					a.Append(g, testSpan(7, byte(i), true, "span", 0, 10, 20))
				}
				a.Commit()
			}
		}()
	}
	// Cut while appending, too, so that live entries come and go under the senders.
	stop := make(chan struct{})
	cutDone := make(chan struct{})
	go func() {
		defer close(cutDone)
		for {
			select {
			case <-stop:
				return
			default:
				h.Release(h.Cut(CutPolicy{All: true}))
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-cutDone

	var held, spans int64
	h.Each(func(tr *Trace) bool {
		held += int64(tr.Bytes())
		spans += int64(tr.SpanCount)
		return true
	})
	if st := h.Stats(); st.Bytes != held || st.Spans != spans {
		t.Fatalf("counters %+v, head holds %d bytes in %d spans", st, held, spans)
	}
	h.Release(h.Cut(CutPolicy{All: true}))
	if st := h.Stats(); st.Bytes != 0 || st.Spans != 0 || st.Traces != 0 {
		t.Fatalf("after flushing everything the counters are %+v, want zero", st)
	}
}

// TestSplitMarks checks how the head learns that a live trace has parts elsewhere: at once when
// an earlier part is still waiting for its block, and from CheckSplits otherwise.
func TestSplitMarks(t *testing.T) {
	h := New()
	g := &otlpwire.Group{Resource: []byte("r")}
	add := func(trace, id byte) {
		a := h.Appender(1)
		a.Append(g, testSpan(trace, id, id > 1, "s", 0, 10, 20))
		a.Commit()
	}
	live := func(trace byte) *Trace {
		for _, tr := range h.Get([16]byte(bytes.Repeat([]byte{trace}, 16))) {
			if tr.SpanCount == 1 && tr.firstSeq == 1 {
				return tr
			}
		}
		t.Fatalf("trace %d has no live part", trace)
		return nil
	}
	add(1, 1)
	add(2, 1)
	cut := h.Cut(CutPolicy{All: true})
	// Trace 1's first part waits for its block: its late span starts a part marked split.
	add(1, 2)
	if tr := h.Get([16]byte(bytes.Repeat([]byte{1}, 16)))[0]; !tr.Split || !tr.SplitChecked {
		t.Fatalf("late part while flushing: split %v checked %v", tr.Split, tr.SplitChecked)
	}
	h.Release(cut)
	// Trace 2's first part is gone to a block; trace 3 is new.
	add(2, 2)
	add(3, 1)
	if tr := live(2); tr.Split || tr.SplitChecked {
		t.Fatalf("before CheckSplits: split %v checked %v", tr.Split, tr.SplitChecked)
	}
	var asked []byte
	h.CheckSplits(func(ids [][16]byte, found []bool) {
		for i, id := range ids {
			asked = append(asked, id[0])
			found[i] = id[0] == 2
		}
	})
	slices.Sort(asked)
	if asked = slices.Compact(asked); !slices.Equal(asked, []byte{1, 2, 3}) {
		t.Fatalf("CheckSplits asked about %v, want every trace begun since the last call (1, 2, 3)", asked)
	}
	if tr := live(2); !tr.Split || !tr.SplitChecked {
		t.Fatalf("trace 2 after CheckSplits: split %v checked %v", tr.Split, tr.SplitChecked)
	}
	if tr := live(3); tr.Split || !tr.SplitChecked {
		t.Fatalf("trace 3 after CheckSplits: split %v checked %v", tr.Split, tr.SplitChecked)
	}
	h.CheckSplits(func(ids [][16]byte, _ []bool) { t.Fatalf("asked again about %x", ids) })
}

// A reader of the whole head runs its callback outside the shard locks, so ingest can append
// to the very trace being read meanwhile (under a held lock this would deadlock), and what the
// reader was handed stays as it was when read.
func TestReadersDoNotHoldShardLocks(t *testing.T) {
	h := New()
	g := &otlpwire.Group{Resource: []byte("res"), ServiceName: []byte("svc")}
	a := h.Appender(1)
	a.Append(g, testSpan(1, 1, false, "root", 0, 1e9, 2e9))
	a.Commit()
	next := byte(2)
	appendOne := func() {
		a := h.Appender(1)
		a.Append(g, testSpan(1, next, true, "child", 0, 1e9, 2e9))
		a.Commit()
		next++
	}
	h.Each(func(tr *Trace) bool {
		before := tr.SpanCount
		appendOne()
		n := 0
		tr.Spans(func(*otlpwire.Group, []byte) { n++ })
		if tr.SpanCount != before || n != before {
			t.Errorf("snapshot changed under the reader: %d spans, %d read, %d before", tr.SpanCount, n, before)
		}
		return true
	})
	h.EachSummary(func(*Summary) { appendOne() })
	h.SummariesAt(1, func(*Summary) { appendOne() })
	h.SplitSummaries(func(*Summary) { appendOne() })
	if got := h.SpanCount([16]byte(bytes.Repeat([]byte{1}, 16))); got != int(next)-1 {
		t.Fatalf("trace has %d spans, want %d", got, next-1)
	}
}

// Cut reads its queues instead of walking the head: whatever the order of appends (stamped
// when their request began, so commits may come out of order) and cuts, every trace it takes
// is due, and no trace stays live once due by more than the stamps' spread.
func TestCutByQueuesTakesWhatAWalkWould(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	h := New()
	h.now = c.now
	g := &otlpwire.Group{Resource: []byte("r")}
	r := rand.New(rand.NewPCG(1, 2))
	p := CutPolicy{Idle: 5 * time.Second, MaxAge: 20 * time.Second}
	for step := range 3000 {
		var held []*Appender
		for range 1 + r.IntN(4) {
			a := h.Appender(1)
			for range 1 + r.IntN(3) {
				a.Append(g, testSpan(byte(r.IntN(256)), byte(step), true, "s", 0, 1, 2))
			}
			held = append(held, a)
			c.t = c.t.Add(time.Duration(r.IntN(400)) * time.Millisecond)
		}
		for _, i := range r.Perm(len(held)) {
			held[i].Commit()
		}
		if step%7 != 0 {
			continue
		}
		now := c.t.UnixNano()
		due := func(tr *Trace, late time.Duration) bool {
			return tr.lastAppend <= now-int64(p.Idle+late) || tr.firstAppend <= now-int64(p.MaxAge+late)
		}
		cut := h.Cut(p)
		for _, tr := range cut {
			if !due(tr, 0) {
				t.Fatalf("step %d: cut a trace that was not due", step)
			}
		}
		// A trace whose entry sits behind a later-stamped one of its shard may wait for the
		// next Cut, by no more than the spread of the stamps (1.2 s here).
		for i := range h.shards {
			for _, tr := range h.shards[i].live {
				if due(tr, 1200*time.Millisecond) {
					t.Fatalf("step %d: a due trace stayed live", step)
				}
			}
		}
		h.Release(cut)
		if step%35 == 0 {
			// Over the budget, a few ticks bring the live bytes under it.
			target := h.liveBytes() / 2
			for range 3 {
				h.Release(h.Cut(CutPolicy{Idle: time.Hour, MaxBytes: target}))
			}
			if lb := h.liveBytes(); lb > target {
				t.Fatalf("step %d: %d live bytes after three cuts to %d", step, lb, target)
			}
		}
	}
}
