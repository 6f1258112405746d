package receive

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// recorder is a Consumer that decodes and keeps every request, or answers
// with whatever respond returns.
type recorder struct {
	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest
	calls    int
	respond  func(req *coltracepb.ExportTraceServiceRequest) (Result, error)
}

func (r *recorder) ConsumeTraces(ctx context.Context, body []byte) (Result, error) {
	r.mu.Lock()
	r.calls++
	r.mu.Unlock()
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		return Result{}, malformedErr{err}
	}
	r.mu.Lock()
	r.requests = append(r.requests, req)
	respond := r.respond
	r.mu.Unlock()
	if respond != nil {
		return respond(req)
	}
	return Result{}, nil
}

func (r *recorder) spans() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, req := range r.requests {
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out
}

func (r *recorder) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

type malformedErr struct{ err error }

func (e malformedErr) Error() string   { return "decoding request: " + e.err.Error() }
func (e malformedErr) Malformed() bool { return true }

type overloadErr struct {
	after       time.Duration
	rateLimited bool
}

func (e overloadErr) Error() string {
	return fmt.Sprintf("overloaded (rate limited: %v), retry in %v", e.rateLimited, e.after)
}
func (e overloadErr) RetryAfter() time.Duration { return e.after }
func (e overloadErr) RateLimited() bool         { return e.rateLimited }

// plainRetryErr has no RateLimited method at all.
type plainRetryErr struct{ after time.Duration }

func (e plainRetryErr) Error() string             { return "write-ahead log full" }
func (e plainRetryErr) RetryAfter() time.Duration { return e.after }

var errDisk = errors.New("wal: write: input/output error")

func startGRPC(t *testing.T, c Consumer, cfg GRPCConfig) string {
	t.Helper()
	return startServer(t, NewGRPCServer(c, cfg))
}

func startServer(t *testing.T, s *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, s, lis)
}

func serveOn(t *testing.T, s *grpc.Server, lis net.Listener) string {
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func startHTTP(t *testing.T, c Consumer, cfg HTTPConfig) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewHTTPHandler(c, cfg))
	t.Cleanup(srv.Close)
	return srv
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
