package server

import (
	"bytes"
	"context"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
)

func TestBackgroundLinterCountsFindings(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr, cfg.HTTPAddr, cfg.ZipkinAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	s, err := Start(cfg, api.BuildInfo{Version: "test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	now := time.Now()
	// A root and two spans whose parent never arrives: a span that was never ended.
	tid := bytes.Repeat([]byte{7}, 16)
	mk := func(id, parent byte, name string) *tracepb.Span {
		sp := &tracepb.Span{TraceId: tid, SpanId: bytes.Repeat([]byte{id}, 8), Name: name, Kind: tracepb.Span_SPAN_KIND_INTERNAL,
			StartTimeUnixNano: uint64(now.UnixNano()), EndTimeUnixNano: uint64(now.Add(5 * time.Millisecond).UnixNano())}
		if parent != 0 {
			sp.ParentSpanId = bytes.Repeat([]byte{parent}, 8)
		}
		return sp
	}
	req, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "reindexer"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{mk(1, 0, "reindex_task_root"), mk(2, 9, "fetch_task"), mk(3, 9, "schedule_reindex")}}},
	}}})
	if err := s.Store.Append(req); err != nil {
		t.Fatal(err)
	}
	if err := s.core.linter.round(now.Add(-time.Minute), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	var m dto.Metric
	s.core.linter.traces.Write(&m)
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Fatalf("examined %v traces", got)
	}
	s.core.linter.findings.WithLabelValues("span.unended-parent", "reindexer").Write(&m)
	if got := m.GetCounter().GetValue(); got != 2 {
		t.Fatalf("span.unended-parent counted %v times, want 2 (two spans under the never-ended parent)", got)
	}
}
