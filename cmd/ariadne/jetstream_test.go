package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/storage/ingestlog"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
	"github.com/ariadne-tracing/ariadne/internal/testkit/natstest"
	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

// jsCluster is what the JetStream tests run Ariadne nodes against: real nats-server processes,
// a real MinIO and the flags every node shares.
type jsCluster struct {
	nats *natstest.Cluster
	s3   *miniotest.Server
	args []string
}

// startJSCluster starts natsServers nats-server processes (1, or 3 with replicas 3) and MinIO,
// and writes the node configuration: short idle and block waits and a one-second member TTL,
// so blocks are cut, uploaded and partitions taken over within a test's seconds. extraYAML
// is appended to the configuration file.
func startJSCluster(t *testing.T, natsServers int, extraYAML string) *jsCluster {
	t.Helper()
	c := &jsCluster{nats: natstest.Start(t, natsServers), s3: miniotest.Start(t)}
	// One second makes a dead node's partitions move within a test's seconds; with three
	// servers a leader election may hold heartbeats up for about that long, so two.
	replicas, ttl := 1, "1s"
	if natsServers == 3 {
		replicas, ttl = 3, "2s"
	}
	// The stream and its buckets are made before any node starts: on a loaded machine a new
	// three-server cluster may take longer to elect its leaders than a node waits at start.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		l, err := ingestlog.Open(ctx, ingestlog.Config{URLs: strings.Split(c.nats.URLs(), ","), Replicas: replicas, Partitions: partitions})
		if err == nil {
			l.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("JetStream cluster not ready: %v", err)
		}
		time.Sleep(time.Second)
	}
	cfgPath := filepath.Join(t.TempDir(), "ariadne.yaml")
	cfgYAML := "storage:\n  trace_idle: 300ms\n  block_max_wait: 300ms\n" +
		"cluster:\n  poll_interval: 100ms\n  upload_hold: 30s\n" +
		"ingest:\n  log: jetstream\n" +
		fmt.Sprintf("nats:\n  urls: [%s]\n  replicas: %d\n  partitions: %d\n  member_ttl: %s\n", c.nats.URLs(), replicas, partitions, ttl) +
		extraYAML
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", miniotest.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", miniotest.SecretKey)
	c.args = []string{"--config", cfgPath, "--storage-backend", "s3", "--s3-endpoint", c.s3.Endpoint, "--s3-bucket", "ariadne",
		"--s3-prefix", "js", "--s3-insecure"}
	return c
}

func (c *jsCluster) node(t *testing.T, extra ...string) *proc {
	t.Helper()
	return startProc(t, t.TempDir(), append(append([]string{}, c.args...), extra...)...)
}

// metricValue sums a metric's samples (every label set) from a node's /metrics.
func metricValue(t *testing.T, httpAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// eventually polls cond for up to 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// searchIDs runs a TraceQL search on a node and returns the trace IDs found.
func searchIDs(t *testing.T, httpAddr, q string, start, end time.Time) map[string]bool {
	t.Helper()
	u := fmt.Sprintf("http://%s/api/search?q=%s&start=%d&end=%d&limit=1000", httpAddr, url.QueryEscape(q), start.Unix(), end.Unix()+1)
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Traces []struct {
			TraceID string `json:"traceID"`
		} `json:"traces"`
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("search %s: %d %s", q, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, tr := range out.Traces {
		ids[strings.TrimLeft(tr.TraceID, "0")] = true
	}
	return ids
}

// `ariadne serve` with ingest.log: jetstream, end to end: the guide's traces exported through
// the real OpenTelemetry SDK are published to the stream (no local WAL), consumed by the node's
// block builder into its head, found by ID and by search, and still found once they are in
// blocks in the bucket.
func TestJetStreamServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nats-server, MinIO and an Ariadne process")
	}
	c := startJSCluster(t, 1, "")
	dataDir := t.TempDir()
	n := startProc(t, dataDir, c.args...)

	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(n.grpcAddr), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	p := guidetrace.NewProviders(sdktrace.WithSyncer(exp))
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	traces, err := guidetrace.EmitAll(ctx, p, base)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("export: %v", err)
	}
	if got := metricValue(t, n.http, "ariadne_ingestlog_published_messages_total"); got == 0 {
		t.Fatalf("nothing published to the stream: ingest.log jetstream is not in use\n%s", n.logs.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, "wal")); err == nil {
		t.Error("a local WAL was created: with ingest.log jetstream the stream is the WAL")
	}
	check := func(when string) {
		for _, tr := range traces {
			tr := tr
			eventually(t, fmt.Sprintf("%s: trace %s (%s) whole", when, tr.Name, tr.TraceID), func() bool {
				return len(spanIDs(t, n.http, tr.TraceID.String())) == tr.SpanCount
			})
		}
		notify := traces[2]
		eventually(t, when+": the notify trace found by search", func() bool {
			return searchIDs(t, n.http, `{ resource.service.name = "notification-service" }`, base, time.Now())[strings.TrimLeft(notify.TraceID.String(), "0")]
		})
	}
	check("in the head")
	eventually(t, "blocks uploaded and every partition committed", func() bool {
		return metricValue(t, n.http, "ariadne_uploaded_blocks_total") > 0 && metricValue(t, n.http, "ariadne_ingestlog_committed_sequence") > 0
	})
	check("in the bucket")
	checkStatusCommand(t, n.http, partitions)
}

