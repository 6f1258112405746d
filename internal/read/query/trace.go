// Package query reads traces from the store: the head and the blocks together.
package query

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
)

// Source is what the querier reads: the store's head and blocks.
type Source interface {
	Head() *head.Head
	// AcquireBlocks returns the blocks, held open until release is called.
	AcquireBlocks() (blocks []*block.Reader, release func())
}

// Querier answers trace queries.
type Querier struct {
	src    Source
	remote Remote // other nodes' parts of traces; nil on a single node
}

// New returns a Querier over src.
func New(src Source) *Querier { return &Querier{src: src} }

// TimeRange narrows which blocks are read. Zero bounds are open.
type TimeRange struct {
	Start, End time.Time
}

func (r TimeRange) overlaps(minStart, maxEnd int64) bool {
	if !r.Start.IsZero() && maxEnd < r.Start.UnixNano() {
		return false
	}
	if !r.End.IsZero() && minStart > r.End.UnixNano() {
		return false
	}
	return true
}

// FindTrace returns the trace with the given ID, merged from the head and every block holding a
// part of it, or nil when no part is found. Spans present twice (a sender's retry, a WAL replayed
// after a crash) appear once. It is FindTraceWire's walk with the spans decoded at the end, so
// both answers see the same parts, merged and ordered the same way.
func (q *Querier) FindTrace(ctx context.Context, id [16]byte, tr TimeRange) (*tracepb.TracesData, error) {
	wt, err := q.FindTraceWire(ctx, id, tr, 0)
	if err != nil || wt == nil {
		return nil, err
	}
	return wt.Decode()
}

var detMarshal = proto.MarshalOptions{Deterministic: true}
