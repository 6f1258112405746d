package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/sampling"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/ingestlog"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

// clusterSampling keeps every error, every trace of the load (resource attribute keep=yes) and
// of the guide's services (deployment.environment=development), so that the loss checks see
// every span, and half of the rest (ariadne loadgen's) by trace ID.
const clusterSampling = `tail_sampling:
  decision_wait: 1s
  policies:
    - {name: errors, type: status_code, status_codes: [ERROR]}
    - {name: load, type: string_attribute, key: keep, values: ["yes"]}
    - {name: guide, type: string_attribute, key: deployment.environment, values: [development]}
    - {name: half, type: probabilistic, ratio: 0.5}
`

// partitions is the stream's partitions in these tests: with 16, rendezvous hashing leaves a
// node of three without any with odds of 3·(2/3)^16 ≈ 0.5%; with 8 they were 12%.
const partitions = 16

// load sends requests of whole traces to nodes, one sender per node, recording what each
// acknowledged; a refused or unanswered request is not recorded.
type load struct {
	mu     sync.Mutex
	acked  map[string][]string // trace ID → span IDs
	spans  atomic.Int64
	acks   atomic.Int64
	fails  atomic.Int64
	stopCh chan struct{}
	wg     sync.WaitGroup
}

func startLoad(t *testing.T, seed uint64, nodes ...*proc) *load {
	t.Helper()
	l := &load{acked: map[string][]string{}, stopCh: make(chan struct{})}
	for i, n := range nodes {
		conn, err := grpc.NewClient(n.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		client := coltracepb.NewTraceServiceClient(conn)
		l.wg.Go(func() {
			defer conn.Close()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for {
				select {
				case <-l.stopCh:
					return
				default:
				}
				req, want := crashRequest(rng, 4, 3)
				req.ResourceSpans[0].Resource.Attributes = append(req.ResourceSpans[0].Resource.Attributes,
					&commonpb.KeyValue{Key: "keep", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "yes"}}})
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				_, err := client.Export(ctx, req)
				cancel()
				if err != nil {
					l.fails.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				l.mu.Lock()
				for k, v := range want {
					l.acked[k] = v
				}
				l.mu.Unlock()
				l.spans.Add(12)
				l.acks.Add(1)
				time.Sleep(100 * time.Millisecond) // a steady trickle: every trace is read back through every node
			}
		})
	}
	return l
}

func (l *load) stop() map[string][]string {
	close(l.stopCh)
	l.wg.Wait()
	return l.acked
}

// waitAcks waits until n more requests than now are acknowledged.
func (l *load) waitAcks(t *testing.T, what string, n int64) {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond)) }()
	target := l.acks.Load() + n
	eventually(t, what, func() bool { return l.acks.Load() >= target })
}

// checkFound reads every acknowledged trace through every node until each answers it whole,
// every span exactly once (a duplicate from a replay would show twice); a trace still wrong
// after 45 s fails the test.
func checkFound(t *testing.T, acked map[string][]string, nodes ...*proc) {
	t.Helper()
	start := time.Now()
	defer func() {
		t.Logf("checkFound: %d traces through %d nodes in %v", len(acked), len(nodes), time.Since(start))
	}()
	for _, n := range nodes {
		pending := map[string]bool{}
		for tid := range acked {
			pending[tid] = true
		}
		deadline := time.Now().Add(45 * time.Second)
		for len(pending) > 0 {
			var mu sync.Mutex
			var last []string
			ids := make(chan string)
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Go(func() {
					for tid := range ids {
						want := append([]string(nil), acked[tid]...)
						sort.Strings(want)
						got, err := readSpanIDs(n.http, tid)
						mu.Lock()
						switch {
						case err == nil && strings.Join(got, ",") == strings.Join(want, ","):
							delete(pending, tid)
						case len(last) >= 3:
						case err != nil:
							last = append(last, err.Error())
						default:
							last = append(last, fmt.Sprintf("trace %s: got %v, want %v", tid, got, want))
						}
						mu.Unlock()
					}
				})
			}
			var todo []string
			for tid := range pending {
				todo = append(todo, tid)
			}
			for _, tid := range todo {
				ids <- tid
			}
			close(ids)
			wg.Wait()
			if len(pending) == 0 {
				break
			}
			t.Logf("through %s after %v: %d missing, e.g. %v", n.http, time.Since(start).Round(time.Millisecond), len(pending), last[:min(1, len(last))])
			if time.Now().After(deadline) {
				for _, n := range nodes {
					t.Logf("node %s:\n%s\n%s", n.http, problems(n.logs.String()), ingestlogMetrics(n.http))
				}
				parts := map[int]int{}
				for tid := range pending {
					id, _ := hex.DecodeString(tid)
					parts[ingestlog.Partition(id, partitions)]++
				}
				t.Fatalf("through %s, %d of %d acknowledged traces not found whole (partition: count %v): %s", n.http, len(pending), len(acked), parts, strings.Join(last, "; "))
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}

// ingestlogMetrics are a node's ingest-log metrics, for a failure's report.
func ingestlogMetrics(httpAddr string) string {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "ariadne_ingestlog_") && !strings.Contains(l, "_bucket{") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// problems are the warnings and errors of a node's log.
func problems(logs string) string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "partition") {
			out = append(out, l)
		}
	}
	if len(out) > 80 {
		out = out[len(out)-80:]
	}
	return strings.Join(out, "\n")
}

