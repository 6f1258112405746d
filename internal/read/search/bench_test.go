package search

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/testkit/blocktest"
)

type benchSource struct {
	h      *head.Head
	blocks []*block.Reader
}

func (s *benchSource) Head() *head.Head                         { return s.h }
func (s *benchSource) AcquireBlocks() ([]*block.Reader, func()) { return s.blocks, func() {} }

func strKV(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// benchBlocks stores spans (in 10-span traces) as blocks of 200k spans, each block a later
// minute, as the flush loop would leave them: service-tagged resources, two attributes per span,
// log-normal durations nested in the parent's, one span in 50 failing, and one in 2,000 with
// http.method DELETE (the selective attribute).
func benchBlocks(b *testing.B, spans int) *benchSource {
	b.Helper()
	services := blocktest.Services
	groups := blocktest.ShopGroups(nil)
	r := rand.New(rand.NewPCG(1, 2))
	methods := []string{"GET", "POST", "PUT"}
	base := uint64(1_700_000_000_000_000_000)
	src := blocktest.ShopBlocks(b, spans, r, func(blk int, t *block.Trace) {
		start := base + uint64(blk)*60e9 + r.Uint64N(60e9)
		type node struct {
			id         []byte
			start, end uint64
		}
		var nodes []node
		for i := range blocktest.SpansPerTrace {
			svc := r.IntN(len(services))
			method := methods[r.IntN(len(methods))]
			if r.IntN(2000) == 0 {
				method = "DELETE"
			}
			s := &tracepb.Span{
				SpanId:     make([]byte, 8),
				Name:       method + " /api/v1/" + services[svc],
				Kind:       tracepb.Span_SpanKind(1 + r.IntN(3)),
				Attributes: []*commonpb.KeyValue{strKV("http.method", method), blocktest.IntKV("http.status_code", 200)},
			}
			for j := range s.SpanId {
				s.SpanId[j] = byte(r.Uint32())
			}
			if i == 0 {
				svc = 0
				s.StartTimeUnixNano = start
				s.EndTimeUnixNano = start + uint64(math.Exp(r.NormFloat64()+17))
			} else {
				p := nodes[r.IntN(len(nodes))]
				s.ParentSpanId = p.id
				s.StartTimeUnixNano = p.start + r.Uint64N((p.end-p.start)/2+1)
				s.EndTimeUnixNano = s.StartTimeUnixNano + r.Uint64N(p.end-s.StartTimeUnixNano+1)
			}
			if r.IntN(50) == 0 {
				s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
			}
			nodes = append(nodes, node{s.SpanId, s.StartTimeUnixNano, s.EndTimeUnixNano})
			raw, err := proto.Marshal(s)
			if err != nil {
				b.Fatal(err)
			}
			t.Spans = append(t.Spans, block.Span{Group: groups[svc], Raw: raw})
		}
	})
	return &benchSource{h: src.H, blocks: src.Blocks}
}

// BenchmarkSearch measures a search over 1M stored spans (SEARCH_BENCH_SPANS=10000000 for 10M)
// for a selective attribute, a duration and a structural query. "newest20" is Grafana's default
// (limit 20, newest first: reading stops once older blocks cannot contribute); "all" asks for
// every match, so every block in range is read.
func BenchmarkSearch(b *testing.B) {
	spans := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("SEARCH_BENCH_SPANS")); err == nil && v > 0 {
		spans = v
	}
	src := benchBlocks(b, spans)
	e := New(src)
	queries := []struct{ name, q string }{
		{"attribute", `{ span.http.method = "DELETE" }`},
		{"duration", `{ kind = server && duration > 200ms }`},
		{"structural", `{ resource.service.name = "frontend" } >> { status = error }`},
		{"absent", `{ resource.service.name = "nope" }`},
		{"and", `{ span.http.method = "GET" && name = "GET /api/v1/cart" }`},
	}
	for _, qc := range queries {
		q, err := traceql.Parse(qc.q)
		if err != nil {
			b.Fatal(err)
		}
		for _, lim := range []struct {
			name  string
			limit int
		}{{"newest20", 20}, {"newest1000", 1000}, {"all", 1 << 30}} {
			b.Run(qc.name+"/"+lim.name, func(b *testing.B) {
				var res *Result
				b.ReportAllocs()
				cpu0 := cpuTime()
				for b.Loop() {
					res, err = e.Search(context.Background(), Request{Query: q, Limit: lim.limit})
					if err != nil {
						b.Fatal(err)
					}
				}
				// CPU time is steadier than wall time on a shared machine.
				b.ReportMetric(float64(cpuTime()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
				b.ReportMetric(float64(len(res.Traces)), "traces")
				b.ReportMetric(float64(res.Metrics.InspectedSpans), "spans-read")
			})
		}
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
