package query_test

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/read/query"
	"github.com/ariadne-tracing/ariadne/internal/storage/store"
)

// recentStore is a store of four real blocks of 40 one-span traces and 15 more in the head, a
// second apart from base on; the span IDs end in the trace's number.
func recentStore(t *testing.T) (*query.Querier, time.Time) {
	st, err := store.Open(store.Options{Dir: t.TempDir(), TraceIdle: time.Hour, BlockMaxWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	base := time.Now().Add(-time.Hour)
	seq := 0
	batch := func(traces int) {
		ss := &tracepb.ScopeSpans{}
		for range traces {
			seq++
			tid := make([]byte, 16)
			binary.BigEndian.PutUint64(tid[8:], uint64(seq)*0x9e3779b97f4a7c15|1)
			start := uint64(base.Add(time.Duration(seq) * time.Second).UnixNano())
			ss.Spans = append(ss.Spans, &tracepb.Span{TraceId: tid, SpanId: []byte{1, 2, 3, 4, 5, 6, 7, byte(seq)}, Name: "op",
				StartTimeUnixNano: start, EndTimeUnixNano: start + 1e6})
		}
		body, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
				Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "svc"}}}}},
			ScopeSpans: []*tracepb.ScopeSpans{ss}}}})
		if err := st.Append(body); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		batch(40)
		if err := st.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	batch(15) // and some still in the head
	if len(st.Blocks()) < 2 {
		t.Fatalf("%d blocks; the test needs several", len(st.Blocks()))
	}
	return query.New(st), base
}

// Recent agrees with the full Summaries over a store of several real blocks and a head, for
// every count, with and without a window.
func TestRecentMatchesSummaries(t *testing.T) {
	q, base := recentStore(t)
	ctx := context.Background()
	for _, tr := range []query.TimeRange{{}, {Start: base.Add(100 * time.Second)}, {Start: base.Add(30 * time.Second), End: base.Add(90 * time.Second)}} {
		for _, n := range []int{1, 7, 40, 60, 500} {
			want, err := q.Summaries(ctx, tr, n)
			if err != nil {
				t.Fatal(err)
			}
			got, err := q.Recent(ctx, tr, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("range %v n=%d: %d summaries, want %d", tr, n, len(got), len(want))
			}
			for i := range want {
				if got[i].ID != want[i].ID || !got[i].Start.Equal(want[i].Start) {
					t.Fatalf("range %v n=%d: #%d is %x at %v, want %x at %v", tr, n, i, got[i].ID, got[i].Start, want[i].ID, want[i].Start)
				}
			}
		}
	}
	if _, err := q.Recent(ctx, query.TimeRange{}, 0); err == nil {
		t.Fatal("Recent(0) accepted")
	}
}

// FindTraces, which holds only the newest candidates' summaries, finds what testing every
// summary of the window in order finds: all matches, or a selective one needing several rounds.
func TestFindTracesMatchesEverySummary(t *testing.T) {
	q, base := recentStore(t)
	ctx := context.Background()
	matches := map[string]func(*tracepb.TracesData) bool{
		"all": func(*tracepb.TracesData) bool { return true },
		"every 9th": func(td *tracepb.TracesData) bool {
			id := td.ResourceSpans[0].ScopeSpans[0].Spans[0].SpanId
			return id[len(id)-1]%9 == 0
		},
	}
	for _, tr := range []query.TimeRange{{}, {Start: base.Add(30 * time.Second), End: base.Add(150 * time.Second)}} {
		sums, err := q.Summaries(ctx, tr, 0)
		if err != nil {
			t.Fatal(err)
		}
		for name, match := range matches {
			for _, limit := range []int{1, 4, 30, 500} {
				var want [][]byte
				for _, s := range sums {
					td, err := q.FindTrace(ctx, s.ID, query.TimeRange{})
					if err != nil {
						t.Fatal(err)
					}
					if len(want) < limit && match(td) {
						want = append(want, s.ID[:])
					}
				}
				got, err := q.FindTraces(ctx, tr, limit, match)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("%v %s limit %d: %d traces, want %d", tr, name, limit, len(got), len(want))
				}
				for i, td := range got {
					if id := td.ResourceSpans[0].ScopeSpans[0].Spans[0].TraceId; string(id) != string(want[i]) {
						t.Fatalf("%v %s limit %d: #%d is %x, want %x", tr, name, limit, i, id, want[i])
					}
				}
			}
		}
	}
}
