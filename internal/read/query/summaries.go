package query

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
)

// TraceSummary is what search shows for a trace before opening it.
type TraceSummary struct {
	ID          [16]byte
	Start       time.Time
	Duration    time.Duration
	RootService string
	RootName    string
	SpanCount   int
	ErrorCount  int
}

// Summaries returns the summaries of traces that started within tr, newest first, at most limit
// of them (0: no limit). A trace with parts in the head and in blocks appears once, with its
// parts' counts added and its time span widened to cover them all.
func (q *Querier) Summaries(ctx context.Context, tr TimeRange, limit int) ([]TraceSummary, error) {
	byID := map[[16]byte]*TraceSummary{}
	add := func(s TraceSummary) {
		if old, ok := byID[s.ID]; ok {
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
			return
		}
		byID[s.ID] = &s
	}
	inRange := func(start time.Time) bool {
		return (tr.Start.IsZero() || !start.Before(tr.Start)) && (tr.End.IsZero() || !start.After(tr.End))
	}
	q.src.Head().Each(func(t *head.Trace) bool {
		start := time.Unix(0, int64(t.Start))
		if inRange(start) {
			add(TraceSummary{ID: t.ID, Start: start, Duration: time.Duration(t.End - t.Start), RootService: t.RootService,
				RootName: t.RootName, SpanCount: t.SpanCount, ErrorCount: t.ErrorCount})
		}
		return true
	})
	blocks, release := q.src.AcquireBlocks()
	defer release()
	for _, b := range blocks {
		meta := b.Meta()
		if !tr.overlaps(meta.MinStart, meta.MaxEnd) {
			continue
		}
		err := b.Traces(ctx, func(s *block.TraceSummary) bool {
			start := time.Unix(0, s.StartUnixNano)
			if inRange(start) {
				add(TraceSummary{ID: s.ID, Start: start, Duration: time.Duration(s.DurationNano), RootService: s.RootService,
					RootName: s.RootName, SpanCount: int(s.SpanCount), ErrorCount: int(s.ErrorCount)})
			}
			return ctx.Err() == nil
		})
		if block.SkipDamaged(ctx, err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("query: block %s summaries: %w", meta.ID, err)
		}
	}
	out := make([]TraceSummary, 0, len(byID))
	for _, s := range byID {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, ctx.Err()
}
