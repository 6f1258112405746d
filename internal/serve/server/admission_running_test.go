package server_test

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	pb "github.com/ariadne-tracing/ariadne/internal/serve/tempogrpc/streamingpb"
)

// slowQueryServer is a server whose searches run long: its head holds 20,000 traces, queries
// work 1% of the time while ingest is busy, and ingest stays busy (a span exported every 100
// ms) for the rest of the test. `{ } | avg(duration) > 1h` matches none of the 1 ms traces and
// no index can rule them out, so a search reads every one of them, pausing between traces:
// seconds, against timeouts and cancellations that come within a few hundred milliseconds.
func slowQueryServer(t *testing.T, timeout time.Duration) *server.Server {
	t.Helper()
	cfg := testConfig(t.TempDir())
	cfg.Ingest.MaxRequestBytes = 16 << 20
	cfg.Query.CPUShare = 0.01
	cfg.Query.Timeout = config.Duration(timeout)
	s := startServer(t, cfg)
	client := grpcClient(t, s)
	const traces, per = 20_000, 5_000
	start := uint64(time.Now().Add(-time.Minute).UnixNano())
	for done := 0; done < traces; done += per {
		var spans []*tracepb.Span
		for i := done; i < done+per; i++ {
			id := make([]byte, 16)
			binary.BigEndian.PutUint64(id[8:], uint64(i)+1)
			for j := range 3 {
				sp := &tracepb.Span{TraceId: id, SpanId: []byte{0, 0, 0, 0, 0, 0, 1, byte(j + 1)}, Name: "op",
					StartTimeUnixNano: start, EndTimeUnixNano: start + 1e6}
				if j > 0 {
					sp.ParentSpanId = []byte{0, 0, 0, 0, 0, 0, 1, 1}
				}
				spans = append(spans, sp)
			}
		}
		if _, err := client.Export(t.Context(), request(spans...)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	ingesting := make(chan struct{})
	go func() {
		defer close(ingesting)
		for i := 0; ctx.Err() == nil; i++ {
			client.Export(ctx, request(validSpan(0xee, byte(i))))
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { stop(); <-ingesting })
	return s
}

var slowSearch = "/api/search?limit=1000&q=" + url.QueryEscape(slowQuery)

const slowQuery = "{ } | avg(duration) > 1h"

// A query still running at query.timeout is stopped and answered 504 (over HTTP) or
// DeadlineExceeded (over Tempo's streaming gRPC API), and counted; a query that is refused
// while queued is the 429 of TestSchedulerTimeoutWhileQueued.
func TestQueryTimeoutWhileRunning(t *testing.T) {
	s := slowQueryServer(t, 500*time.Millisecond)
	resp, body := tenantGet(t, "http://"+s.HTTPAddr+slowSearch, "a")
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "timed out") {
		t.Fatalf("a search running past its timeout: %d %.300s", resp.StatusCode, body)
	}
	_, err := streamAll[pb.SearchResponse](t.Context(), grafanaClient(t, "http://"+s.HTTPAddr), "/tempopb.StreamingQuerier/Search",
		&pb.SearchRequest{Query: slowQuery, Limit: 1000})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a streaming search running past query.timeout: %v", err)
	}
	fams := scrape(t, s)
	if v := metricValue(fams, "ariadne_query_timed_out_total", nil); v != 2 {
		t.Fatalf("ariadne_query_timed_out_total %v, want 2", v)
	}
	if v := metricValue(fams, "ariadne_query_paused_seconds_total", nil); v <= 0 {
		t.Fatal("the searches never paused: the test did not slow them down")
	}
}

// A running query whose client goes away stops reading there and then, over HTTP and over
// Tempo's streaming gRPC API, and leaves its slot to the next.
func TestRunningQueryStopsWhenClientGoesAway(t *testing.T) {
	s := slowQueryServer(t, 10*time.Minute)
	for i, call := range []func(ctx context.Context){
		func(ctx context.Context) {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.HTTPAddr+slowSearch, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				t.Errorf("the slow search was answered %d before its client went away", resp.StatusCode)
			}
		},
		func(ctx context.Context) {
			_, err := streamAll[pb.SearchResponse](ctx, grafanaClient(t, "http://"+s.HTTPAddr), "/tempopb.StreamingQuerier/Search",
				&pb.SearchRequest{Query: slowQuery, Limit: 1000})
			if status.Code(err) != codes.Canceled {
				t.Errorf("streaming search of a client that went away: %v", err)
			}
		},
	} {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); call(ctx) }()
		waitGauge(t, s, "ariadne_query_running", 1)
		cancel()
		<-done
		// The query stops (and is counted as stopped, not answered), which frees its slot.
		waitGauge(t, s, "ariadne_query_running", 0)
		if v := metricValue(scrape(t, s), "ariadne_query_canceled_total", nil); v != float64(i+1) {
			t.Fatalf("call %d: ariadne_query_canceled_total %v: the query did not stop when its client went away", i, v)
		}
	}
	// And the server answers the next query as usual.
	q := url.QueryEscape(`{ span.nothing = "here" }`)
	if resp, body := tenantGet(t, "http://"+s.HTTPAddr+"/api/search?q="+q, "a"); resp.StatusCode != 200 {
		t.Fatalf("a query after the cancelled ones: %d %.200s", resp.StatusCode, body)
	}
}
