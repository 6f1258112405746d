package analyze

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

// collector receives what the real OTLP/HTTP exporter sends, so the analysis
// runs on exactly the protobuf an SDK produces, not on hand-built spans.
type collector struct {
	t   *testing.T
	srv *httptest.Server
	mu  sync.Mutex
	got *tracepb.TracesData
	tps []*sdktrace.TracerProvider
	// ids is shared so two services' counter IDs cannot collide.
	ids guidetrace.IDGenerator
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{t: t, got: &tracepb.TracesData{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		// ExportTraceServiceRequest and TracesData share field 1.
		var req tracepb.TracesData
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Error(err)
		}
		c.mu.Lock()
		c.got.ResourceSpans = append(c.got.ResourceSpans, req.ResourceSpans...)
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// provider returns an SDK provider for service exporting here, with the
// guide's deterministic ID generator.
func (c *collector) provider(service string, opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	c.t.Helper()
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(c.srv.URL+"/v1/traces"))
	if err != nil {
		c.t.Fatal(err)
	}
	// Blocking: the volume tests emit more spans than the default queue holds.
	tp := guidetrace.NewTracerProvider(service, append([]sdktrace.TracerProviderOption{sdktrace.WithBatcher(exp, sdktrace.WithBlocking()),
		sdktrace.WithIDGenerator(&c.ids)}, opts...)...)
	c.tps = append(c.tps, tp)
	return tp
}

func (c *collector) providers() guidetrace.Providers {
	return guidetrace.Providers{
		TaskAPI:      c.provider(guidetrace.ServiceTaskAPI),
		Notification: c.provider(guidetrace.ServiceNotification),
	}
}

// traces shuts every provider down and returns what arrived, by trace.
func (c *collector) traces() map[string]*tracepb.TracesData {
	c.t.Helper()
	for _, tp := range c.tps {
		if err := tp.Shutdown(context.Background()); err != nil {
			c.t.Fatal(err)
		}
	}
	c.tps = nil
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*tracepb.TracesData{}
	for _, rs := range c.got.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				id := hex.EncodeToString(s.GetTraceId())
				td, ok := out[id]
				if !ok {
					td = &tracepb.TracesData{}
					out[id] = td
				}
				td.ResourceSpans = append(td.ResourceSpans, &tracepb.ResourceSpans{
					Resource:   rs.GetResource(),
					ScopeSpans: []*tracepb.ScopeSpans{{Scope: ss.GetScope(), Spans: []*tracepb.Span{s}}},
				})
			}
		}
	}
	return out
}

// all returns everything that arrived as one TracesData.
func (c *collector) all() *tracepb.TracesData {
	c.traces()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got
}

// guideTraces emits the guide's traces and returns them with their OTLP form.
func guideTraces(t *testing.T) ([]guidetrace.Trace, map[string]*tracepb.TracesData) {
	t.Helper()
	c := newCollector(t)
	trs, err := guidetrace.EmitAll(context.Background(), c.providers(), guidetrace.DefaultBase)
	if err != nil {
		t.Fatal(err)
	}
	return trs, c.traces()
}

func guideTrace(t *testing.T, name string) (guidetrace.Trace, *tracepb.TracesData) {
	t.Helper()
	trs, tds := guideTraces(t)
	for _, tr := range trs {
		if tr.Name == name {
			return tr, tds[tr.TraceID.String()]
		}
	}
	t.Fatalf("no guide trace %q", name)
	return guidetrace.Trace{}, nil
}

// base is where hand-made test traces start; ms offsets from it.
var base = guidetrace.DefaultBase.Add(time.Hour)

func at(n float64) trace.SpanStartEventOption {
	return trace.WithTimestamp(base.Add(time.Duration(n * float64(time.Millisecond))))
}

func endAt(n float64) trace.SpanEndOption {
	return trace.WithTimestamp(base.Add(time.Duration(n * float64(time.Millisecond))))
}

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

type typicalMap map[string]time.Duration

func (m typicalMap) Typical(service, name string) (time.Duration, bool) {
	d, ok := m[service+"/"+name]
	return d, ok
}
