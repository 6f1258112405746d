package search

import (
	"cmp"
	"container/heap"
	"math"
	"sort"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
)

// headFilter is what a plan asks of a head trace's summary before the trace is decoded: the
// head's index (see head/index.go) answers it from a few words per trace.
type headFilter struct {
	// none: the head's value lists show that no trace of it can match.
	none bool
	sig  head.Signature
	// minSpans and minDur come from count() > n and duration conditions: a trace with fewer
	// spans, or shorter, cannot match.
	minSpans int
	minDur   int64
}

func newHeadFilter(h *head.Head, p *plan) headFilter {
	f := headFilter{minSpans: p.minSpans, minDur: p.minTraceDur}
	if f.minSpans > 0 && h.MaxSpans() < f.minSpans {
		f.none = true // no trace has spans enough for the count() filter
	}
	for _, c := range p.required {
		if c.Op != traceql.OpEq {
			continue
		}
		switch fld := c.Field.(type) {
		case traceql.Intrinsic:
			if fld == traceql.IntrinsicName && c.Value.Type == traceql.TypeString {
				f.sig.AddName(c.Value.Str)
			}
		case traceql.Attribute:
			if fld.Scope != traceql.ScopeSpan {
				continue
			}
			switch v := c.Value; v.Type {
			case traceql.TypeString:
				f.sig.AddString(fld.Name, v.Str)
			case traceql.TypeInt:
				f.sig.AddNumber(fld.Name, float64(v.Int))
			case traceql.TypeFloat:
				f.sig.AddNumber(fld.Name, v.Float)
			case traceql.TypeBool:
				f.sig.AddBool(fld.Name, v.Bool)
			default:
				continue
			}
			keys := eqValueKeys(c.Value)
			if keys == nil {
				continue
			}
			if !h.HasSpanAttributeValue(fld.Name, keys...) {
				f.none = true
			}
		}
	}
	return f
}

func (f *headFilter) mayMatch(s *head.Summary) bool {
	return s.SpanCount >= f.minSpans && int64(s.End-s.Start) >= f.minDur && s.Signature.Has(f.sig)
}

// minSpansOf is the fewest spans a trace needs to pass the query's count() filters: a spanset
// never has more spans than its trace.
func minSpansOf(q *traceql.Query) int {
	n := 0
	for _, st := range q.Stages {
		sf, ok := st.(*traceql.ScalarFilter)
		if !ok || sf.Agg.Func != traceql.AggCount {
			continue
		}
		var v float64
		switch sf.Value.Type {
		case traceql.TypeInt:
			v = float64(sf.Value.Int)
		case traceql.TypeFloat:
			v = sf.Value.Float
		default:
			continue
		}
		switch sf.Op {
		case traceql.OpGt:
			n = max(n, int(math.Floor(v))+1)
		case traceql.OpGte, traceql.OpEq:
			n = max(n, int(math.Ceil(v)))
		}
	}
	return n
}

// headCandidate is a head trace that passed its filter, to be decoded newest first.
type headCandidate struct {
	id    [16]byte
	start int64
}

// newestFirst is a max-heap of candidates by start: heapifying all and popping the few a limit
// needs is linear, where sorting every head trace is not.
type newestFirst []headCandidate

func (h newestFirst) Len() int { return len(h) }
func (h newestFirst) Less(i, j int) bool {
	return cmp.Or(cmp.Compare(h[j].start, h[i].start), compareID(h[i].id, h[j].id)) < 0
}
func (h newestFirst) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *newestFirst) Push(x any)   { *h = append(*h, x.(headCandidate)) }
func (h *newestFirst) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func compareID(a, b [16]byte) int {
	for i := range a {
		if c := cmp.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

// headCandidates returns the head traces in the window that the filter lets through, as a heap
// to pop newest first, and, whatever the filter and window, the traces that have or may have
// parts in blocks, for judgeSplit (without their spans, which it reads itself).
func headCandidates(h *head.Head, f headFilter, minStart, maxStart int64) (*newestFirst, []*headPart) {
	out := newestFirst{}
	var split []*headPart
	h.EachSummary(func(s *head.Summary) {
		start := int64(s.Start)
		if s.Split || s.Unchecked {
			split = append(split, &headPart{id: s.ID, start: s.Start, end: s.End, split: s.Split, unchecked: s.Unchecked})
		}
		if f.none || (minStart != 0 && start < minStart) || (maxStart != 0 && start > maxStart) || !f.mayMatch(s) {
			return
		}
		out = append(out, headCandidate{s.ID, start})
	})
	heap.Init(&out)
	return &out, split
}

// headLoader yields the head traces that pass a filter, newest first, reading the head's
// start lists (head.StartSeconds) a second at a time, only as far back as the caller goes: a
// trace listed under second s started before s+1, so once the newest candidate held started
// at or after the next second's end, nothing unread can come before it.
type headLoader struct {
	h                  *head.Head
	f                  headFilter
	minStart, maxStart int64
	seconds            []int64
	next               int // index into seconds of the next to read
	cands              newestFirst
	seen               map[[16]byte]bool
}

func newHeadLoader(h *head.Head, f headFilter, minStart, maxStart int64) *headLoader {
	l := &headLoader{h: h, f: f, minStart: minStart, maxStart: maxStart, seen: map[[16]byte]bool{}}
	if !f.none {
		l.seconds = h.StartSeconds()
		if maxStart != 0 {
			// A trace is listed under the second of its start: later seconds hold none that
			// start in the window.
			last := maxStart / 1e9
			l.next = sort.Search(len(l.seconds), func(i int) bool { return l.seconds[i] <= last })
		}
	}
	return l
}

// bound is an upper bound (exclusive) of the start of every trace not read yet.
func (l *headLoader) bound() int64 {
	if l.next == len(l.seconds) {
		return math.MinInt64
	}
	return (l.seconds[l.next] + 1) * 1e9
}

// peek returns the newest candidate left, reading seconds until it is known to be newest.
func (l *headLoader) peek() (headCandidate, bool) {
	for l.next < len(l.seconds) && (l.cands.Len() == 0 || l.cands[0].start < l.bound()) {
		if l.minStart != 0 && l.bound() <= l.minStart {
			l.next = len(l.seconds) // every trace left started before the window
			break
		}
		s := l.seconds[l.next]
		l.next++
		l.h.SummariesAt(s, func(sm *head.Summary) {
			start := int64(sm.Start)
			// A trace is listed under the second of its start, and perhaps later ones it
			// started in before earlier spans came: it is taken at its start's second only.
			if int64(sm.Start/1e9) != s {
				return
			}
			if (l.minStart != 0 && start < l.minStart) || (l.maxStart != 0 && start > l.maxStart) || !l.f.mayMatch(sm) {
				return
			}
			// Its start may still move to an earlier second while the search reads: seen keeps
			// it from being taken twice.
			if l.seen[sm.ID] {
				return
			}
			l.seen[sm.ID] = true
			heap.Push(&l.cands, headCandidate{sm.ID, start})
		})
	}
	if l.cands.Len() == 0 {
		return headCandidate{}, false
	}
	return l.cands[0], true
}

func (l *headLoader) pop() headCandidate { return heap.Pop(&l.cands).(headCandidate) }

// headSplitParts lists the head's traces that have or may have parts elsewhere, for judgeSplit.
func headSplitParts(h *head.Head) []*headPart {
	var out []*headPart
	h.SplitSummaries(func(s *head.Summary) {
		out = append(out, &headPart{id: s.ID, start: s.Start, end: s.End, split: s.Split, unchecked: s.Unchecked})
	})
	return out
}
