package receive

import (
	"context"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestGRPCOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		result Result
		err    error
		code   codes.Code
		retry  time.Duration // RetryInfo delay; zero means none expected
	}{
		{"success", Result{}, nil, codes.OK, 0},
		{"partial success", Result{RejectedSpans: 2, Message: "2 spans have invalid span ids"}, nil, codes.OK, 0},
		{"malformed", Result{}, malformedErr{context.Canceled}, codes.InvalidArgument, 0},
		{"rate limited", Result{}, overloadErr{after: 1500 * time.Millisecond, rateLimited: true}, codes.ResourceExhausted, 1500 * time.Millisecond},
		{"overloaded", Result{}, overloadErr{after: 3 * time.Second}, codes.Unavailable, 3 * time.Second},
		{"overloaded no RateLimited method", Result{}, plainRetryErr{after: 250 * time.Millisecond}, codes.Unavailable, 250 * time.Millisecond},
		{"disk error", Result{}, errDisk, codes.Internal, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{respond: func(*coltracepb.ExportTraceServiceRequest) (Result, error) { return tc.result, tc.err }}
			client := coltracepb.NewTraceServiceClient(dialGRPC(t, startGRPC(t, rec, GRPCConfig{})))
			resp, err := client.Export(testContext(t), oneSpanRequest())
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("code %v (%v), want %v", st.Code(), err, tc.code)
			}
			if len(rec.spans()) != 1 {
				t.Errorf("consumer saw %d spans", len(rec.spans()))
			}
			if tc.err == nil {
				ps := resp.GetPartialSuccess()
				if ps.GetRejectedSpans() != tc.result.RejectedSpans || ps.GetErrorMessage() != tc.result.Message {
					t.Errorf("partial success %v, want %+v", ps, tc.result)
				}
				return
			}
			if !strings.Contains(st.Message(), tc.err.Error()) {
				t.Errorf("message %q lacks %q", st.Message(), tc.err.Error())
			}
			var got time.Duration
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					got = ri.GetRetryDelay().AsDuration()
				}
			}
			if got != tc.retry {
				t.Errorf("RetryInfo delay %v, want %v (details %v)", got, tc.retry, st.Details())
			}
		})
	}
}

func TestGRPCGarbageEmptyAndLimits(t *testing.T) {
	rec := &recorder{}
	addr := startGRPC(t, rec, GRPCConfig{MaxRecvMsgBytes: 4096})
	conn := dialGRPC(t, addr)
	ctx := testContext(t)

	// A BytesValue's encoding reads as resource_spans holding garbage, which
	// only the consumer notices since the receiver does not decode.
	var resp coltracepb.ExportTraceServiceResponse
	err := conn.Invoke(ctx, exportMethod, wrapperspb.Bytes([]byte{0xff, 0xff, 0xff}), &resp)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "does not decode") {
		t.Errorf("garbage: %v", err)
	}

	client := coltracepb.NewTraceServiceClient(conn)
	calls := rec.callCount()
	if resp, err := client.Export(ctx, &coltracepb.ExportTraceServiceRequest{}); err != nil || resp.PartialSuccess != nil {
		t.Errorf("empty request: %v %v", resp, err)
	}
	if rec.callCount() != calls {
		t.Errorf("empty request reached the consumer")
	}

	big := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{SchemaUrl: strings.Repeat("x", 5000)}}}
	if _, err := client.Export(ctx, big); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized: %v", err)
	}
	// Compressed below the limit, but not after decompression.
	if _, err := client.Export(ctx, big, grpc.UseCompressor(gzip.Name)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized after decompression: %v", err)
	}
	if _, err := client.Export(ctx, oneSpanRequest(), grpc.UseCompressor(gzip.Name)); err != nil {
		t.Errorf("gzip request: %v", err)
	}
	if spans := rec.spans(); len(spans) != 1 || spans[0].Name != "s" {
		t.Errorf("consumer got %v", spans)
	}
}

// TestGRPCSharedServer checks that the forced codec leaves other services
// on the same server, and interceptors, working.
func TestGRPCSharedServer(t *testing.T) {
	rec := &recorder{}
	var intercepted string
	s := NewGRPCServer(rec, GRPCConfig{}, grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			intercepted = info.FullMethod
			return handler(ctx, req)
		}))
	healthpb.RegisterHealthServer(s, health.NewServer())
	addr := startServer(t, s)
	conn := dialGRPC(t, addr)
	ctx := testContext(t)

	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, oneSpanRequest()); err != nil {
		t.Fatal(err)
	}
	if intercepted != exportMethod {
		t.Errorf("interceptor saw %q", intercepted)
	}
	if len(rec.spans()) != 1 {
		t.Errorf("consumer got %d spans", len(rec.spans()))
	}
}