// backgroundLoadgen runs `ariadne loadgen` against a node for the length of a fault, as the
// issue's cluster runs under it: traffic the loss checks do not track (half of it is sampled
// away), so that faults land on nodes and NATS servers busy with ordinary load. wait returns its
// summary once it has finished, and fails the test if it got nothing acknowledged.
func backgroundLoadgen(t *testing.T, n *proc, d time.Duration) (wait func()) {
	t.Helper()
	var out syncBuffer
	cmd := exec.Command(ariadneBinary(t), "loadgen", "--endpoint", n.grpcAddr, "--profile", "small",
		"--rate", "4000", "--concurrency", "2", "--duration", d.String())
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return func() {
		t.Helper()
		err := cmd.Wait()
		summary := out.String()
		t.Logf("ariadne loadgen against %s: %v\n%s", n.grpcAddr, err, summary)
		m := regexp.MustCompile(`: (\d+) spans acknowledged`).FindStringSubmatch(summary)
		if m == nil || m[1] == "0" {
			t.Fatalf("ariadne loadgen against %s got nothing acknowledged", n.grpcAddr)
		}
	}
}

// ackedExporter passes the SDK's exports through and records the span IDs of each one the
// server acknowledged, so a test knows which of the real SDK's spans it may demand back.
type ackedExporter struct {
	sdktrace.SpanExporter
	mu    *sync.Mutex // shared by the exporters writing one acked map
	acked map[string][]string
}

func (e ackedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err == nil {
		e.mu.Lock()
		for _, s := range spans {
			tid := s.SpanContext().TraceID().String()
			e.acked[tid] = append(e.acked[tid], s.SpanContext().SpanID().String())
		}
		e.mu.Unlock()
	}
	return err
}

// sendGuide emits the guide's traces through the real OpenTelemetry SDK, each service's spans
// exported over OTLP/gRPC to its own node (the notify trace crosses from task-api on one to
// notification-service on the other), and returns the spans the nodes acknowledged.
func sendGuide(t *testing.T, taskAPI, notification *proc) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	acked := map[string][]string{}
	exporter := func(n *proc) sdktrace.TracerProviderOption {
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(n.grpcAddr), otlptracegrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		return sdktrace.WithSyncer(ackedExporter{SpanExporter: exp, mu: &mu, acked: acked})
	}
	p := guidetrace.Providers{
		TaskAPI:      guidetrace.NewTracerProvider(guidetrace.ServiceTaskAPI, exporter(taskAPI)),
		Notification: guidetrace.NewTracerProvider(guidetrace.ServiceNotification, exporter(notification)),
	}
	traces, err := guidetrace.EmitAll(ctx, p, time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Logf("guide providers' shutdown: %v", err)
	}
	spans, n := 0, 0
	for _, tr := range traces {
		spans += tr.SpanCount
	}
	mu.Lock()
	defer mu.Unlock()
	for _, ids := range acked {
		n += len(ids)
	}
	t.Logf("guide traces: %d of %d spans acknowledged", n, spans)
	if n == 0 {
		t.Fatal("no guide span acknowledged")
	}
	return acked
}

