package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/auth"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

// Test tokens: the configuration holds only their hashes.
const (
	tokWrite   = "write-token-0123456789abcdef"
	tokRead    = "read-token-0123456789abcdef"
	tokAdmin   = "admin-token-0123456789abcdef"
	tokMetrics = "metrics-token-0123456789abcdef"
)

func authConfig(dir string) config.Config {
	cfg := testConfig(dir)
	cfg.PprofEnabled = true
	cfg.Auth = auth.Config{Enabled: true, Tokens: []auth.Token{
		{Name: "sdk", SHA256: auth.HashToken(tokWrite), Role: auth.RoleWrite, Tenants: []string{"*"}},
		{Name: "grafana", SHA256: auth.HashToken(tokRead), Role: auth.RoleRead, Tenants: []string{"*"}},
		{Name: "ops", SHA256: auth.HashToken(tokAdmin), Role: auth.RoleAdmin, Tenants: []string{"*"}},
		{Name: "prometheus", SHA256: auth.HashToken(tokMetrics), Role: auth.RoleMetrics},
	}}
	return cfg
}

// spansToExport records one finished span through the real SDK, for exporters to send.
func spansToExport(t *testing.T, name string) []sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, sp := tp.Tracer("auth-test").Start(context.Background(), name)
	sp.End()
	return rec.Ended()
}

