package peerapi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// fill appends a request of traces 1..n (spans of two services each, the second with a schema
// URL and a scope) to h.
func fill(t *testing.T, h *head.Head, n int) {
	t.Helper()
	req := &coltracepb.ExportTraceServiceRequest{}
	for si, svc := range []string{"a", "b"} {
		rs := &tracepb.ResourceSpans{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: svc}}}}}}
		ss := &tracepb.ScopeSpans{}
		if si == 1 {
			rs.SchemaUrl = "https://opentelemetry.io/schemas/1.26.0"
			ss.Scope, ss.SchemaUrl = &commonpb.InstrumentationScope{Name: "lib", Version: "1"}, "scope-schema"
		}
		for i := 1; i <= n; i++ {
			tid := make([]byte, 16)
			binary.BigEndian.PutUint64(tid[8:], uint64(i))
			sid := make([]byte, 8)
			binary.BigEndian.PutUint64(sid, uint64(i*10+si))
			ss.Spans = append(ss.Spans, &tracepb.Span{TraceId: tid, SpanId: sid, Name: fmt.Sprintf("op-%d", si),
				StartTimeUnixNano: uint64(1000 * i), EndTimeUnixNano: uint64(1000*i + 500)})
		}
		rs.ScopeSpans = []*tracepb.ScopeSpans{ss}
		req.ResourceSpans = append(req.ResourceSpans, rs)
	}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	app := h.Appender(0)
	if err := otlpwire.ScanRequest(b, func(g *otlpwire.Group, s *otlpwire.Span) error { app.Append(g, s); return nil }); err != nil {
		t.Fatal(err)
	}
	app.Commit()
}

// dump lists a head's spans with their groups, sorted, for comparing heads.
func dump(h *head.Head) []string {
	var out []string
	h.Each(func(tr *head.Trace) bool {
		tr.Spans(func(g *otlpwire.Group, raw []byte) {
			out = append(out, fmt.Sprintf("%x %x %q %x %q %x", tr.ID, g.Resource, g.ResourceSchemaURL, g.Scope, g.ScopeSchemaURL, raw))
		})
		return true
	})
	slices.Sort(out)
	return out
}

// A head streamed and read back is the same head: every span with its resource, scope and
// schema URLs, across several records; since leaves out traces that ended before it; a stream
// cut short is an error, not a shorter head taken as whole.
func TestHeadRoundTrip(t *testing.T) {
	src := head.New()
	fill(t, src, 3000) // about 300 KiB of spans: several records
	var stream bytes.Buffer
	records := 0
	if err := EncodeHead(src, 0, func(rec []byte) error { records++; stream.Write(rec); return nil }); err != nil {
		t.Fatal(err)
	}
	dst := head.New()
	if err := ReadHead(bytes.NewReader(stream.Bytes()), dst); err != nil {
		t.Fatal(err)
	}
	if want, got := dump(src), dump(dst); !slices.Equal(want, got) {
		t.Fatalf("read back %d spans, want %d (first %v, want %v)", len(got), len(want), got[:1], want[:1])
	}
	if records < 2 {
		t.Errorf("%d records for %d bytes: want them chunked", records, stream.Len())
	}

	copied := head.New()
	if err := CopyHead(copied, src, 1000*2500); err != nil {
		t.Fatal(err)
	}
	if n := copied.Stats().Traces; n != 501 {
		t.Errorf("since: %d traces copied, want the 501 that ended at or after it", n)
	}

	err := ReadHead(bytes.NewReader(stream.Bytes()[:stream.Len()-7]), head.New())
	if err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("a cut stream: %v, want unexpected EOF", err)
	}
}