func sumMetric(t *testing.T, name string, nodes ...*proc) float64 {
	t.Helper()
	s := 0.0
	for _, n := range nodes {
		s += metricValue(t, n.http, name)
	}
	return s
}

// The cluster: three nats-server processes (stream and buckets with replicas 3), MinIO
// and three Ariadne nodes, each a separate process; then faults, one at a time.
func TestJetStreamCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three nats-server processes, MinIO and four Ariadne processes")
	}
	c := startJSCluster(t, 3, clusterSampling)
	nodes := []*proc{c.node(t), c.node(t), c.node(t)}
	eventually(t, "the three nodes sharing the partitions", func() bool {
		for _, n := range nodes {
			if metricValue(t, n.http, "ariadne_ingestlog_members") != 3 {
				return false
			}
		}
		return sumMetric(t, "ariadne_ingestlog_partitions_owned", nodes...) == partitions
	})

	t.Run("trace across three nodes is tail-sampled once, whole", func(t *testing.T) { jsTailSampling(t, c, nodes) })
	t.Run("kill -9 of a NATS server mid-load", func(t *testing.T) {
		waitLoadgen := backgroundLoadgen(t, nodes[0], 12*time.Second)
		l := startLoad(t, 1, nodes...)
		l.waitAcks(t, "load acknowledged", 15)
		c.nats.Servers[1].Kill()
		before := l.acks.Load()
		guide := sendGuide(t, nodes[1], nodes[2]) // with a NATS server dead
		l.waitAcks(t, "ingest to go on with a NATS server dead", 30)
		acked := l.stop()
		waitLoadgen()
		maps.Copy(acked, guide)
		t.Logf("%d requests acknowledged (%d after the kill), %d refused", l.acks.Load(), l.acks.Load()-before, l.fails.Load())
		checkFound(t, acked, nodes...)
		c.nats.Servers[1].Restart()
	})
	t.Run("kill -9 of an Ariadne node mid-load", func(t *testing.T) {
		waitLoadgen := backgroundLoadgen(t, nodes[0], 12*time.Second)
		l := startLoad(t, 2, nodes...)
		guide := sendGuide(t, nodes[2], nodes[1]) // task-api's spans to the node about to die
		l.waitAcks(t, "load acknowledged", 30)
		nodes[2].kill9(t)
		l.waitAcks(t, "ingest to go on through the other nodes", 15)
		acked := l.stop()
		waitLoadgen()
		maps.Copy(acked, guide)
		t.Logf("%d requests acknowledged, %d refused", l.acks.Load(), l.fails.Load())
		nodes = nodes[:2]
		eventually(t, "the dead node's partitions taken over", func() bool {
			return sumMetric(t, "ariadne_ingestlog_partitions_owned", nodes...) == partitions
		})
		checkFound(t, acked, nodes...)
	})
	t.Run("a node joins: partitions move, nothing lost or counted twice", func(t *testing.T) {
		callsBefore := sumMetric(t, "traces_spanmetrics_calls_total", nodes...)
		ownedBefore := metricValue(t, nodes[0].http, "ariadne_ingestlog_partitions_owned") + metricValue(t, nodes[1].http, "ariadne_ingestlog_partitions_owned")
		l := startLoad(t, 3, nodes...)
		l.waitAcks(t, "load acknowledged", 15)
		joined := c.node(t)
		eventually(t, "the new node owning partitions", func() bool {
			return metricValue(t, joined.http, "ariadne_ingestlog_partitions_owned") > 0
		})
		l.waitAcks(t, "load acknowledged after the join", 15)
		acked := l.stop()
		if l.fails.Load() != 0 {
			t.Fatalf("%d requests refused with every node up", l.fails.Load())
		}
		all := append(nodes, joined)
		eventually(t, "the partitions split over three nodes", func() bool {
			return sumMetric(t, "ariadne_ingestlog_partitions_owned", all...) == partitions &&
				metricValue(t, nodes[0].http, "ariadne_ingestlog_partitions_owned")+metricValue(t, nodes[1].http, "ariadne_ingestlog_partitions_owned") < ownedBefore
		})
		checkFound(t, acked, all...)
		// Span metrics count each span once, where it was received: a partition moving and its
		// new owner replaying what the old one had not committed counts nothing again.
		calls := sumMetric(t, "traces_spanmetrics_calls_total", all...) - callsBefore
		if want := float64(l.spans.Load()); calls != want {
			t.Fatalf("span metrics counted %v calls for %v acknowledged spans", calls, want)
		}
	})
}

