package ingest_test

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/ingest"
	"github.com/ariadne-tracing/ariadne/internal/storage/store"
)

func request(traceID []byte, firstSpan uint64, n int) []byte {
	var spans []*tracepb.Span
	for i := 0; i < n; i++ {
		id := make([]byte, 8)
		v := firstSpan + uint64(i) + 1
		for b := 0; b < 8; b++ {
			id[b] = byte(v >> (8 * b))
		}
		spans = append(spans, &tracepb.Span{TraceId: traceID, SpanId: id, Name: "work",
			StartTimeUnixNano: 1_700_000_000_000_000_000, EndTimeUnixNano: 1_700_000_000_001_000_000})
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "hammer"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}}
	b, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	return b
}

// Many senders export spans of one trace at once, through the real store (WAL on disk, head).
// The spans-per-trace limit must hold exactly: before reservations, every concurrent request
// read the head's count before any of them had landed, and tens of thousands of spans got in
// against a limit of a few hundred. Once the head is flushed, every counter is back at zero.
func TestSpansPerTraceLimitExactUnderConcurrency(t *testing.T) {
	st, err := store.Open(store.Options{Dir: t.TempDir(), CompactMinBlocks: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const limit = 300
	in, err := ingest.New(st, ingest.Config{MaxSpansPerTrace: limit})
	if err != nil {
		t.Fatal(err)
	}
	trace := bytes.Repeat([]byte{0xab}, 16)
	const senders, requests, perRequest = 24, 20, 7
	var accepted, rejected atomic.Int64
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < requests; r++ {
				res, err := in.Consume(context.Background(), "", request(trace, uint64((s*requests+r)*perRequest), perRequest))
				if err != nil {
					t.Error(err)
					return
				}
				accepted.Add(res.Accepted)
				rejected.Add(res.RejectedSpans)
			}
		}()
	}
	wg.Wait()
	if got := st.TraceSpans([16]byte(trace)); got != limit || accepted.Load() != limit {
		t.Fatalf("head holds %d spans of the trace, %d acknowledged; limit %d", got, accepted.Load(), limit)
	}
	if rejected.Load() != senders*requests*perRequest-limit {
		t.Fatalf("rejected %d", rejected.Load())
	}
	if n := ingest.QuotaReservations(in); n != 0 {
		t.Fatalf("%d reservations left with no request in flight", n)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	if hs := st.Head().Stats(); hs.Bytes != 0 || hs.Spans != 0 || hs.Traces != 0 || st.HeadBytes() != 0 {
		t.Fatalf("after flush the head counts %+v", hs)
	}
	// With the head flushed the trace has room again, as it had before.
	res, err := in.Consume(context.Background(), "", request(trace, 1<<40, 5))
	if err != nil || res.Accepted != 5 {
		t.Fatalf("after flush: %+v %v", res, err)
	}
}
