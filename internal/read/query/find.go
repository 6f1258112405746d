package query

import (
	"context"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// FindTraces returns up to limit traces that started within tr and satisfy match, newest
// first. It reads trace summaries first and opens only the traces it must test, in order, so a
// selective recent search stops early. It serves simple searches (Jaeger's API); TraceQL has its
// own engine.
func (q *Querier) FindTraces(ctx context.Context, tr TimeRange, limit int, match func(*tracepb.TracesData) bool) ([]*tracepb.TracesData, error) {
	sums, err := q.Summaries(ctx, tr, 0)
	if err != nil {
		return nil, err
	}
	var out []*tracepb.TracesData
	for _, s := range sums {
		if limit > 0 && len(out) >= limit {
			break
		}
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
	return out, nil
}
