package server_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	pb "github.com/ariadne-tracing/ariadne/internal/serve/tempogrpc/streamingpb"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
)

// fillScheduler holds the one query slot and the one queue place of the default tenant, so
// that every further query of that tenant is refused at once; the returned func frees both.
func fillScheduler(t *testing.T, s *server.Server) func() {
	t.Helper()
	release, err := s.Queries.Acquire(t.Context(), api.DefaultTenant, 0)
	if err != nil {
		t.Fatal(err)
	}
	queued := make(chan func(), 1)
	go func() {
		r, err := s.Queries.Acquire(t.Context(), api.DefaultTenant, 0)
		if err != nil {
			r = func() {}
		}
		queued <- r
	}()
	for s.Queries.Stats().Queued != 1 {
		time.Sleep(time.Millisecond)
	}
	var once sync.Once
	return func() { once.Do(func() { release(); (<-queued)() }) }
}

// refusedEverywhere checks that, with the scheduler full, every query path of node s is refused
// (HTTP 429 with Retry-After, gRPC ResourceExhausted) and the paths that are not queries still
// answer.
func refusedEverywhere(t *testing.T, s *server.Server) {
	t.Helper()
	free := fillScheduler(t, s)
	defer free()
	base := "http://" + s.HTTPAddr
	id := "0102030405060708090a0b0c0d0e0f10"
	for _, p := range []string{
		"/api/search?q=%7B%7D", "/api/search?tags=service.name%3Da", "/api/search/tags", "/api/v2/search/tags",
		"/api/search/tag/name/values", "/api/v2/search/tag/name/values",
		"/api/metrics/query_range?q=%7B%7D%20%7C%20rate()", "/api/metrics/query?q=%7B%7D%20%7C%20rate()",
		"/api/traces/" + id, "/api/v2/traces/" + id, "/api/analysis/traces/" + id, "/api/analysis/lints",
		"/api/analysis/diff?a=" + id + "&b=" + id, "/api/analysis/compare?q=%7B%7D",
		"/api/v3/services", "/api/v3/operations?service=a", "/api/v3/traces/" + id, "/api/v3/traces?query.service_name=a",
		"/api/v3/trace-summaries?query.service_name=a", "/api/services", "/api/operations?service=a", "/api/traces?service=a",
		"/jaeger/api/traces/" + id, "/jaeger/api/v3/traces/" + id, "/jaeger/api/services/a/operations",
		"/api/metrics/latencies?service=a",
	} {
		resp, body := tenantGet(t, base+p, api.DefaultTenant)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("GET %s with the scheduler full: %d %q %.200s", p, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	for _, p := range []string{"/api/echo", "/api/status/buildinfo", "/ready", "/metrics"} {
		if resp, body := tenantGet(t, base+p, api.DefaultTenant); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s (not a query) with the scheduler full: %d %.200s", p, resp.StatusCode, body)
		}
	}
	conn := grafanaClient(t, base)
	calls := map[string]func() error{
		"Search": func() error {
			_, err := streamAll[pb.SearchResponse](t.Context(), conn, "/tempopb.StreamingQuerier/Search", &pb.SearchRequest{Query: "{}"})
			return err
		},
		"MetricsQueryRange": func() error {
			_, err := streamAll[pb.QueryRangeResponse](t.Context(), conn, "/tempopb.StreamingQuerier/MetricsQueryRange",
				&pb.QueryRangeRequest{Query: "{} | rate()"})
			return err
		},
		"MetricsQueryInstant": func() error {
			_, err := streamAll[pb.QueryInstantResponse](t.Context(), conn, "/tempopb.StreamingQuerier/MetricsQueryInstant",
				&pb.QueryInstantRequest{Query: "{} | rate()"})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "retry") {
			t.Errorf("gRPC %s with the scheduler full: %v", name, err)
		}
	}
	free()
	// Once there is room, the same calls are answered.
	if err := calls["Search"](); err != nil {
		t.Errorf("gRPC Search after the scheduler emptied: %v", err)
	}
	if resp, body := tenantGet(t, base+"/api/search?q=%7B%7D", api.DefaultTenant); resp.StatusCode != http.StatusOK {
		t.Errorf("search after the scheduler emptied: %d %.200s", resp.StatusCode, body)
	}
}

// Every query path passes through the scheduler: Tempo's, Jaeger's and Ariadne's HTTP queries
// and Tempo's streaming gRPC calls, on a single node and on a query node (--target query).
func TestSchedulerOnEveryQueryPath(t *testing.T) {
	t.Run("all", func(t *testing.T) {
		cfg := testConfig(t.TempDir())
		cfg.Query.MaxConcurrentQueries = 1
		cfg.Query.MaxOutstandingPerTenant = 1
		refusedEverywhere(t, startServer(t, cfg))
	})
	t.Run("query", func(t *testing.T) {
		cfg := clusterConfig(t, miniotest.Start(t), config.TargetQuery)
		cfg.Query.MaxConcurrentQueries = 1
		cfg.Query.MaxOutstandingPerTenant = 1
		refusedEverywhere(t, startServer(t, cfg))
	})
}
