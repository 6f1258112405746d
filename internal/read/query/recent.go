package query

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
)

// Recent returns the summaries of up to n traces that started last within tr, newest first.
// Unlike Summaries it holds about 2n summaries whatever the window, and reads blocks newest
// first, stopping at the first block whose traces all started before the n it has: a report over
// "the last 30 days" costs what one over the last minutes does. A trace split across blocks is
// reported once; its span counts may miss a part in a block it did not need to read.
func (q *Querier) Recent(ctx context.Context, tr TimeRange, n int) ([]TraceSummary, error) {
	if n <= 0 {
		return nil, fmt.Errorf("query: Recent needs a positive count, got %d", n)
	}
	byID := map[[16]byte]*TraceSummary{}
	var oldest time.Time // start of the oldest summary kept once n are held
	inRange := func(start time.Time) bool {
		return (tr.Start.IsZero() || !start.Before(tr.Start)) && (tr.End.IsZero() || !start.After(tr.End))
	}
	prune := func() {
		all := make([]*TraceSummary, 0, len(byID))
		for _, s := range byID {
			all = append(all, s)
		}
		slices.SortFunc(all, func(a, b *TraceSummary) int { return b.Start.Compare(a.Start) })
		for _, s := range all[n:] {
			delete(byID, s.ID)
		}
		oldest = all[n-1].Start
	}
	add := func(s TraceSummary) {
		if !inRange(s.Start) || (len(byID) >= n && s.Start.Before(oldest)) {
			return
		}
		if old, ok := byID[s.ID]; ok {
			mergeSummary(old, s)
			return
		}
		byID[s.ID] = &s
		if len(byID) >= 2*n {
			prune()
		}
	}
	q.src.Head().Each(func(t *head.Trace) bool {
		add(TraceSummary{ID: t.ID, Start: time.Unix(0, int64(t.Start)), Duration: time.Duration(t.End - t.Start),
			RootService: t.RootService, RootName: t.RootName, SpanCount: t.SpanCount, ErrorCount: t.ErrorCount})
		return true
	})
	held, release := q.src.AcquireBlocks()
	defer release()
	blocks := slices.Clone(held)
	slices.SortFunc(blocks, func(a, b *block.Reader) int { return cmp.Compare(b.Meta().MaxEnd, a.Meta().MaxEnd) })
	for _, b := range blocks {
		meta := b.Meta()
		if !tr.overlaps(meta.MinStart, meta.MaxEnd) {
			continue
		}
		if len(byID) >= n {
			prune()
			if meta.MaxEnd < oldest.UnixNano() {
				break // this block's traces, and every older block's, started before all we hold
			}
		}
		err := b.Traces(ctx, func(s *block.TraceSummary) bool {
			add(TraceSummary{ID: s.ID, Start: time.Unix(0, s.StartUnixNano), Duration: time.Duration(s.DurationNano),
				RootService: s.RootService, RootName: s.RootName, SpanCount: int(s.SpanCount), ErrorCount: int(s.ErrorCount)})
			return ctx.Err() == nil
		})
		if err != nil {
			return nil, fmt.Errorf("query: block %s summaries: %w", meta.ID, err)
		}
	}
	if len(byID) > n {
		prune()
	}
	out := make([]TraceSummary, 0, len(byID))
	for _, s := range byID {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b TraceSummary) int { return b.Start.Compare(a.Start) })
	return out, ctx.Err()
}

// mergeSummary folds another part of the same trace into old.
func mergeSummary(old *TraceSummary, s TraceSummary) {
	end := old.Start.Add(old.Duration)
	if e := s.Start.Add(s.Duration); e.After(end) {
		end = e
	}
	if s.Start.Before(old.Start) {
		old.Start = s.Start
	}
	old.Duration = end.Sub(old.Start)
	old.SpanCount += s.SpanCount
	old.ErrorCount += s.ErrorCount
	if old.RootName == "" {
		old.RootName, old.RootService = s.RootName, s.RootService
	}
}
