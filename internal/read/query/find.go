package query

import (
	"context"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// FindTraces returns up to limit traces that started within tr and satisfy match, newest
// first. It reads trace summaries first and opens only the traces it must test, in order, so a
// selective recent search stops early. It serves simple searches (Jaeger's API); TraceQL has its
// own engine.
//
// With a limit it holds summaries of the newest candidates only (Recent), twice as many each
// round while too few match: a 24-hour window costs what its newest traces do, not a summary of
// every trace in it (millions at a busy server). Without one it reads every summary in tr.
func (q *Querier) FindTraces(ctx context.Context, tr TimeRange, limit int, match func(*tracepb.TracesData) bool) ([]*tracepb.TracesData, error) {
	var out []*tracepb.TracesData
	tested := map[[16]byte]bool{}
	for n := limit; ; n *= 2 {
		var sums []TraceSummary
		var err error
		if limit > 0 {
			sums, err = q.Recent(ctx, tr, n)
		} else {
			sums, err = q.Summaries(ctx, tr, 0)
		}
		if err != nil {
			return nil, err
		}
		for _, s := range sums {
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
			if tested[s.ID] {
				continue
			}
			tested[s.ID] = true
			if err := ctx.Err(); err != nil {
				return out, err
			}
			td, err := q.FindTrace(ctx, s.ID, TimeRange{})
			if err != nil {
				return nil, err
			}
			if td != nil && match(td) {
				out = append(out, td)
			}
		}
		if limit <= 0 || len(out) >= limit || len(sums) < n {
			return out, nil // the window holds no more candidates
		}
	}
}
