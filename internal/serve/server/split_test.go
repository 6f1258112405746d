package server_test

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestSplitTraceJudgedWhole sends a trace's root through the SDK, flushes it to a block, then
// sends its child in a later export so it lands in the head, and checks that the query API sees
// one trace: the structural query, count() and the trace's duration all span both parts.
func TestSplitTraceJudgedWhole(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.OTLPHTTPAddr), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithResource(sdkresource.NewSchemaless(attribute.String("service.name", "split-svc"))))
	defer tp.Shutdown(ctx)
	tr := tp.Tracer("split")
	start := time.Now().Add(-time.Minute)
	rctx, root := tr.Start(ctx, "root", trace.WithTimestamp(start))
	root.End(trace.WithTimestamp(start.Add(10 * time.Millisecond)))
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(s.Store.Blocks()) != 1 {
		t.Fatalf("%d blocks after the root's flush", len(s.Store.Blocks()))
	}
	// The child outlives its parent by a second and is sent after it was flushed.
	_, child := tr.Start(rctx, "child", trace.WithTimestamp(start.Add(5*time.Millisecond)))
	child.End(trace.WithTimestamp(start.Add(time.Second)))
	if s.Store.Head().Stats().Spans != 1 {
		t.Fatalf("head holds %d spans, want the child", s.Store.Head().Stats().Spans)
	}
	base := "http://" + s.HTTPAddr
	rng := "&start=" + strconv.FormatInt(start.Add(-time.Minute).Unix(), 10) + "&end=" + strconv.FormatInt(time.Now().Unix()+60, 10)
	var res struct {
		Traces []struct {
			TraceID         string `json:"traceID"`
			RootServiceName string `json:"rootServiceName"`
			RootTraceName   string `json:"rootTraceName"`
			DurationMs      int64  `json:"durationMs"`
		} `json:"traces"`
	}
	for _, q := range []string{`{ name = "root" } >> { name = "child" }`, `{ } | count() = 2`,
		`{ trace:duration >= 1s && name = "child" }`, `{ trace:rootName = "root" && name = "child" }`} {
		res.Traces = nil
		getJSON(t, base, "/api/search?q="+url.QueryEscape(q)+rng, 200, &res)
		if len(res.Traces) != 1 || res.Traces[0].TraceID != root.SpanContext().TraceID().String() {
			t.Errorf("%s: %+v, want the split trace", q, res.Traces)
			continue
		}
		if got := res.Traces[0]; got.DurationMs != 1000 || got.RootTraceName != "root" || got.RootServiceName != "split-svc" {
			t.Errorf("%s: reported %+v, want the whole trace: 1000 ms, root \"root\" of split-svc", q, got)
		}
	}
}