// Multi-tenancy with ingest.log: jetstream: each tenant's requests go to subjects of its own
// (<stream>.<tenant>.<partition>), a builder puts each message into its tenant's store, and a
// tenant's trace whose spans reached two different nodes is found whole through either node
// as that tenant, and not at all as another.
func TestJetStreamMultiTenant(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nats-server, MinIO and two Ariadne processes")
	}
	c := startJSCluster(t, 1, "multitenancy_enabled: true\n")
	nodes := []*proc{c.node(t), c.node(t)}
	eventually(t, "the two nodes sharing the partitions", func() bool {
		return metricValue(t, nodes[0].http, "ariadne_ingestlog_members") == 2 &&
			metricValue(t, nodes[0].http, "ariadne_ingestlog_partitions_owned")+metricValue(t, nodes[1].http, "ariadne_ingestlog_partitions_owned") == partitions
	})
	rng := rand.New(rand.NewPCG(7, 7))
	want := map[string]map[string][]string{} // tenant → trace → span IDs
	for _, tenant := range []string{"team-a", "team-b"} {
		req, spans := crashRequest(rng, 5, 4)
		want[tenant] = spans
		// Each trace's spans split over the two nodes: the first half of every trace to one,
		// the rest to the other.
		ss := req.ResourceSpans[0].ScopeSpans[0]
		var first, second []*tracepb.Span
		for i, sp := range ss.Spans {
			if i%4 < 2 {
				first = append(first, sp)
			} else {
				second = append(second, sp)
			}
		}
		for i, part := range [][]*tracepb.Span{first, second} {
			ss.Spans = part
			conn, err := grpc.NewClient(nodes[i].grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			ctx := metadata.AppendToOutgoingContext(context.Background(), "x-scope-orgid", tenant)
			_, err = coltracepb.NewTraceServiceClient(conn).Export(ctx, req)
			conn.Close()
			if err != nil {
				t.Fatalf("export as %s to node %d: %v", tenant, i, err)
			}
		}
	}
	// Subjects of each tenant in the stream.
	nc, err := nats.Connect(c.nats.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stream, err := js.Stream(ctx, "ariadne")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter("ariadne.>"))
	if err != nil {
		t.Fatal(err)
	}
	perTenant := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		perTenant[strings.Split(subj, ".")[1]] += n
	}
	if perTenant["team-a"] == 0 || perTenant["team-b"] == 0 || len(perTenant) != 2 {
		t.Fatalf("messages per tenant subject %v, want team-a and team-b only", perTenant)
	}
	for tenant, traces := range want {
		other := "team-b"
		if tenant == other {
			other = "team-a"
		}
		for tid, spans := range traces {
			spans := append([]string(nil), spans...)
			sort.Strings(spans)
			for _, n := range nodes {
				eventually(t, fmt.Sprintf("%s's trace %s whole through %s", tenant, tid, n.http), func() bool {
					got, err := readSpanIDsAs(n.http, tenant, tid)
					return err == nil && strings.Join(got, ",") == strings.Join(spans, ",")
				})
				if got, err := readSpanIDsAs(n.http, other, tid); err != nil || len(got) != 0 {
					t.Fatalf("%s's trace %s read as %s through %s: %v, %v", tenant, tid, other, n.http, got, err)
				}
			}
		}
	}
}
