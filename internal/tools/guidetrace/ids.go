package guidetrace

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
)

// IDGenerator is an sdktrace.IDGenerator that hands out the IDs planned with
// ContextWithIDs, so traces emitted through the real SDK carry the same IDs on
// every run. Spans started without a plan get IDs from a counter; those are
// only reproducible when spans start in a fixed order.
//
// The zero value is ready to use and safe for concurrent use.
type IDGenerator struct {
	mu   sync.Mutex
	next uint64
}

// plan is consumed by the first span that reads it: the context returned by
// Tracer.Start still holds the plan, and without the flag every child started
// from that context would reuse its parent's span ID.
type plan struct {
	traceID trace.TraceID
	spanID  trace.SpanID
	used    atomic.Bool
}

type planKey struct{}

// ContextWithIDs returns a context that makes the next span started from it by
// a provider using IDGenerator get spanID, and traceID too if it is a root
// span. A zero traceID leaves a root's trace ID to the counter.
func ContextWithIDs(ctx context.Context, traceID trace.TraceID, spanID trace.SpanID) context.Context {
	return context.WithValue(ctx, planKey{}, &plan{traceID: traceID, spanID: spanID})
}

func takePlan(ctx context.Context) (*plan, bool) {
	p, ok := ctx.Value(planKey{}).(*plan)
	if !ok || !p.used.CompareAndSwap(false, true) {
		return nil, false
	}
	return p, true
}

// NewIDs implements sdktrace.IDGenerator.
func (g *IDGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	p, ok := takePlan(ctx)
	var tid trace.TraceID
	var sid trace.SpanID
	if ok {
		tid, sid = p.traceID, p.spanID
	}
	if !tid.IsValid() {
		tid = g.counterTraceID()
	}
	if !sid.IsValid() {
		sid = g.counterSpanID()
	}
	return tid, sid
}

// NewSpanID implements sdktrace.IDGenerator.
func (g *IDGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if p, ok := takePlan(ctx); ok && p.spanID.IsValid() {
		return p.spanID
	}
	return g.counterSpanID()
}

func (g *IDGenerator) count() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.next++
	return g.next
}

// The fixed prefix keeps counter IDs visibly apart from the planned guide IDs.
func (g *IDGenerator) counterTraceID() trace.TraceID {
	var tid trace.TraceID
	copy(tid[:8], "ariadne\x00")
	binary.BigEndian.PutUint64(tid[8:], g.count())
	return tid
}

func (g *IDGenerator) counterSpanID() trace.SpanID {
	var sid trace.SpanID
	binary.BigEndian.PutUint64(sid[:], g.count())
	return sid
}
