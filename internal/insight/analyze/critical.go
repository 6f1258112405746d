package analyze

import (
	"fmt"
	"slices"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

const (
	kindUnspecified = tracepb.Span_SPAN_KIND_UNSPECIFIED
	kindInternal    = tracepb.Span_SPAN_KIND_INTERNAL
	kindServer      = tracepb.Span_SPAN_KIND_SERVER
	kindClient      = tracepb.Span_SPAN_KIND_CLIENT
	kindProducer    = tracepb.Span_SPAN_KIND_PRODUCER
	kindConsumer    = tracepb.Span_SPAN_KIND_CONSUMER
)

// Segment is one span on the critical path.
type Segment struct {
	SpanID  string
	Name    string
	Service string
	// Self is the time attributed to this span on the path: the parts of its
	// window in which no child on the path was running.
	Self time.Duration
	// Start and End bound the span's stretch of the path, after skew
	// correction.
	Start, End time.Time
	// Depth is 0 for the root.
	Depth int
}

// Adjustment records a remote subtree moved to undo clock skew.
type Adjustment struct {
	SpanID string
	// Shift is added to the subtree's times: positive moves it later.
	Shift  time.Duration
	Reason string
}

// Path is the critical path of a trace: the spans whose own time adds up
// to its end-to-end latency.
type Path struct {
	// Segments are in the order the path visits the spans, root first; the
	// Self times sum to Total.
	Segments    []Segment
	Total       time.Duration
	Adjustments []Adjustment
}

// CriticalPath returns the chain of spans that determined the trace's
// latency. It starts from the longest root (a trace with several roots is
// broken, and the longest one is what the user waited for) at its end and
// walks back: within a span, the child that ended last before the current
// point is on the path, and the time between that child's end and the
// current point is the span's own; then the walk continues from that child's
// start. Children still running at the current point were concurrent with
// the path and did not decide the latency, so a batch of concurrent children
// contributes only its slowest one.
//
// Remote children are first corrected for clock skew (see Tree.AdjustSkew).
func CriticalPath(td *tracepb.TracesData) Path {
	t := NewTree(td)
	adj := t.AdjustSkew()
	return criticalPath(t, adj)
}

func criticalPath(t *Tree, adj []Adjustment) Path {
	p := Path{Adjustments: adj}
	root := t.Root()
	if root == nil {
		return p
	}
	p.Total = root.Duration()
	self := map[*Span]time.Duration{}
	bounds := map[*Span][2]time.Time{}
	depth := map[*Span]int{}
	var order []*Span
	visit := func(s *Span, from, to time.Time) {
		if _, ok := bounds[s]; !ok {
			order = append(order, s)
			bounds[s] = [2]time.Time{from, to}
		}
		b := bounds[s]
		bounds[s] = [2]time.Time{minTime(b[0], from), maxTime(b[1], to)}
		if to.After(from) {
			self[s] += to.Sub(from)
		}
	}
	// floor keeps a child that starts before its parent (same-service, so
	// not skew) from adding time before the parent began.
	var walk func(s *Span, cur, floor time.Time, d int)
	walk = func(s *Span, cur, floor time.Time, d int) {
		depth[s] = d
		cur = minTime(cur, s.End)
		floor = maxTime(floor, s.Start)
		// Children by end, latest first; ties go to the earlier start, the
		// longer of the two.
		kids := slices.Clone(s.Children)
		slices.SortStableFunc(kids, func(a, b *Span) int {
			if c := b.End.Compare(a.End); c != 0 {
				return c
			}
			return byStart(a, b)
		})
		for _, c := range kids {
			if c.End.After(cur) || !c.End.After(floor) || c.End.Before(c.Start) {
				continue
			}
			visit(s, c.End, cur)
			walk(c, c.End, floor, d+1)
			cur = maxTime(c.Start, floor)
		}
		visit(s, floor, cur)
	}
	walk(root, root.End, root.Start, 0)

	for _, s := range order {
		b := bounds[s]
		p.Segments = append(p.Segments, Segment{
			SpanID: s.ID, Name: s.Name, Service: s.Service,
			Self: self[s], Start: b[0], End: b[1], Depth: depth[s],
		})
	}
	// The walk goes backwards in time; show the path forwards.
	slices.SortStableFunc(p.Segments, func(a, b Segment) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return a.Depth - b.Depth
	})
	return p
}

// AdjustSkew moves remote subtrees that clock skew placed outside their
// parent. A child is remote when its service differs from its parent's: its
// times come from another host's clock, while a same-service child shares
// its parent's clock and may legitimately outlive it (fire-and-forget work).
//
// A skewed child that fits in its parent is centred in the parent's window,
// which assumes the request and the response took equally long on the
// network; one longer than its parent cannot fit and is aligned to start
// with it instead. The whole subtree moves with the child, and the check
// repeats below it with the corrected times. It returns one Adjustment per
// moved subtree, in tree order.
//
// Messaging is left alone: a consumer legitimately runs after the producer
// span that sent its message has ended, so its position says nothing about
// clocks.
func (t *Tree) AdjustSkew() []Adjustment {
	var out []Adjustment
	var walk func(s *Span)
	walk = func(s *Span) {
		for _, c := range s.Children {
			if c.Service != s.Service && !async(s, c) && (c.Start.Before(s.Start) || c.End.After(s.End)) {
				shift, how := skewShift(s, c)
				if shift != 0 {
					descendants(c, func(d *Span) {
						d.Start, d.End = d.Start.Add(shift), d.End.Add(shift)
						d.Shift += shift
					})
					out = append(out, Adjustment{SpanID: c.ID, Shift: shift, Reason: fmt.Sprintf(
						"clock skew: %s span %q ran outside its %s parent %q; %s",
						c.Service, c.Name, s.Service, s.Name, how)})
				}
			}
			walk(c)
		}
	}
	for _, r := range t.Roots {
		walk(r)
	}
	for _, o := range t.Orphans {
		walk(o)
	}
	return out
}

func async(parent, child *Span) bool {
	return parent.Kind == kindProducer || child.Kind == kindConsumer
}

func skewShift(parent, child *Span) (time.Duration, string) {
	pd, cd := parent.Duration(), child.Duration()
	if cd > pd {
		return parent.Start.Sub(child.Start), "aligned its start with the parent's (it is longer than the parent)"
	}
	target := parent.Start.Add((pd - cd) / 2)
	return target.Sub(child.Start), "centred it in the parent's window"
}