func getAuth(t *testing.T, url, authz string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func scrapeAuth(t *testing.T, s *server.Server, token string) map[string]*dto.MetricFamily {
	t.Helper()
	code, _, b := getAuth(t, "http://"+s.HTTPAddr+"/metrics", "Bearer "+token)
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// TestAuthOnEveryListener: with authentication on, every listener refuses a missing or wrong
// token and a token of the wrong role, and accepts the right one, through the real
// OpenTelemetry SDK over gRPC and HTTP (configured only by OTEL_EXPORTER_OTLP_HEADERS).
func TestAuthOnEveryListener(t *testing.T) {
	s := startServer(t, authConfig(t.TempDir()))
	ctx := context.Background()

	exportGRPC := func(headers string) error {
		t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", headers)
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr), otlptracegrpc.WithInsecure(),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
		if err != nil {
			t.Fatal(err)
		}
		defer exp.Shutdown(ctx)
		return exp.ExportSpans(ctx, spansToExport(t, "grpc "+headers))
	}
	exportHTTP := func(headers string) error {
		t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", headers)
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.OTLPHTTPAddr), otlptracehttp.WithInsecure(),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
		if err != nil {
			t.Fatal(err)
		}
		defer exp.Shutdown(ctx)
		return exp.ExportSpans(ctx, spansToExport(t, "http "+headers))
	}
	for _, c := range []struct {
		name, headers string
		grpcCode      codes.Code
		httpStatus    string
	}{
		{"no token", "", codes.Unauthenticated, "401"},
		{"wrong token", "authorization=Bearer not-a-token", codes.Unauthenticated, "401"},
		{"read token writing", "authorization=Bearer " + tokRead, codes.PermissionDenied, "403"},
		{"metrics token writing", "authorization=Bearer " + tokMetrics, codes.PermissionDenied, "403"},
		{"write token", "authorization=Bearer " + tokWrite, codes.OK, ""},
	} {
		err := exportGRPC(c.headers)
		if got := status.Code(err); got != c.grpcCode {
			t.Errorf("gRPC, %s: %v, want %s", c.name, err, c.grpcCode)
		}
		err = exportHTTP(c.headers)
		if (c.httpStatus == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.httpStatus)) {
			t.Errorf("HTTP, %s: %v, want %q", c.name, err, c.httpStatus)
		}
	}

	// Zipkin takes the same write token.
	zipkinBody := []byte(fmt.Sprintf(`[{"traceId":"5af7183fb1d4cf5f5af7183fb1d4cf5f","id":"6b221d5bc9e6496c","name":"zipkin span",
		"timestamp":%d,"duration":1000,"localEndpoint":{"serviceName":"zk"}}]`, time.Now().Add(-time.Second).UnixMicro()))
	for _, c := range []struct {
		authz string
		code  int
	}{{"", 401}, {"Bearer nope", 401}, {"Bearer " + tokRead, 403}, {"Bearer " + tokWrite, 202}} {
		var hdr []string
		if c.authz != "" {
			hdr = []string{"Authorization", c.authz}
		}
		resp, b := post(t, "http://"+s.ZipkinAddr+"/api/v2/spans", "application/json", zipkinBody, hdr...)
		if resp.StatusCode != c.code {
			t.Errorf("Zipkin with %q: %d %s, want %d", c.authz, resp.StatusCode, b, c.code)
		}
	}

	// The query port: each path wants its role.
	base := "http://" + s.HTTPAddr
	var traceID string
	deadline := time.Now().Add(10 * time.Second)
	for traceID == "" && time.Now().Before(deadline) {
		var res struct {
			Traces []struct{ TraceID string } `json:"traces"`
		}
		code, _, b := getAuth(t, base+`/api/search?q=`+`%7B%20name%20%3D%20%22zipkin%20span%22%20%7D`, "Bearer "+tokRead)
		if code != 200 {
			t.Fatalf("search with a read token: %d %s", code, b)
		}
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		if len(res.Traces) > 0 {
			traceID = res.Traces[0].TraceID
		}
		time.Sleep(50 * time.Millisecond)
	}
	if traceID == "" {
		t.Fatal("the span sent over Zipkin with the write token is not searchable")
	}
	for _, c := range []struct {
		path, token string
		code        int
	}{
		{"/ready", "", 200},
		{"/live", "", 200},
		{"/api/echo", "", 200},
		{"/api/search", "", 401},
		{"/api/search", "nope", 401},
		{"/api/search", tokWrite, 403},
		{"/api/search", tokMetrics, 403},
		{"/api/search", tokRead, 200},
		{"/api/search", tokAdmin, 200},
		{"/api/traces/" + traceID, tokRead, 200},
		{"/api/v2/search/tags", tokRead, 200},
		{"/api/status/buildinfo", "", 401},
		{"/api/status/buildinfo", tokRead, 200},
		// The UI's pages and files hold no data and load before its login form has a token.
		{"/", "", 200},
		{"/trace/" + traceID, "", 200},
		{"/api/status/tenants", "", 401},
		{"/api/status/tenants", tokRead, 200},
		{"/internal/v1/traces/" + traceID, "", 401},
		{"/metrics", "", 401},
		{"/metrics", tokRead, 403},
		{"/metrics", tokMetrics, 200},
		{"/metrics", tokAdmin, 200},
		{"/debug/pprof/", "", 401},
		{"/debug/pprof/", tokRead, 403},
		{"/debug/pprof/", tokAdmin, 200},
	} {
		authz := ""
		if c.token != "" {
			authz = "Bearer " + c.token
		}
		code, hdr, b := getAuth(t, base+c.path, authz)
		if code != c.code {
			t.Errorf("GET %s with %q: %d %.200s, want %d", c.path, c.token, code, b, c.code)
		}
		if code == 401 && !strings.Contains(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET %s: 401 without a Bearer challenge: %q", c.path, hdr.Get("WWW-Authenticate"))
		}
	}

	// A refusal says nothing about whether the trace exists: the answer for a stored trace and
	// for one that never was are byte for byte the same.
	for _, authz := range []string{"", "Bearer nope", "Bearer " + tokWrite} {
		c1, _, b1 := getAuth(t, base+"/api/traces/"+traceID, authz)
		c2, _, b2 := getAuth(t, base+"/api/traces/0123456789abcdef0123456789abcdef", authz)
		if c1 == 200 || c1 != c2 || !bytes.Equal(b1, b2) {
			t.Errorf("with %q: existing trace %d %q, missing trace %d %q", authz, c1, b1, c2, b2)
		}
	}

	fams := scrapeAuth(t, s, tokMetrics)
	for _, c := range []struct {
		listener, reason string
		want             float64
	}{
		{"otlp_grpc", "missing", 1}, {"otlp_grpc", "invalid", 1}, {"otlp_grpc", "role", 2},
		{"otlp_http", "missing", 1}, {"otlp_http", "invalid", 1}, {"otlp_http", "role", 2},
		{"zipkin", "missing", 1}, {"zipkin", "invalid", 1}, {"zipkin", "role", 1},
	} {
		if got := metricValue(fams, "ariadne_auth_failures_total", map[string]string{"listener": c.listener, "reason": c.reason}); got != c.want {
			t.Errorf("ariadne_auth_failures_total{listener=%q,reason=%q} = %v, want %v", c.listener, c.reason, got, c.want)
		}
	}
	if got := metricValue(fams, "ariadne_auth_failures_total", map[string]string{"listener": "http"}); got < 15 {
		t.Errorf("query port refusals counted: %v", got)
	}
}

// The configuration refuses a token given in clear, and authentication with no token at all.
func TestAuthConfigRefused(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Auth = auth.Config{Enabled: true, Tokens: []auth.Token{{Name: "oops", SHA256: tokWrite, Role: auth.RoleWrite}}}
	if s, err := server.Start(cfg, api.BuildInfo{}, nil); err == nil {
		s.Stop(context.Background())
		t.Fatal("a token in clear was accepted as its hash")
	} else if !strings.Contains(err.Error(), "sha256") {
		t.Errorf("error %q does not say what is wrong", err)
	}
}
