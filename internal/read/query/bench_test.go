package query

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

type benchSource struct {
	h      *head.Head
	blocks []*block.Reader
}

func (s *benchSource) Head() *head.Head                         { return s.h }
func (s *benchSource) AcquireBlocks() ([]*block.Reader, func()) { return s.blocks, func() {} }

// buildStore writes spans small-profile spans (10-span traces, two attributes each) into blocks of
// 130,000 spans, the size the store cuts under load, and returns the source and some trace IDs.
func buildStore(b *testing.B, spans int) (*benchSource, [][16]byte) {
	b.Helper()
	store, err := objstore.NewLocal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	src := &benchSource{h: head.New()}
	var ids [][16]byte
	now := uint64(time.Now().UnixNano())
	const perBlock = 130_000
	for done := 0; done < spans; done += perBlock {
		ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "bench"}}
		for t := 0; t < perBlock/10; t++ {
			var tid [16]byte
			binary.LittleEndian.PutUint64(tid[:8], rng.Uint64())
			binary.LittleEndian.PutUint64(tid[8:], rng.Uint64())
			if t%100 == 0 {
				ids = append(ids, tid)
			}
			root := make([]byte, 8)
			binary.LittleEndian.PutUint64(root, rng.Uint64()|1)
			for s := 0; s < 10; s++ {
				sid := root
				var parent []byte
				if s > 0 {
					sid = make([]byte, 8)
					binary.LittleEndian.PutUint64(sid, rng.Uint64()|1)
					parent = root
				}
				start := now + uint64(t)*1000 + uint64(s)*100
				ss.Spans = append(ss.Spans, &tracepb.Span{TraceId: tid[:], SpanId: sid, ParentSpanId: parent, Name: fmt.Sprintf("op-%d", s),
					StartTimeUnixNano: start, EndTimeUnixNano: start + uint64(rng.IntN(50_000_000)),
					Attributes: []*commonpb.KeyValue{
						{Key: "http.request.method", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "GET"}}},
						{Key: "task.count", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(rng.IntN(50))}}}}})
			}
		}
		req, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
				Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "bench"}}}}},
			ScopeSpans: []*tracepb.ScopeSpans{ss}}}})
		byTrace := map[[16]byte]*block.Trace{}
		var order [][16]byte
		var g *otlpwire.Group
		otlpwire.ScanRequest(req, func(gr *otlpwire.Group, s *otlpwire.Span) error {
			if g == nil {
				c := *gr
				g = &c
			}
			id := [16]byte(s.TraceID)
			t := byTrace[id]
			if t == nil {
				t = &block.Trace{ID: id}
				byTrace[id] = t
				order = append(order, id)
			}
			t.Spans = append(t.Spans, block.Span{Group: g, Raw: s.Raw})
			return nil
		})
		traces := make([]block.Trace, 0, len(order))
		for _, id := range order {
			traces = append(traces, *byTrace[id])
		}
		meta, err := block.Write(context.Background(), store, traces, block.WriteOptions{})
		if err != nil {
			b.Fatal(err)
		}
		r, err := block.Open(context.Background(), store, meta.ID)
		if err != nil {
			b.Fatal(err)
		}
		src.blocks = append(src.blocks, r)
	}
	return src, ids
}

// BenchmarkTraceByID measures finding a trace and encoding it as the API answers Grafana
// (protobuf), over 1M stored spans, or ARIADNE_BENCH_SPANS of them.
func BenchmarkTraceByID(b *testing.B) {
	spans := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("ARIADNE_BENCH_SPANS")); err == nil && v > 0 {
		spans = v
	}
	src, ids := buildStore(b, spans)
	q := New(src)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(2, 2))
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		id := ids[rng.IntN(len(ids))]
		t0 := time.Now()
		td, err := q.FindTrace(ctx, id, TimeRange{})
		if err != nil || td == nil {
			b.Fatalf("trace %x: %v", id, err)
		}
		if _, err := proto.Marshal(td); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(len(src.blocks)), "blocks")
}
