package sampling

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func TestTraceIDRatioMatchesSDK(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ratio := range []float64{0, 0.01, 0.1, 0.15, 0.5, 0.99, 1} {
		sdk := sdktrace.TraceIDRatioBased(ratio)
		for i := 0; i < 20000; i++ {
			var id [16]byte
			for j := range id {
				id[j] = byte(rng.IntN(256))
			}
			res := sdk.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: trace.TraceID(id), Name: "x"})
			if got, want := TraceIDRatio(id, ratio), res.Decision == sdktrace.RecordAndSample; got != want {
				t.Fatalf("ratio %v, trace %x: ours %v, SDK %v", ratio, id, got, want)
			}
		}
	}
}

type testSpan struct {
	dur    time.Duration
	err    bool
	attrs  map[string]any
	flags  uint32
	noFlag bool
}

func mkTrace(t *testing.T, id [16]byte, spans ...testSpan) *Trace {
	t.Helper()
	res, _ := proto.Marshal(&resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
		Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "task-api"}}}}})
	var raws [][]byte
	tr := &Trace{ID: id, Start: 1e9, SpanCount: len(spans)}
	for _, s := range spans {
		sp := &tracepb.Span{TraceId: id[:], SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, StartTimeUnixNano: 1e9, EndTimeUnixNano: 1e9 + uint64(s.dur), Flags: 0x301}
		if s.noFlag {
			sp.Flags = 0
		} else if s.flags != 0 {
			sp.Flags = s.flags
		}
		if s.err {
			sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
			tr.ErrorCount++
		}
		for k, v := range s.attrs {
			av := &commonpb.AnyValue{}
			switch v := v.(type) {
			case string:
				av.Value = &commonpb.AnyValue_StringValue{StringValue: v}
			case int:
				av.Value = &commonpb.AnyValue_IntValue{IntValue: int64(v)}
			case float64:
				av.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: v}
			case []string:
				arr := &commonpb.ArrayValue{}
				for _, x := range v {
					arr.Values = append(arr.Values, &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: x}})
				}
				av.Value = &commonpb.AnyValue_ArrayValue{ArrayValue: arr}
			}
			sp.Attributes = append(sp.Attributes, &commonpb.KeyValue{Key: k, Value: av})
		}
		b, _ := proto.Marshal(sp)
		raws = append(raws, b)
		tr.End = max(tr.End, sp.EndTimeUnixNano)
	}
	tr.Spans = func(fn func(resource, span []byte)) {
		for _, r := range raws {
			fn(res, r)
		}
	}
	return tr
}

func idOf(b byte) [16]byte { var id [16]byte; id[0] = b; id[15] = b; return id }

func ptr(f float64) *float64 { return &f }

