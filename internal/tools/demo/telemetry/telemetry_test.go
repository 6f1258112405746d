package telemetry

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestProtocol(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "")
	if p := Protocol(); p != "http/protobuf" {
		t.Errorf("default %q", p)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	if p := Protocol(); p != "grpc" {
		t.Errorf("general variable: %q", p)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
	if p := Protocol(); p != "http/protobuf" {
		t.Errorf("traces variable should win: %q", p)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
	if _, err := NewProvider(context.Background(), Options{ServiceName: "x"}); err == nil {
		t.Error("http/json should be refused")
	}
}

// spanOf starts and ends one span on a provider built from the environment and returns what the
// SDK recorded, or nil if it was not sampled.
func spanOf(t *testing.T, o Options) sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	o.Processors = append(o.Processors, rec)
	// Nothing listens here; with at most one span to send, shutdown gives up quickly.
	o.Endpoint = "127.0.0.1:1"
	tp, err := NewProvider(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "op")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	tp.Shutdown(ctx)
	if len(rec.Ended()) == 0 {
		return nil
	}
	return rec.Ended()[0]
}

func TestEnvironment(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,service.name=ignored")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	res := func(s sdktrace.ReadOnlySpan) map[string]string {
		out := map[string]string{}
		for _, kv := range s.Resource().Attributes() {
			out[string(kv.Key)] = kv.Value.Emit()
		}
		return out
	}
	got := res(spanOf(t, Options{ServiceName: "task-api", ServiceVersion: "1.0.0"}))
	if got["service.name"] != "from-env" || got["deployment.environment.name"] != "test" || got["service.version"] != "1.0.0" {
		t.Errorf("resource %v", got)
	}
	got = res(spanOf(t, Options{ServiceName: "task-api", ForceServiceName: true}))
	if got["service.name"] != "task-api" || got["deployment.environment.name"] != "test" {
		t.Errorf("forced name: resource %v", got)
	}

	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	if s := spanOf(t, Options{ServiceName: "task-api"}); s != nil {
		t.Errorf("OTEL_TRACES_SAMPLER=always_off was not honoured")
	}
}
