package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/storage/store"
	"github.com/ariadne-tracing/ariadne/internal/storage/wal"
)

// The Go runtime refuses to marshal invalid UTF-8 (and the SDK sanitises), so requests are built
// with a placeholder of the same length and the bytes swapped after marshalling, as a careless
// hand-rolled exporter would send them.
const (
	utf8Placeholder = "@@BAD@@"
	utf8Invalid     = "ok\xff\xfe\xc3xy"
)

var utf8Fields = []struct {
	name string
	edit func(rs *tracepb.ResourceSpans, sp *tracepb.Span)
}{
	{"span name", func(_ *tracepb.ResourceSpans, sp *tracepb.Span) { sp.Name = utf8Placeholder }},
	{"span attribute key", func(_ *tracepb.ResourceSpans, sp *tracepb.Span) { sp.Attributes[0].Key = utf8Placeholder }},
	{"span attribute value", func(_ *tracepb.ResourceSpans, sp *tracepb.Span) { sp.Attributes[0].Value = sv(utf8Placeholder) }},
	{"array value", func(_ *tracepb.ResourceSpans, sp *tracepb.Span) {
		sp.Attributes[0].Value = &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
			Values: []*commonpb.AnyValue{sv("a"), sv(utf8Placeholder)}}}}
	}},
	{"event name", func(_ *tracepb.ResourceSpans, sp *tracepb.Span) { sp.Events[0].Name = utf8Placeholder }},
	{"event attribute", func(_ *tracepb.ResourceSpans, sp *tracepb.Span) {
		sp.Events[0].Attributes = []*commonpb.KeyValue{{Key: "exception.message", Value: sv(utf8Placeholder)}}
	}},
	{"link attribute", func(_ *tracepb.ResourceSpans, sp *tracepb.Span) {
		sp.Links = []*tracepb.Span_Link{{TraceId: bytes.Repeat([]byte{0xee}, 16), SpanId: bytes.Repeat([]byte{0xee}, 8),
			Attributes: []*commonpb.KeyValue{{Key: "l", Value: sv(utf8Placeholder)}}}}
	}},
	{"trace state", func(_ *tracepb.ResourceSpans, sp *tracepb.Span) { sp.TraceState = utf8Placeholder }},
	{"status message", func(_ *tracepb.ResourceSpans, sp *tracepb.Span) { sp.Status.Message = utf8Placeholder }},
	{"scope name", func(rs *tracepb.ResourceSpans, _ *tracepb.Span) { rs.ScopeSpans[0].Scope.Name = utf8Placeholder }},
	{"scope version", func(rs *tracepb.ResourceSpans, _ *tracepb.Span) { rs.ScopeSpans[0].Scope.Version = utf8Placeholder }},
	{"service name", func(rs *tracepb.ResourceSpans, _ *tracepb.Span) {
		rs.Resource.Attributes[0].Value = sv(utf8Placeholder)
	}},
	{"resource attribute key", func(rs *tracepb.ResourceSpans, _ *tracepb.Span) { rs.Resource.Attributes[1].Key = utf8Placeholder }},
}

// invalidUTF8Request is one root span of trace id with field edited to hold invalid UTF-8.
func invalidUTF8Request(t *testing.T, id byte, edit func(*tracepb.ResourceSpans, *tracepb.Span)) []byte {
	t.Helper()
	now := uint64(time.Now().Add(-time.Minute).UnixNano())
	sp := &tracepb.Span{TraceId: bytes.Repeat([]byte{id}, 16), SpanId: bytes.Repeat([]byte{id}, 8), Name: "GET /tasks",
		StartTimeUnixNano: now, EndTimeUnixNano: now + 5e6, Attributes: []*commonpb.KeyValue{{Key: "http.route", Value: sv("/tasks")}},
		Events: []*tracepb.Span_Event{{Name: "exception", TimeUnixNano: now + 1e6}},
		Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "failed"}}
	rs := &tracepb.ResourceSpans{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: sv("task-api")},
			{Key: "host.name", Value: sv("h1")}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "lib", Version: "1"}, Spans: []*tracepb.Span{sp}}},
	}
	edit(rs, sp)
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{rs}})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(b, []byte(utf8Placeholder)) != 1 {
		t.Fatal("placeholder not found exactly once")
	}
	return bytes.Replace(b, []byte(utf8Placeholder), []byte(utf8Invalid), 1)
}

// searchAll runs a TraceQL search and returns the trace IDs found; any status but 200 fails.
func searchAll(t *testing.T, base, q string) map[string]bool {
	t.Helper()
	var sr searchResponse
	getJSON(t, base, "/api/search?limit=1000&q="+url.QueryEscape(q)+fmt.Sprintf("&start=%d&end=%d",
		time.Now().Add(-time.Hour).Unix(), time.Now().Add(time.Hour).Unix()), 200, &sr)
	ids := map[string]bool{}
	for _, tr := range sr.Traces {
		ids[strings.TrimLeft(tr.TraceID, "0")] = true
	}
	return ids
}

