package query

import (
	"context"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/storage/partial"
)

// Remote holds parts of traces outside this process: on a query node, the ingest nodes' heads
// and not yet uploaded blocks.
type Remote interface {
	FindTrace(ctx context.Context, id [16]byte) ([]*tracepb.ResourceSpans, error)
}

// SetRemote makes trace by ID also ask r, merging its parts with the local ones.
func (q *Querier) SetRemote(r Remote) { q.remote = r }

// notePartial records err in ctx's partial report and reports whether the caller accepts
// partial answers (it gave a report: the HTTP API does); false means err fails the query. With
// object storage a block in an unreachable bucket, or an ingest node that does not answer, then
// leaves the answer incomplete and flagged rather than failed.
func notePartial(ctx context.Context, err error) bool {
	if partial.From(ctx) == nil || ctx.Err() != nil {
		return false
	}
	partial.Note(ctx, err.Error())
	return true
}

// staleSource is a Source that knows when its view of the blocks may be out of date (a query
// node that could not poll the bucket).
type staleSource interface{ Stale() error }

// NoteStale records in ctx's partial report that the source's block list could not be
// refreshed.
func (q *Querier) NoteStale(ctx context.Context) {
	if s, ok := q.src.(staleSource); ok {
		if err := s.Stale(); err != nil {
			partial.Note(ctx, "the block list could not be refreshed: "+err.Error())
		}
	}
}
