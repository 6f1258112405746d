package server_test

import (
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

// bigTrace exports one trace of n spans over gRPC and returns its ID.
func bigTrace(t testing.TB, s *server.Server, n int, seed byte) [16]byte {
	t.Helper()
	var id [16]byte
	for i := range id {
		id[i] = seed ^ byte(i*31+7)
	}
	client := grpcClient(t, s)
	const per = 5000
	for done := 0; done < n; done += per {
		var spans []*tracepb.Span
		for i := done; i < min(n, done+per); i++ {
			sid := []byte{seed, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 1, 2, 3}
			start := uint64(time.Now().Add(-time.Minute).UnixNano()) + uint64(i)*1000
			sp := &tracepb.Span{TraceId: id[:], SpanId: sid, Name: fmt.Sprintf("op-%d", i%50), StartTimeUnixNano: start, EndTimeUnixNano: start + 5e5,
				Attributes: []*commonpb.KeyValue{{Key: "payload", Value: sv(strings.Repeat("x", 64))}, {Key: "n", Value: &commonpb.AnyValue{
					Value: &commonpb.AnyValue_IntValue{IntValue: int64(i)}}}}}
			if i > 0 {
				sp.ParentSpanId = []byte{seed, 0, 0, 0, 0, 1, 2, 3}
			}
			spans = append(spans, sp)
		}
		if _, err := client.Export(t.Context(), request(spans...)); err != nil {
			t.Fatalf("export big trace: %v", err)
		}
	}
	return id
}

// stalledGet sends a request and never reads the answer, with a tiny receive buffer, so the
// server's handler blocks writing it — and holds its query slot — until the socket is closed.
func stalledGet(t *testing.T, addr, path, tenant string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: ariadne\r\nX-Scope-OrgID: %s\r\n\r\n", path, tenant)
	t.Cleanup(func() { c.Close() })
	return c
}

func waitGauge(t *testing.T, s *server.Server, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := metricValue(scrape(t, s), name, nil)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, v, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tenantGet(t *testing.T, url, tenant string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-Scope-OrgID", tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// With one query slot held by a client that stopped reading, the next query waits, the one
// after is refused with 429 and Retry-After, a waiting client that hangs up leaves the queue,
// and when the stalled client goes away its slot passes to the query waiting next. (Serving
// tenants in turn is the scheduler's own test: without authentication every query is the
// default tenant's.)
func TestSchedulerOverload(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Ingest.MaxRequestBytes = 16 << 20
	cfg.Ingest.MaxSpansPerTrace = -1
	cfg.Query.MaxConcurrentQueries = 1
	cfg.Query.MaxOutstandingPerTenant = 1
	s := startServer(t, cfg)
	id := bigTrace(t, s, 30_000, 1)
	path := "/api/v2/traces/" + hex.EncodeToString(id[:])
	base := "http://" + s.HTTPAddr

	running := stalledGet(t, s.HTTPAddr, path, "a")
	waitGauge(t, s, "ariadne_query_running", 1)
	queued := stalledGet(t, s.HTTPAddr, path, "a")
	waitGauge(t, s, "ariadne_query_queued", 1)

	resp, body := tenantGet(t, base+"/api/search?q="+`%7B%7D`, "a")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("query past a full queue: %d %s", resp.StatusCode, body)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("429 without a usable Retry-After: %q", resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(body, `queued for tenant "`) {
		t.Fatalf("429 message does not say whose queue is full: %s", body)
	}
	if v := metricValue(scrape(t, s), "ariadne_query_rejected_total", nil); v != 1 {
		t.Fatalf("rejected counter %v", v)
	}

	// The waiting client hangs up: its request leaves the queue without running, which makes
	// room for another.
	queued.Close()
	waitGauge(t, s, "ariadne_query_queued", 0)
	done := make(chan string, 1)
	go func() {
		resp, body := tenantGet(t, base+"/api/search?q="+`%7B%7D`, "a")
		done <- fmt.Sprintf("%d %s", resp.StatusCode, body)
	}()
	waitGauge(t, s, "ariadne_query_queued", 1)

	// The stalled client goes away: its query ends, and the waiting one runs.
	running.Close()
	select {
	case got := <-done:
		if !strings.HasPrefix(got, "200 ") || !strings.Contains(got, `"traces"`) {
			t.Fatalf("the waiting query after the slot was freed: %.200s", got)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the waiting query never ran after the slot was freed")
	}
	waitGauge(t, s, "ariadne_query_running", 0)
	waitGauge(t, s, "ariadne_query_queued", 0)
}

// A query that waits its whole timeout for a slot is answered 429 with Retry-After: the server
// is busy, not failing. The one slot is held for the whole test, so the wait always times out.
func TestSchedulerTimeoutWhileQueued(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Query.MaxConcurrentQueries = 1
	cfg.Query.Timeout = config.Duration(300 * time.Millisecond)
	s := startServer(t, cfg)
	release, err := s.Queries.Acquire(t.Context(), "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	resp, body := tenantGet(t, "http://"+s.HTTPAddr+"/api/search", "b")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "waited") {
		t.Fatalf("query that timed out in the queue: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// Endpoints that are not queries are not queued behind them.
	if resp, body := tenantGet(t, "http://"+s.HTTPAddr+"/api/echo", "b"); resp.StatusCode != 200 {
		t.Fatalf("echo while queries are full: %d %s", resp.StatusCode, body)
	}
}

// A query that runs while ingest is busy pauses between its units of work (here the chunks of
// a large trace read from a block) to leave ingest its share of the CPU, and says so in
// ariadne_query_paused_seconds_total; the answer is whole all the same.
func TestQueriesPauseForIngest(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Ingest.MaxRequestBytes = 16 << 20
	cfg.Ingest.MaxSpansPerTrace = -1
	s := startServer(t, cfg)
	id := bigTrace(t, s, 20_000, 3)
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	if v := metricValue(scrape(t, s), "ariadne_query_paused_seconds_total", nil); v != 0 {
		t.Fatalf("paused %v s before any query", v)
	}
	bigTrace(t, s, 1, 4) // ingest is busy as the query runs
	resp, body := tenantGet(t, "http://"+s.HTTPAddr+"/api/v2/traces/"+hex.EncodeToString(id[:]), "a")
	if resp.StatusCode != 200 || strings.Count(body, `"spanId"`) != 20_000 {
		t.Fatalf("trace read while pausing: %d, %d spans", resp.StatusCode, strings.Count(body, `"spanId"`))
	}
	if v := metricValue(scrape(t, s), "ariadne_query_paused_seconds_total", nil); v <= 0 {
		t.Fatalf("paused %v s reading 20,000 spans while ingest was busy", v)
	}
}

// The queues are per tenant, as the API names them (X-Scope-OrgID with multi-tenancy on):
// tenant a with its queue full is refused while tenant b's query still waits its turn and is
// answered. The order queues are served in is the scheduler's TestTenantsServedInTurn.
func TestQueueIsPerTenant(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.MultitenancyEnabled = true
	cfg.Query.MaxConcurrentQueries = 1
	cfg.Query.MaxOutstandingPerTenant = 1
	s := startServer(t, cfg)
	hold, err := s.Queries.Acquire(t.Context(), "someone", 0) // the one slot, held
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(hold) }
	defer release()
	search := "http://" + s.HTTPAddr + "/api/search?q=%7B%7D"
	answered := make(chan string, 2)
	for _, tenant := range []string{"a", "b"} {
		go func() {
			resp, body := tenantGet(t, search, tenant)
			answered <- fmt.Sprintf("%s %d %s", tenant, resp.StatusCode, body)
		}()
		waitGauge(t, s, "ariadne_query_queued", map[string]float64{"a": 1, "b": 2}[tenant])
	}
	// Each tenant has one query waiting: a's next is refused, though b's was queued after a's
	// queue was already full.
	if resp, body := tenantGet(t, search, "a"); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, `tenant "a"`) {
		t.Fatalf("tenant a past its queue: %d %s", resp.StatusCode, body)
	}
	release()
	for range 2 {
		if got := <-answered; !strings.Contains(got, " 200 ") {
			t.Fatalf("a queued query once the slot was free: %.200s", got)
		}
	}
	if v := metricValue(scrape(t, s), "ariadne_query_rejected_total", nil); v != 1 {
		t.Fatalf("rejected %v, want 1 (tenant a's third query only)", v)
	}
}
