package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
	"github.com/ariadne-tracing/ariadne/internal/tools/loadgen"
)

// clusterConfig is a node of target sharing srv's bucket, with short waits so that tests see
// uploads and polls within a second.
func clusterConfig(t *testing.T, srv *miniotest.Server, target string) config.Config {
	cfg := testConfig(t.TempDir())
	cfg.Target = target
	cfg.Storage.Backend = "s3"
	cfg.Storage.S3 = config.S3{Endpoint: srv.Endpoint, Bucket: "ariadne", Prefix: "cluster-test", Insecure: true,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey}
	cfg.Cluster.PollInterval = config.Duration(100 * time.Millisecond)
	cfg.Cluster.UploadHold = config.Duration(time.Second)
	cfg.MetricsGenerator.Disabled = true
	// These tests count everything a node can see; query nodes enforce the query limits as any
	// node does, so they are raised here.
	cfg.Query.MaxResultLimit, cfg.Query.MaxSpansPerSpanSet = 1_000_000, 1000
	cfg.Query.MaxDuration = 0
	return cfg
}

// The guide's traces, sent through the real SDK to an ingest node, read back exactly by a
// separate query node: first from the ingest node's head (asked as a peer), then from the
// bucket once uploaded, then with the ingest node gone (flagged partial, still whole), and
// by a second query node that starts cold.
func TestClusterGuideTraces(t *testing.T) {
	srv := miniotest.Start(t)
	ing := startServer(t, clusterConfig(t, srv, config.TargetIngest))
	qcfg := clusterConfig(t, srv, config.TargetQuery)
	qcfg.Cluster.Peers = []string{ing.HTTPAddr}
	q := startServer(t, qcfg)

	traces, sent := exportGuide(t, ing, "grpc")
	check := func(node *server.Server, stage string) {
		t.Helper()
		for _, tr := range traces {
			want := sentForTrace(sent, tr.TraceID[:])
			if len(want) != tr.SpanCount {
				t.Fatalf("capture saw %d spans of %s, guide says %d", len(want), tr.Name, tr.SpanCount)
			}
			assertSameSpans(t, stage+" "+tr.Name, fetchTrace(t, node, tr.TraceID[:]), want)
		}
	}
	check(q, "in the ingest node's head, through the query node:")

	if err := ing.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	// Uploaded, held for a moment, then gone from the ingest node.
	waitFor(t, "the ingest node uploads and forgets its block", func() bool { return len(ing.Store.Blocks()) == 0 })
	check(q, "in the bucket:")

	if err := ing.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	check(q, "with the ingest node stopped:")
	resp, err := http.Get(fmt.Sprintf("http://%s/api/v2/traces/%x", q.HTTPAddr, traces[0].TraceID[:]))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get(api.PartialHeader) == "" {
		t.Error("answer with an unreachable ingest node is not flagged partial")
	}

	cold := startServer(t, clusterConfig(t, srv, config.TargetQuery))
	check(cold, "by a query node started afterwards:")
}

