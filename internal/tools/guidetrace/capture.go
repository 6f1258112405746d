package guidetrace

import (
	"context"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// captureServer receives OTLP/gRPC exports and hands each request's wire bytes to observe, the
// way ingest hands them to its observers.
type captureServer struct {
	coltracepb.UnimplementedTraceServiceServer
	observe func([]byte)
}

func (c *captureServer) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	c.observe(b)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// ObserveAll sends every guide trace through the real SDK and its OTLP/gRPC exporter to a capture
// server built from the stock OTLP service, hands each request's wire bytes to observe (the way
// ingest hands them to its observers), and returns once all of them have been observed. For
// tests of ingest observers that need no Ariadne server.
func ObserveAll(t testing.TB, observe func([]byte)) []Trace {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, &captureServer{observe: observe})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(lis.Addr().String()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	p := NewProviders(sdktrace.WithBatcher(exp))
	traces, err := EmitAll(ctx, p, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// The exporter returns only after the server answered, so once both providers are flushed
	// every request has been observed.
	if err := p.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	// Both providers share the exporter, so the second shutdown finds it closed already.
	_ = p.Shutdown(ctx)
	return traces
}