func TestPolicies(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		trace []testSpan
		keep  bool
	}{
		{"no policy keeps nothing", Config{Policies: []PolicyConfig{{Type: "span_count", MinSpans: 10}}}, []testSpan{{}}, false},
		{"error kept", Config{KeepErrors: true}, []testSpan{{}, {err: true}}, true},
		{"no error dropped", Config{KeepErrors: true}, []testSpan{{}, {}}, false},
		{"slow trace kept", Config{KeepSlowerThan: 100 * time.Millisecond}, []testSpan{{dur: 150 * time.Millisecond}}, true},
		{"fast trace dropped", Config{KeepSlowerThan: 100 * time.Millisecond}, []testSpan{{dur: 50 * time.Millisecond}}, false},
		{"string attribute", Config{Policies: []PolicyConfig{{Type: "string_attribute", Key: "db.system", Values: []string{"mongodb"}}}},
			[]testSpan{{attrs: map[string]any{"db.system": "mongodb"}}}, true},
		{"string attribute on resource", Config{Policies: []PolicyConfig{{Type: "string_attribute", Key: "service.name", Values: []string{"task-.*"}, Regex: true}}},
			[]testSpan{{}}, true},
		{"regex anchored", Config{Policies: []PolicyConfig{{Type: "string_attribute", Key: "service.name", Values: []string{"task"}, Regex: true}}},
			[]testSpan{{}}, false},
		{"array element", Config{Policies: []PolicyConfig{{Type: "string_attribute", Key: "tags", Values: []string{"vip"}}}},
			[]testSpan{{attrs: map[string]any{"tags": []string{"a", "vip"}}}}, true},
		{"inverted", Config{Policies: []PolicyConfig{{Type: "string_attribute", Key: "db.system", Values: []string{"mongodb"}, Invert: true}}},
			[]testSpan{{attrs: map[string]any{"db.system": "mongodb"}}}, false},
		{"numeric attribute", Config{Policies: []PolicyConfig{{Type: "numeric_attribute", Key: "http.response.status_code", Min: ptr(500), Max: ptr(599)}}},
			[]testSpan{{attrs: map[string]any{"http.response.status_code": 503}}}, true},
		{"numeric out of range", Config{Policies: []PolicyConfig{{Type: "numeric_attribute", Key: "http.response.status_code", Min: ptr(500)}}},
			[]testSpan{{attrs: map[string]any{"http.response.status_code": 200}}}, false},
		{"span count", Config{Policies: []PolicyConfig{{Type: "span_count", MinSpans: 2}}}, []testSpan{{}, {}}, true},
		{"always", Config{Policies: []PolicyConfig{{Type: "always_sample"}}}, []testSpan{{}}, true},
		{"and: both", Config{Policies: []PolicyConfig{{Type: "and", Policies: []PolicyConfig{{Type: "status_code"}, {Type: "latency", Threshold: time.Millisecond}}}}},
			[]testSpan{{err: true, dur: time.Second}}, true},
		{"and: one", Config{Policies: []PolicyConfig{{Type: "and", Policies: []PolicyConfig{{Type: "status_code"}, {Type: "latency", Threshold: time.Hour}}}}},
			[]testSpan{{err: true, dur: time.Second}}, false},
		{"head-sampled-out never up-sampled", Config{Policies: []PolicyConfig{{Type: "always_sample"}}}, []testSpan{{flags: 0x300}}, false},
		{"no flags field: unknown, kept", Config{Policies: []PolicyConfig{{Type: "always_sample"}}}, []testSpan{{noFlag: true}}, true},
	}
	for i, c := range cases {
		s, err := New(c.cfg, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if d := s.Decide(mkTrace(t, idOf(byte(i+1)), c.trace...)); d.Keep != c.keep {
			t.Errorf("%s: decision %+v, want keep=%v", c.name, d, c.keep)
		}
	}
}

func TestDecisionRemembered(t *testing.T) {
	s, _ := New(Config{KeepErrors: true, DecisionCache: 2}, nil)
	id := idOf(9)
	if !s.Decide(mkTrace(t, id, testSpan{err: true})).Keep {
		t.Fatal("error trace dropped")
	}
	// A late part of the same trace with no error follows the first decision.
	if !s.Decide(mkTrace(t, id, testSpan{})).Keep {
		t.Fatal("late part did not follow its trace's decision")
	}
	dropped := idOf(10)
	s.Decide(mkTrace(t, dropped, testSpan{}))
	if s.Decide(mkTrace(t, dropped, testSpan{err: true})).Keep {
		t.Fatal("late part of a dropped trace kept")
	}
	// The cache is bounded: two more decisions push the first out.
	s.Decide(mkTrace(t, idOf(11), testSpan{}))
	s.Decide(mkTrace(t, idOf(12), testSpan{}))
	if len(s.cache) != 2 {
		t.Fatalf("cache holds %d decisions, bound is 2", len(s.cache))
	}
}

func TestCompositeRateCap(t *testing.T) {
	s, err := New(Config{Policies: []PolicyConfig{{Type: "composite", Policies: []PolicyConfig{
		{Name: "capped", Type: "always_sample", MaxSpansPerSecond: 10},
	}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for i := 0; i < 50; i++ {
		if s.Decide(mkTrace(t, idOf(byte(100+i)), testSpan{})).Keep {
			kept++
		}
	}
	if kept < 10 || kept > 12 {
		t.Fatalf("kept %d one-span traces under a 10 spans/s cap", kept)
	}
}

func TestBadConfig(t *testing.T) {
	for _, pc := range []PolicyConfig{{Type: "nope"}, {Type: "latency"}, {Type: "probabilistic", Ratio: 2},
		{Type: "string_attribute", Key: "k"}, {Type: "string_attribute", Key: "k", Values: []string{"("}, Regex: true},
		{Type: "and"}, {Type: "status_code", StatusCodes: []string{"BAD"}}} {
		if _, err := New(Config{Policies: []PolicyConfig{pc}}, nil); err == nil {
			t.Errorf("%+v accepted", pc)
		}
	}
}