// searchSpanCount sums the matched spans of every trace a node's TraceQL search finds.
func searchSpanCount(t *testing.T, node *server.Server) (traces, spans int) {
	t.Helper()
	resp, err := http.Get("http://" + node.HTTPAddr + "/api/search?limit=1000000&spss=1&q=" + url.QueryEscape("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sr struct {
		Traces []struct {
			SpanSets []struct {
				Matched int `json:"matched"`
			} `json:"spanSets"`
		} `json:"traces"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&sr); err != nil {
		t.Fatal(err)
	}
	for _, tr := range sr.Traces {
		for _, ss := range tr.SpanSets {
			spans += ss.Matched
		}
	}
	return len(sr.Traces), spans
}

// Two ingest nodes under the project's load generator and one query node: every acknowledged
// span is found by the query node once the blocks are in the bucket.
func TestClusterTwoIngestOneQueryUnderLoad(t *testing.T) {
	srv := miniotest.Start(t)
	var ingest []*server.Server
	for i := 0; i < 2; i++ {
		cfg := clusterConfig(t, srv, config.TargetIngest)
		cfg.Storage.TraceIdle = config.Duration(200 * time.Millisecond)
		cfg.Storage.BlockMaxWait = config.Duration(500 * time.Millisecond)
		ingest = append(ingest, startServer(t, cfg))
	}
	qcfg := clusterConfig(t, srv, config.TargetQuery)
	qcfg.Cluster.Peers = []string{ingest[0].HTTPAddr, ingest[1].HTTPAddr}
	q := startServer(t, qcfg)

	var wg sync.WaitGroup
	reports := make([]loadgen.Report, 2)
	errs := make([]error, 2)
	for i, node := range ingest {
		wg.Go(func() {
			reports[i], errs[i] = loadgen.Run(context.Background(), loadgen.Config{Endpoint: node.GRPCAddr, Batch: 200,
				Concurrency: 2, Requests: 60})
		})
	}
	wg.Wait()
	var acked int64
	for i, r := range reports {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if r.Failed > 0 {
			t.Fatalf("ingest node %d: %d requests failed: %s", i, r.Failed, r.FirstError)
		}
		acked += r.Spans
	}
	if acked == 0 {
		t.Fatal("nothing acknowledged")
	}
	for _, node := range ingest {
		if err := node.Store.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	var traces, spans int
	waitFor(t, fmt.Sprintf("query node finds the %d acknowledged spans (last count %d)", acked, spans), func() bool {
		traces, spans = searchSpanCount(t, q)
		return int64(spans) >= acked
	})
	if int64(spans) != acked {
		t.Fatalf("query node finds %d spans, %d were acknowledged", spans, acked)
	}
	t.Logf("%d acknowledged spans in %d traces found by the query node", spans, traces)
}

// With the object store down, an ingest node keeps acknowledging (blocks queue on its disk)
// until the queue passes its budget, then refuses with retryable errors; queries answer what
// is reachable, flagged partial. When the store returns, the queue drains and every
// acknowledged span is found.
//
// The outage lasts the 30 s with exports every 100 ms (the queue budget fills within
// the first seconds); the test runs in parallel with the package's others, so it costs CI
// about its own length once.
func TestClusterObjectStoreOutage(t *testing.T) {
	t.Parallel() // it waits out a 30 s outage; other tests run meanwhile
	srv := miniotest.Start(t)
	cfg := clusterConfig(t, srv, config.TargetIngest)
	cfg.Cluster.UploadQueueBytes = 64 << 10
	ing := startServer(t, cfg)
	qcfg := clusterConfig(t, srv, config.TargetQuery)
	qcfg.Cluster.Peers = []string{ing.HTTPAddr}
	q := startServer(t, qcfg)
	client := grpcClient(t, ing)
	ctx := context.Background()

	acked := map[string][]string{} // trace ID → span IDs
	seq := 0
	send := func() error {
		seq++
		var spans []*tracepb.Span
		for tr := 0; tr < 20; tr++ {
			tid := fmt.Sprintf("%016x%016x", 0xfeed0000+seq, tr+1)
			for s := 0; s < 5; s++ {
				sid := fmt.Sprintf("%08x%08x", seq, tr*10+s+1)
				spans = append(spans, &tracepb.Span{TraceId: mustHex(tid), SpanId: mustHex(sid), Name: "op",
					StartTimeUnixNano: uint64(time.Now().UnixNano()), EndTimeUnixNano: uint64(time.Now().UnixNano()) + 1000})
			}
		}
		_, err := client.Export(ctx, request(spans...))
		if err != nil {
			return err
		}
		for _, sp := range spans {
			k := fmt.Sprintf("%x", sp.TraceId)
			acked[k] = append(acked[k], fmt.Sprintf("%x", sp.SpanId))
		}
		return nil
	}
	for i := 0; i < 5; i++ {
		if err := send(); err != nil {
			t.Fatal(err)
		}
	}
	ing.Store.Flush()
	waitFor(t, "first block uploaded", func() bool { return len(ing.Store.Blocks()) == 0 })

	// The object store is down for the 30 s while ingest goes on: every export is
	// acknowledged until the blocks queued on disk pass the budget, and each refusal (retryable,
	// saying why) comes only with the queue past it.
	const outage = 30 * time.Second
	srv.Stop()
	stopped := time.Now()
	refused, acceptedDuring := 0, 0
	for time.Since(stopped) < outage {
		err := send()
		if err != nil {
			st, _ := status.FromError(err)
			if st.Code() != codes.Unavailable && st.Code() != codes.ResourceExhausted {
				t.Fatalf("refusal during the outage is not retryable: %v", err)
			}
			if !strings.Contains(st.Message(), "object store") {
				t.Errorf("refusal does not say why: %v", err)
			}
			if q := metricValue(scrape(t, ing), "ariadne_upload_queue_bytes", nil); q <= float64(cfg.Cluster.UploadQueueBytes) {
				t.Fatalf("refused with %v bytes queued, within the budget of %d", q, cfg.Cluster.UploadQueueBytes)
			}
			refused++
		} else {
			acceptedDuring++
		}
		// Each flush builds a block that queues for the bucket.
		if err := ing.Store.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if refused == 0 || acceptedDuring == 0 {
		t.Fatalf("during a %v outage: %d exports acknowledged, %d refused; want both (queue budget %d bytes)", outage, acceptedDuring, refused,
			cfg.Cluster.UploadQueueBytes)
	}
	if len(ing.Store.Blocks()) == 0 {
		t.Fatal("no block queued during the outage")
	}
	// Queries answer from the ingest node's disk and head, flagged: the bucket is unreachable.
	var some string
	for k := range acked {
		some = k
		break
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/api/v2/traces/%s", q.HTTPAddr, some))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(api.PartialHeader) == "" {
		t.Errorf("during the outage: %d, partial %q; want the trace, flagged partial", resp.StatusCode, resp.Header.Get(api.PartialHeader))
	}

	srv.Restart()
	waitFor(t, "the queue drains after the object store returns", func() bool { return send() == nil })
	ing.Store.Flush()
	waitFor(t, "every block uploaded", func() bool { return len(ing.Store.Blocks()) == 0 })
	ids := make([]string, 0, len(acked))
	for k := range acked {
		ids = append(ids, k)
	}
	sort.Strings(ids)
	// Stop the ingest node: what the query node finds now comes from the bucket alone.
	if err := ing.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "query node sees every uploaded block", func() bool {
		_, n := searchSpanCount(t, q)
		return n >= len(acked)*5
	})
	for _, tid := range ids {
		got := traceSpanIDs(t, q, tid)
		want := append([]string(nil), acked[tid]...)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("trace %s after the outage: spans %v, want %v", tid, got, want)
		}
	}
	t.Logf("%d traces acknowledged around a %v outage (%d exports during it), %d refused past the budget, all found", len(ids), outage,
		acceptedDuring, refused)
}

func traceSpanIDs(t *testing.T, node *server.Server, tid string) []string {
	t.Helper()
	code, body := httpGet(t, fmt.Sprintf("http://%s/api/v2/traces/%s", node.HTTPAddr, tid), "application/protobuf")
	if code == 404 {
		return nil
	}
	if code != 200 {
		t.Fatalf("trace %s: %d %s", tid, code, body)
	}
	_, _, n := protowire.ConsumeTag(body)
	inner, _ := protowire.ConsumeBytes(body[n:])
	td := &tracepb.TracesData{}
	if err := proto.Unmarshal(inner, td); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, rs := range td.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				ids = append(ids, fmt.Sprintf("%x", sp.SpanId))
			}
		}
	}
	sort.Strings(ids)
	return ids
}
