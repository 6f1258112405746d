package analyze

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// PathDelta compares one span path present in both traces.
type PathDelta struct {
	Path string
	// A and B are the span's durations in each trace; Delta is B-A.
	A, B, Delta time.Duration
	// SelfA and SelfB are the span's self times; SelfDelta is SelfB-SelfA.
	SelfA, SelfB, SelfDelta time.Duration
	SpanA, SpanB            string // span IDs
}

// DiffResult compares two traces of the same operation.
type DiffResult struct {
	TotalA, TotalB time.Duration
	// Added paths are only in b, Missing ones only in a, in tree order.
	Added, Missing []string
	// Changed holds every path present in both, the largest change first.
	Changed []PathDelta
}

// Diff matches the spans of a and b by their path of names from the root,
// e.g. "POST /api/tasks/motor_task_repository.add/pymongo.insert_one".
// Siblings sharing a name are told apart by start order, shown as name[i]
// (i from 0), so the third call of a loop matches the third call.
//
// Changes are sorted by the absolute change in self time, then in
// duration: a span that slowed down makes every ancestor slower by as much,
// so durations tie along the whole chain while self time pins the span
// where the time went.
func Diff(a, b *tracepb.TracesData) DiffResult {
	ta, tb := NewTree(a), NewTree(b)
	ta.AdjustSkew()
	tb.AdjustSkew()
	pa, pb := spanPaths(ta), spanPaths(tb)
	r := DiffResult{}
	if root := ta.Root(); root != nil {
		r.TotalA = root.Duration()
	}
	if root := tb.Root(); root != nil {
		r.TotalB = root.Duration()
	}
	for _, p := range pa.order {
		sa := pa.spans[p]
		sb, ok := pb.spans[p]
		if !ok {
			r.Missing = append(r.Missing, pa.display[p])
			continue
		}
		r.Changed = append(r.Changed, PathDelta{
			Path: pa.display[p], SpanA: sa.ID, SpanB: sb.ID,
			A: sa.Duration(), B: sb.Duration(), Delta: sb.Duration() - sa.Duration(),
			SelfA: sa.SelfTime(), SelfB: sb.SelfTime(), SelfDelta: sb.SelfTime() - sa.SelfTime(),
		})
	}
	for _, p := range pb.order {
		if _, ok := pa.spans[p]; !ok {
			r.Added = append(r.Added, pb.display[p])
		}
	}
	abs := func(d time.Duration) time.Duration { return max(d, -d) }
	slices.SortStableFunc(r.Changed, func(x, y PathDelta) int {
		return cmp.Or(cmp.Compare(abs(y.SelfDelta), abs(x.SelfDelta)),
			cmp.Compare(abs(y.Delta), abs(x.Delta)), strings.Compare(x.Path, y.Path))
	})
	return r
}

type pathIndex struct {
	// Keys join always-indexed names with a byte no name contains, so a
	// "/" inside a name ("POST /api/tasks") cannot make two paths collide.
	spans   map[string]*Span
	display map[string]string
	order   []string
}

// spanPaths names every span by its path from its root; orphans start
// paths of their own, marked as such.
func spanPaths(t *Tree) pathIndex {
	ix := pathIndex{spans: map[string]*Span{}, display: map[string]string{}}
	var walk func(level []*Span, key, shown string)
	walk = func(level []*Span, key, shown string) {
		count := map[string]int{}
		for _, s := range level {
			count[s.Name]++
		}
		seen := map[string]int{}
		for _, s := range level {
			i := seen[s.Name]
			seen[s.Name]++
			k := key + "\x00" + fmt.Sprintf("%s[%d]", s.Name, i)
			name := s.Name
			if count[s.Name] > 1 {
				name = fmt.Sprintf("%s[%d]", s.Name, i)
			}
			d := name
			if shown != "" {
				d = shown + "/" + name
			}
			ix.spans[k], ix.display[k] = s, d
			ix.order = append(ix.order, k)
			walk(s.Children, k, d)
		}
	}
	roots := slices.Clone(t.Roots)
	slices.SortStableFunc(roots, byStart)
	walk(roots, "", "")
	if len(t.Orphans) > 0 {
		walk(t.Orphans, "\x00(orphans)", "(orphan)")
	}
	return ix
}
