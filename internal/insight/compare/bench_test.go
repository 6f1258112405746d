package compare

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/testkit/blocktest"
)

func kv(k string, v any) *commonpb.KeyValue {
	switch v := v.(type) {
	case string:
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	case int:
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(v)}}}
	}
	panic("kv type")
}

// benchStart is the first block's start; the blocks cover the hour after it.
var benchStart = time.Unix(1_700_000_000, 0)

// benchBlocks writes spans (10-span traces) through the real block writer as blocks of 200k
// spans spread over one hour, as the flush loop would leave them: eight services, each span with
// an HTTP method, status code, route and a per-request ID (high cardinality), log-normal
// durations; 1 span in 20 of checkout runs a slow query (db.statement on an unindexed column)
// and takes 10x longer: the planted cause.
func benchBlocks(b *testing.B, spans int) *blocktest.Source {
	b.Helper()
	services := blocktest.Services
	groups := blocktest.ShopGroups(func(i int) []*commonpb.KeyValue {
		return []*commonpb.KeyValue{kv("service.version", "1.4."+strconv.Itoa(i%3))}
	})
	r := rand.New(rand.NewPCG(1, 2))
	methods := []string{"GET", "POST", "PUT"}
	nblocks := (spans + blocktest.PerBlock - 1) / blocktest.PerBlock
	base := uint64(benchStart.UnixNano())
	width := uint64(time.Hour) / uint64(nblocks)
	return blocktest.ShopBlocks(b, spans, r, func(blk int, t *block.Trace) {
		start := base + uint64(blk)*width + r.Uint64N(width-uint64(10*time.Second))
		for i := range blocktest.SpansPerTrace {
			svc := r.IntN(len(services))
			if i == 0 {
				svc = 0
			}
			method := methods[r.IntN(len(methods))]
			attrs := []*commonpb.KeyValue{kv("http.request.method", method), kv("http.response.status_code", 200),
				kv("http.route", "/api/v1/"+services[svc]+"/"+strconv.Itoa(r.IntN(6))), kv("request.id", strconv.FormatUint(r.Uint64(), 16))}
			dur := math.Exp(r.NormFloat64()*0.5 + 16)
			if services[svc] == "checkout" && r.IntN(20) == 0 {
				attrs = append(attrs, kv("db.statement", "SELECT * FROM orders WHERE note = ?"))
				dur *= 10
			} else if services[svc] == "checkout" {
				attrs = append(attrs, kv("db.statement", "SELECT * FROM orders WHERE id = ?"))
			}
			s := &tracepb.Span{SpanId: make([]byte, 8), Name: method + " /api/v1/" + services[svc],
				Kind: tracepb.Span_SpanKind(1 + r.IntN(3)), Attributes: attrs}
			for j := range s.SpanId {
				s.SpanId[j] = byte(r.Uint32())
			}
			s.StartTimeUnixNano = start + uint64(i)*uint64(time.Millisecond)
			s.EndTimeUnixNano = s.StartTimeUnixNano + uint64(dur)
			if r.IntN(50) == 0 {
				s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
			}
			raw, err := proto.Marshal(s)
			if err != nil {
				b.Fatal(err)
			}
			t.Spans = append(t.Spans, block.Span{Group: groups[svc], Raw: raw})
		}
	})
}

// BenchmarkCompare compares the slow checkout spans with the rest of checkout over one hour of
// 3M stored spans (COMPARE_BENCH_SPANS for another size). The planted db.statement must rank
// first, or the figure measures the wrong work.
func BenchmarkCompare(b *testing.B) {
	spans := 3_000_000
	if v, err := strconv.Atoi(os.Getenv("COMPARE_BENCH_SPANS")); err == nil && v > 0 {
		spans = v
	}
	src := benchBlocks(b, spans)
	e := search.New(src)
	sel, err := traceql.Parse(`{ resource.service.name = "checkout" && duration > 25ms }`)
	if err != nil {
		b.Fatal(err)
	}
	req := Request{Selection: sel, Start: benchStart, End: benchStart.Add(time.Hour)}
	var res *Result
	b.ReportAllocs()
	for b.Loop() {
		res, err = Compare(context.Background(), e, req)
		if err != nil {
			b.Fatal(err)
		}
	}
	if len(res.Values) == 0 || res.Values[0].Key != "span.db.statement" || res.Values[0].Value.String != "SELECT * FROM orders WHERE note = ?" {
		b.Fatalf("planted cause not first: %+v", res.Values)
	}
	b.ReportMetric(float64(res.BaselineSpans), "baseline")
	b.ReportMetric(float64(res.SelectionSpans), "selected")
}
