// Package blocktest writes blocks of synthetic traces for tests of the packages that store,
// move and read blocks (cache, compactor, bucket polling).
package blocktest

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// SpansPerTrace is how many spans each synthetic trace has.
const SpansPerTrace = 10

// Write stores n traces (seed makes their IDs distinct from other blocks') whose spans start
// at start, as a block created at created (time.Now when zero), and returns its meta and the
// trace IDs.
func Write(t testing.TB, st objstore.Store, n int, seed uint64, start, created time.Time) (block.Meta, [][16]byte) {
	t.Helper()
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "blocktest"}}
	var ids [][16]byte
	base := uint64(start.UnixNano())
	for i := 0; i < n; i++ {
		var tid [16]byte
		binary.BigEndian.PutUint64(tid[:8], seed*0x9E3779B97F4A7C15+1)
		binary.BigEndian.PutUint64(tid[8:], uint64(i)*0x9E3779B97F4A7C15+1)
		ids = append(ids, tid)
		for s := 0; s < SpansPerTrace; s++ {
			sid := make([]byte, 8)
			binary.BigEndian.PutUint64(sid, seed<<32|uint64(i*SpansPerTrace+s+1))
			at := base + uint64(i*1000+s)
			ss.Spans = append(ss.Spans, &tracepb.Span{TraceId: tid[:], SpanId: sid, Name: fmt.Sprintf("op-%d", s),
				StartTimeUnixNano: at, EndTimeUnixNano: at + 1000,
				Attributes: []*commonpb.KeyValue{{Key: "k", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(i)}}}}})
		}
	}
	req, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "svc"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{ss}}}})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[[16]byte]*block.Trace{}
	err = otlpwire.ScanRequest(req, func(g *otlpwire.Group, sp *otlpwire.Span) error {
		id := [16]byte(sp.TraceID)
		if byID[id] == nil {
			byID[id] = &block.Trace{ID: id}
		}
		gc := *g
		byID[id].Spans = append(byID[id].Spans, block.Span{Group: &gc, Raw: append([]byte(nil), sp.Raw...)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	traces := make([]block.Trace, 0, n)
	for _, id := range ids {
		traces = append(traces, *byID[id])
	}
	meta, err := block.Write(context.Background(), st, traces, block.WriteOptions{Now: created})
	if err != nil {
		t.Fatal(err)
	}
	return meta, ids
}

// SpanIDs returns the span IDs in rss, as hex, in order.
func SpanIDs(rss []*tracepb.ResourceSpans) []string {
	var out []string
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				out = append(out, fmt.Sprintf("%x", sp.SpanId))
			}
		}
	}
	return out
}