// jsTailSampling sends each trace's three spans to three different nodes through the real
// OpenTelemetry SDK (one service per node, context propagated from span to span), every fourth
// with an error on its last span. Each trace must be decided once, on its partition's owner,
// with all its spans: errors kept, the rest kept exactly when the trace-ID ratio rule says,
// stored whole with the ratio of the policy that kept it.
func jsTailSampling(t *testing.T, c *jsCluster, nodes []*proc) {
	ctx := context.Background()
	var tps []*sdktrace.TracerProvider
	for i, n := range nodes {
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(n.grpcAddr), otlptracegrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
			sdktrace.WithResource(sdkresource.NewSchemaless(attribute.String("service.name", fmt.Sprintf("svc-%d", i)))))
		tps = append(tps, tp)
	}
	decisionsBefore := sumMetric(t, "ariadne_sampling_decisions_total", nodes...)
	const traces = 40
	want := map[[16]byte]float64{} // kept trace → its ratio
	var all [][16]byte
	for i := 0; i < traces; i++ {
		ctx0, root := tps[0].Tracer("front").Start(ctx, "GET /")
		ctx1, mid := tps[1].Tracer("back").Start(ctx0, "handle")
		_, leaf := tps[2].Tracer("db").Start(ctx1, "query")
		id := [16]byte(root.SpanContext().TraceID())
		all = append(all, id)
		switch {
		case i%4 == 0:
			leaf.SetStatus(codes.Error, "boom")
			want[id] = 1
		case sampling.TraceIDRatio(id, 0.5):
			want[id] = 0.5
		}
		leaf.End()
		mid.End()
		root.End()
	}
	for _, tp := range tps {
		if err := tp.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every trace decided", func() bool {
		return sumMetric(t, "ariadne_sampling_decisions_total", nodes...)-decisionsBefore >= traces
	})
	if got := sumMetric(t, "ariadne_sampling_decisions_total", nodes...) - decisionsBefore; got != traces {
		t.Fatalf("%v sampling decisions for %d traces: a trace was decided in parts", got, traces)
	}
	// In the bucket: each kept trace once, whole, with its ratio; nothing else.
	bucket, err := s3store.New(s3store.Config{Endpoint: c.s3.Endpoint, Bucket: "ariadne", Prefix: "js", Insecure: true,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	tenant := bucket.Sub("single-tenant")
	type row struct {
		ratio float64
		spans int64
	}
	var got map[[16]byte][]row
	eventually(t, "every kept trace in the bucket", func() bool {
		got = map[[16]byte][]row{}
		metas, err := block.List(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metas {
			r, err := block.Open(ctx, tenant, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			r.Traces(ctx, func(ts *block.TraceSummary) bool {
				got[ts.ID] = append(got[ts.ID], row{ts.SampleRatio, ts.SpanCount})
				return true
			})
			r.Close()
		}
		for id := range want {
			if len(got[id]) == 0 {
				return false
			}
		}
		return true
	})
	kept := 0
	for _, id := range all {
		rows, w := got[id], want[id]
		switch {
		case w == 0 && len(rows) > 0:
			t.Errorf("trace %x kept (%v), want dropped", id, rows)
		case w != 0 && (len(rows) != 1 || rows[0].ratio != w || rows[0].spans != 3):
			t.Errorf("trace %x stored as %v, want once with ratio %v and 3 spans", id, rows, w)
		case w != 0:
			kept++
		}
	}
	t.Logf("%d of %d traces kept (%d errors)", kept, traces, traces/4)
	// Read back through every node: the kept ones whole, the dropped ones nowhere.
	for _, n := range nodes {
		for _, id := range all {
			got := spanIDs(t, n.http, fmt.Sprintf("%x", id))
			if _, keep := want[id]; keep != (len(got) == 3) || (!keep && len(got) != 0) {
				t.Errorf("through %s trace %x has %d spans (kept: %v)", n.http, id, len(got), keep)
			}
		}
	}
}
