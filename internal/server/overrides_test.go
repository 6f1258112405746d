package server_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/config"
)

// TestPerTenantOverridesReloaded: a tenant's rate comes from the overrides section of the config
// file, other tenants keep the default, and editing the file changes the tenant's rate while the
// server runs.
func TestPerTenantOverridesReloaded(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ariadne.yaml")
	write := func(rate string) {
		body := "multitenancy_enabled: true\noverrides:\n  per_tenant:\n    alpha: {rate_limit_spans_per_second: " + rate + "}\n"
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("100")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	base := testConfig(filepath.Join(dir, "data"))
	cfg.DataDir, cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr, cfg.HTTPAddr, cfg.ZipkinAddr = base.DataDir, base.OTLPGRPCAddr, base.OTLPHTTPAddr, base.HTTPAddr, base.ZipkinAddr
	s := startServer(t, cfg)
	client := grpcClient(t, s)
	as := func(tenant string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "x-scope-orgid", tenant)
	}
	next := byte(1)
	spans := func(n int) []*tracepb.Span {
		var out []*tracepb.Span
		for i := 0; i < n; i++ {
			sp := validSpan(next, byte(i%200+1))
			sp.TraceId[1] = byte(i / 200)
			out = append(out, sp)
		}
		next++
		return out
	}
	if _, err := client.Export(as("alpha"), request(spans(100)...)); err != nil {
		t.Fatalf("alpha within its burst: %v", err)
	}
	if _, err := client.Export(as("alpha"), request(spans(100)...)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("alpha over its override of 100 spans/s: %v", err)
	}
	for range 3 {
		if _, err := client.Export(as("bravo"), request(spans(100)...)); err != nil {
			t.Fatalf("bravo has no override and no default limit: %v", err)
		}
	}
	// Raise alpha's rate in the file; the running server picks it up.
	write("1000000")
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := client.Export(as("alpha"), request(spans(100)...))
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("alpha after raising its override: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Back to 100 spans/s, then a file that no longer parses: the last good overrides stay in
	// force (the default, unlimited, would let alpha through).
	write("100")
	deadline = time.Now().Add(20 * time.Second)
	for {
		_, err := client.Export(as("alpha"), request(spans(150)...))
		if status.Code(err) == codes.ResourceExhausted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alpha after lowering its override again: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := os.WriteFile(path, []byte("overrides: [not, a, map\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	// 400 spans at once against a burst of 100: some must be refused.
	refused := 0
	for range 5 {
		if _, err := client.Export(as("alpha"), request(spans(80)...)); status.Code(err) == codes.ResourceExhausted {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("alpha after a broken edit of the file is no longer limited to 100 spans/s")
	}
}