func traceHex(id byte) string {
	return strings.TrimLeft(fmt.Sprintf("%x", bytes.Repeat([]byte{id}, 16)), "0")
}

// Invalid UTF-8 in each string field, sent over real gRPC and HTTP: acknowledged, stored with the
// bad bytes replaced by U+FFFD and the span flagged, counted; every read works, on the head and
// after flushing to a block. Before, reads of such a trace and every search over the head
// answered 500, and after the flush the block's searches and compaction failed for good.
func TestInvalidUTF8IsReplacedAndEverythingStillReads(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	base := "http://" + s.HTTPAddr
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, f := range utf8Fields {
		id := byte(i + 1)
		body := invalidUTF8Request(t, id, f.edit)
		if i%2 == 0 {
			var resp coltracepb.ExportTraceServiceResponse
			if err := conn.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
				body, &resp, grpc.ForceCodec(rawCodec{})); err != nil || resp.PartialSuccess.GetRejectedSpans() != 0 {
				t.Fatalf("%s over gRPC: %v %v", f.name, &resp, err)
			}
		} else {
			hr, hb := post(t, "http://"+s.OTLPHTTPAddr+"/v1/traces", "application/x-protobuf", body)
			if hr.StatusCode != 200 {
				t.Fatalf("%s over HTTP: %d %s", f.name, hr.StatusCode, hb)
			}
		}
	}
	if v := metricValue(scrape(t, s), "ariadne_ingest_spans_invalid_utf8_total", nil); v != float64(len(utf8Fields)) {
		t.Fatalf("ariadne_ingest_spans_invalid_utf8_total = %v, want %d", v, len(utf8Fields))
	}
	check := func(where string) {
		for i, f := range utf8Fields {
			id := byte(i + 1)
			spans := fetchTrace(t, s, bytes.Repeat([]byte{id}, 16))
			if len(spans) != 1 {
				t.Fatalf("%s, %s: %d spans", where, f.name, len(spans))
			}
			for _, fs := range spans {
				text := fs.resource + fs.scope + prototext.Format(fs.span)
				if !strings.Contains(text, "ok\uFFFDxy") {
					t.Fatalf("%s, %s: no U+FFFD where the invalid bytes were: %s", where, f.name, text)
				}
				flagged := false
				for _, a := range fs.span.Attributes {
					flagged = flagged || (a.Key == "ariadne.invalid_utf8" && a.Value.GetBoolValue())
				}
				if !flagged {
					t.Fatalf("%s, %s: span not flagged", where, f.name)
				}
			}
		}
		all := searchAll(t, base, "{}")
		flagged := searchAll(t, base, "{ span.ariadne.invalid_utf8 = true }")
		for i := range utf8Fields {
			if h := traceHex(byte(i + 1)); !all[h] || !flagged[h] {
				t.Fatalf("%s: trace %s missing from search (all %v, flagged %v)", where, h, all[h], flagged[h])
			}
		}
		getJSON(t, base, "/api/v2/search/tag/resource.service.name/values", 200, nil)
		getJSON(t, base, "/api/search/tags", 200, nil)
	}
	check("in the head")
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	check("in a block")
}

// Data written before ingest replaced invalid UTF-8 (blocks, and records still in the WAL) must
// stay readable: the server starts on it, reads and searches work, and compaction merges such
// blocks instead of failing on them forever.
func TestOldDataWithInvalidUTF8StillReads(t *testing.T) {
	dir := t.TempDir()
	// Two blocks with invalid strings, written through the store directly (no ingest), as an
	// older build would have.
	st, err := store.Open(store.Options{Dir: dir, CompactMinBlocks: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := st.Append(invalidUTF8Request(t, byte(i+1), utf8Fields[i*11].edit)); err != nil { // span name; service name
			t.Fatal(err)
		}
		if err := st.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// And one record left in the WAL.
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(invalidUTF8Request(t, 3, utf8Fields[4].edit)); err != nil { // event name
		t.Fatal(err)
	}
	w.Close()

	cfg := testConfig(dir)
	cfg.Storage.CompactMinBlocks, cfg.Storage.CompactFreshAge = 1, -1
	s := startServer(t, cfg)
	base := "http://" + s.HTTPAddr
	for id := byte(1); id <= 3; id++ {
		fetchTrace(t, s, bytes.Repeat([]byte{id}, 16))
	}
	all := searchAll(t, base, "{}")
	for id := byte(1); id <= 3; id++ {
		if !all[traceHex(id)] {
			t.Fatalf("trace %d missing from search: %v", id, all)
		}
	}
	getJSON(t, base, "/api/v2/search/tag/resource.service.name/values", 200, nil)
	waitFor(t, "compaction of the blocks with invalid strings", func() bool {
		return metricValue(scrape(t, s), "ariadne_compactions_total", nil) >= 1
	})
	for id := byte(1); id <= 2; id++ {
		fetchTrace(t, s, bytes.Repeat([]byte{id}, 16))
	}
}
