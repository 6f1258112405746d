package receive

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"testing"

	"google.golang.org/grpc/metadata"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

type tenantRecorder struct {
	mu      sync.Mutex
	tenants []string
}

func (r *tenantRecorder) ConsumeTraces(ctx context.Context, body []byte) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tenants = append(r.tenants, Tenant(ctx))
	return Result{}, nil
}

func TestTenantFromHeaderAndMetadata(t *testing.T) {
	rec := &tenantRecorder{}
	var refused []string
	srv := startHTTP(t, rec, HTTPConfig{Refused: func(r string) { refused = append(refused, r) }})
	body := mustMarshal(t, oneSpanRequest())
	for _, tenant := range []string{"team-a", ""} {
		req, _ := http.NewRequest("POST", srv.URL+TracesPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		if tenant != "" {
			req.Header.Set(TenantHeader, tenant)
		}
		if r := do(t, req); r.code != 200 {
			t.Fatalf("status %d", r.code)
		}
	}
	conn := dialGRPC(t, startGRPC(t, rec, GRPCConfig{}))
	ctx := metadata.AppendToOutgoingContext(testContext(t), "x-scope-orgid", "team-b")
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, oneSpanRequest()); err != nil {
		t.Fatal(err)
	}
	want := []string{"team-a", DefaultTenant, "team-b"}
	if len(rec.tenants) != 3 || rec.tenants[0] != want[0] || rec.tenants[1] != want[1] || rec.tenants[2] != want[2] {
		t.Fatalf("tenants %v, want %v", rec.tenants, want)
	}
	post(t, srv.URL+TracesPath, "text/plain", "", body)
	post(t, srv.URL+TracesPath, "application/json", "", []byte("{"))
	if len(refused) != 2 || refused[0] != "bad_content_type" || refused[1] != "malformed" {
		t.Fatalf("refusals reported %v", refused)
	}
}
