package otlpwire

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func span(tid byte, sid byte, parent []byte, name string, code tracepb.Status_StatusCode) *tracepb.Span {
	return &tracepb.Span{
		TraceId: bytes.Repeat([]byte{tid}, 16), SpanId: bytes.Repeat([]byte{sid}, 8), ParentSpanId: parent,
		Name: name, Kind: tracepb.Span_SPAN_KIND_SERVER, StartTimeUnixNano: 100, EndTimeUnixNano: 250,
		Attributes: []*commonpb.KeyValue{str("a", "b")},
		Status:     &tracepb.Status{Code: code, Message: "m"},
	}
}

// SmallRequest builds a request like the load generator's small profile, for tests and benchmarks.
func smallRequest(traces, spansPer int) []byte {
	req := &coltracepb.ExportTraceServiceRequest{}
	rs := &tracepb.ResourceSpans{
		Resource:  &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "task-api"), str("host", "h1")}},
		SchemaUrl: "https://opentelemetry.io/schemas/1.26.0",
	}
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "tasks", Version: "1"}}
	for t := 0; t < traces; t++ {
		for s := 0; s < spansPer; s++ {
			sp := span(byte(t+1), byte(s+1), nil, fmt.Sprintf("op%d", s), tracepb.Status_STATUS_CODE_UNSET)
			sp.TraceId[0] = byte(t >> 8)
			if s > 0 {
				sp.ParentSpanId = bytes.Repeat([]byte{1}, 8)
			}
			sp.Attributes = append(sp.Attributes, str("http.request.method", "GET"))
			ss.Spans = append(ss.Spans, sp)
		}
	}
	rs.ScopeSpans = []*tracepb.ScopeSpans{ss}
	req.ResourceSpans = []*tracepb.ResourceSpans{rs}
	b, _ := proto.Marshal(req)
	return b
}

func TestScanRequest(t *testing.T) {
	res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "task-api")}}
	scope := &commonpb.InstrumentationScope{Name: "mod", Version: "1.0"}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:  res,
		SchemaUrl: "rs-url",
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: scope, SchemaUrl: "ss-url",
			Spans: []*tracepb.Span{
				span(1, 1, nil, "root", tracepb.Status_STATUS_CODE_OK),
				span(1, 2, bytes.Repeat([]byte{1}, 8), "child", tracepb.Status_STATUS_CODE_ERROR),
			},
		}},
	}}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	err = ScanRequest(b, func(g *Group, s *Span) error {
		if string(g.ServiceName) != "task-api" || string(g.ResourceSchemaURL) != "rs-url" || string(g.ScopeSchemaURL) != "ss-url" {
			t.Errorf("group = %+v", g)
		}
		gotRes := &resourcepb.Resource{}
		if err := proto.Unmarshal(g.Resource, gotRes); err != nil || !proto.Equal(gotRes, res) {
			t.Errorf("resource bytes do not decode to the resource: %v", err)
		}
		gotSp := &tracepb.Span{}
		if err := proto.Unmarshal(s.Raw, gotSp); err != nil || gotSp.Name != string(s.Name) {
			t.Errorf("raw span bytes wrong: %v", err)
		}
		if ok, why := s.Valid(); !ok {
			t.Errorf("valid span rejected: %s", why)
		}
		if s.Start != 100 || s.End != 250 || s.Kind != 2 {
			t.Errorf("span fields %+v", s)
		}
		if s.Attrs != 1 || s.Events != 0 || s.Links != 0 || int(s.Longest) != len("\n\x01a\x12\x03\n\x01b") {
			t.Errorf("counts: %d attributes, %d events, %d links, longest %d", s.Attrs, s.Events, s.Links, s.Longest)
		}
		names = append(names, fmt.Sprintf("%s/%d/%d", s.Name, s.StatusCode, len(s.ParentID)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names) != "[root/1/0 child/2/8]" {
		t.Fatalf("spans = %v", names)
	}
}

func TestScanMalformed(t *testing.T) {
	for _, b := range [][]byte{{0xff}, {0x0a, 0x05, 0x01}, []byte("not protobuf at all, just text")} {
		err := ScanRequest(b, func(*Group, *Span) error { return nil })
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err = %v, want ErrMalformed", b, err)
		}
	}
	if err := ScanRequest(nil, func(*Group, *Span) error { t.Fatal("span in empty request"); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestValid(t *testing.T) {
	for _, c := range []struct {
		tid, sid, pid []byte
		ok            bool
	}{
		{bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{1}, 8), nil, true},
		{bytes.Repeat([]byte{1}, 15), bytes.Repeat([]byte{1}, 8), nil, false},
		{bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{1}, 9), nil, false},
		{bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{1}, 8), []byte{1}, false},
		{make([]byte, 16), bytes.Repeat([]byte{1}, 8), nil, false},
		{bytes.Repeat([]byte{1}, 16), make([]byte, 8), nil, false},
	} {
		s := Span{TraceID: c.tid, SpanID: c.sid, ParentID: c.pid}
		if ok, why := s.Valid(); ok != c.ok {
			t.Errorf("%x/%x/%x: ok=%v (%s)", c.tid, c.sid, c.pid, ok, why)
		}
	}
}

func TestFilterRequest(t *testing.T) {
	good1 := span(1, 1, nil, "good1", 0)
	bad := span(2, 2, nil, "bad", 0)
	bad.TraceId = bad.TraceId[:5]
	good2 := span(3, 3, nil, "good2", 0)
	onlyBad := span(4, 4, nil, "bad2", 0)
	onlyBad.SpanId = nil
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "a")}},
			ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "s"}, Spans: []*tracepb.Span{good1, bad, good2}}}},
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "b")}},
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{onlyBad}}}},
	}}
	b, _ := proto.Marshal(req)
	out, err := FilterRequest(nil, b, func(s *Span) bool { ok, _ := s.Valid(); return ok })
	if err != nil {
		t.Fatal(err)
	}
	got := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(out, got); err != nil {
		t.Fatal(err)
	}
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{Resource: req.ResourceSpans[0].Resource,
			ScopeSpans: []*tracepb.ScopeSpans{{Scope: req.ResourceSpans[0].ScopeSpans[0].Scope, Spans: []*tracepb.Span{good1, good2}}}},
	}}
	if !proto.Equal(got, want) {
		t.Fatalf("filtered request:\n got %v\nwant %v", got, want)
	}
}

func BenchmarkScanRequest(b *testing.B) {
	req := smallRequest(100, 10)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		ScanRequest(req, func(g *Group, s *Span) error { n++; return nil })
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "spans/s")
}

func FuzzScanRequest(f *testing.F) {
	f.Add(smallRequest(2, 3))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		spans := 0
		err := ScanRequest(b, func(g *Group, s *Span) error {
			spans++
			s.Valid()
			return nil
		})
		if err != nil {
			return
		}
		// Whatever scans must filter to a request that scans to the same valid spans.
		out, err := FilterRequest(nil, b, func(s *Span) bool { ok, _ := s.Valid(); return ok })
		if err != nil {
			t.Fatalf("scan accepted what filter rejects: %v", err)
		}
		valid := 0
		ScanRequest(b, func(g *Group, s *Span) error {
			if ok, _ := s.Valid(); ok {
				valid++
			}
			return nil
		})
		again := 0
		if err := ScanRequest(out, func(g *Group, s *Span) error { again++; return nil }); err != nil {
			t.Fatalf("filtered request does not scan: %v", err)
		}
		if again != valid {
			t.Fatalf("filtered request has %d spans, want %d", again, valid)
		}
	})
}
