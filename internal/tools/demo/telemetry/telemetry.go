// Package telemetry builds the OpenTelemetry SDK for a demo service the way the guide's services
// are configured: from the standard OTEL_* environment variables, exporting over OTLP through a
// batch span processor, with W3C trace context and baggage propagation.
package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Options adjust what the environment does not say.
type Options struct {
	// ServiceName is used when OTEL_SERVICE_NAME does not name the service.
	ServiceName    string
	ServiceVersion string

	// Endpoint, when set, is an OTLP/gRPC host:port (plaintext) that replaces the environment's
	// exporter settings, for callers that run several services in one process against one
	// backend.
	Endpoint string
	// ForceServiceName keeps ServiceName even when OTEL_SERVICE_NAME is set: one process hosting
	// two services must not report both under the same name.
	ForceServiceName bool

	// Processors are added next to the exporting batch processor.
	Processors []sdktrace.SpanProcessor
}

// InstallPropagator sets the global propagator both demo services rely on for cross-service
// traces. otelhttp uses the global one unless told otherwise.
func InstallPropagator() {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
}

// NewProvider returns a tracer provider for one service. The sampler is left to the SDK so that
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG apply; the batch processor likewise honours
// OTEL_BSP_*. Shutting the provider down flushes what is still queued.
func NewProvider(ctx context.Context, o Options) (*sdktrace.TracerProvider, error) {
	exp, err := newExporter(ctx, o.Endpoint)
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, o)
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithBatcher(exp)}
	for _, p := range o.Processors {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

func newExporter(ctx context.Context, endpoint string) (sdktrace.SpanExporter, error) {
	if endpoint != "" {
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
		if err != nil {
			return nil, fmt.Errorf("OTLP/gRPC exporter for %s: %w", endpoint, err)
		}
		return exp, nil
	}
	// The exporters read the endpoint, headers, TLS and timeout variables themselves; only the
	// choice between them is ours to make.
	switch p := Protocol(); p {
	case "grpc":
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP/gRPC exporter: %w", err)
		}
		return exp, nil
	case "http/protobuf":
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP/HTTP exporter: %w", err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: only grpc and http/protobuf are supported", p)
	}
}

// Protocol is the OTLP protocol the environment asks for, the traces-specific variable first. The
// specification's default is http/protobuf.
func Protocol() string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
	}
	return "http/protobuf"
}

func newResource(ctx context.Context, o Options) (*resource.Resource, error) {
	defaults := []attribute.KeyValue{attribute.String("service.name", o.ServiceName)}
	if o.ServiceVersion != "" {
		defaults = append(defaults, attribute.String("service.version", o.ServiceVersion))
	}
	// Later detectors win, so the environment overrides the defaults, and a forced name
	// overrides the environment.
	detectors := []resource.Option{
		resource.WithTelemetrySDK(),
		resource.WithAttributes(defaults...),
		resource.WithFromEnv(),
	}
	if o.ForceServiceName {
		detectors = append(detectors, resource.WithAttributes(attribute.String("service.name", o.ServiceName)))
	}
	res, err := resource.New(ctx, detectors...)
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	return res, nil
}
