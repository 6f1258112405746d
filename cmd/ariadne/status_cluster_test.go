package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	collpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/storage/ingestlog"
	"github.com/ariadne-tracing/ariadne/internal/storage/store"
	"github.com/ariadne-tracing/ariadne/internal/testkit/natstest"
)

type logSink struct{ *store.Store }

func (s logSink) MinSeq() (uint64, bool) { return s.Head().MinSegment() }

func (s logSink) AppendLogged(_ string, seq uint64, payload []byte) error {
	return s.Store.AppendLogged(seq, payload)
}

// `ariadne status` on a node in JetStream mode, against a real nats-server: the node's own
// publish and consume figures, then the cluster as NATS holds it, members and partitions in
// tables. Two builders split four partitions; every message is consumed and none committed
// (no block is in the bucket), so each partition's backlog is its whole message count.
func TestStatusCommandJetStream(t *testing.T) {
	nc := natstest.Start(t, 1)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	open := func(reg prometheus.Registerer) *ingestlog.Log {
		l, err := ingestlog.Open(ctx, ingestlog.Config{URLs: []string{nc.URLs()}, Replicas: 1, Partitions: 4, MemberTTL: 2 * time.Second, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		return l
	}
	l := open(reg)
	var heads []*store.Store
	for _, node := range []string{"node-a", "node-b"} {
		st, err := store.Open(store.Options{Dir: t.TempDir(), ExternalLog: true, TraceIdle: time.Hour, BlockMaxWait: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		heads = append(heads, st)
		bl := l
		if node == "node-b" {
			bl = open(nil)
		}
		b := bl.NewBuilder(ingestlog.BuilderOptions{NodeID: node, Addr: node + ":3200", Sink: logSink{st}, Interval: 50 * time.Millisecond})
		b.Start()
		t.Cleanup(func() { b.Close(context.Background()) })
	}
	var req collpb.ExportTraceServiceRequest
	rs := &tracepb.ResourceSpans{ScopeSpans: []*tracepb.ScopeSpans{{}}}
	now := uint64(time.Now().UnixNano())
	for i := 1; i <= 32; i++ {
		rs.ScopeSpans[0].Spans = append(rs.ScopeSpans[0].Spans, &tracepb.Span{TraceId: []byte{15: byte(i)}, SpanId: []byte{7: byte(i)},
			Name: "op", StartTimeUnixNano: now, EndTimeUnixNano: now + 1})
	}
	req.ResourceSpans = append(req.ResourceSpans, rs)
	payload, err := proto.Marshal(&req)
	if err != nil {
		t.Fatal(err)
	}
	// Until both builders own their share and say so in their heartbeats, so that every
	// partition is consumed by its final owner and the table is stable.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := l.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		owners, said := map[string]int{}, 0
		for _, ps := range st.Parts {
			owners[ps.Owner]++
			if ps.Lag >= 0 {
				said++ // the owner's heartbeat lists the partition
			}
		}
		if len(st.Members) == 2 && owners[""] == 0 && len(owners) == 2 && said == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions never split between two members: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		if err := l.Publish(ctx, "default", payload); err != nil {
			t.Fatal(err)
		}
	}
	for heads[0].Head().Stats().Spans+heads[1].Head().Stats().Spans != 96 {
		if time.Now().After(deadline) {
			t.Fatal("the spans never reached the heads")
		}
		time.Sleep(20 * time.Millisecond)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /api/status/cluster", l.StatusHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var out, errOut bytes.Buffer
	if code := run([]string{"status", "--server", srv.URL}, &out, &errOut); code != 0 {
		t.Fatalf("status: exit %d %s", code, errOut.String())
	}
	got := out.String()
	t.Log("\n" + got)
	for _, want := range []string{
		"Ingest log (JetStream), this node",
		"published 12 request parts (publish p50 ",
		"Cluster (JetStream stream ariadne)",
		"4 partitions, 1 replicas; 12 messages,",
		"Members (2)",
		"NODE    ADDR         OWNS",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status output lacks %q", want)
		}
	}
	if strings.Contains(got, "Write-ahead log") {
		t.Error("a WAL section for a node whose log is the stream")
	}
	// Each partition: 3 messages (one per request), none committed, 3 uncommitted, lag 0,
	// owned by one of the live nodes.
	row := regexp.MustCompile(`(?m)^\s+(\d)\s+3\s+0\s+3\s+0\s+node-[ab]$`)
	if n := len(row.FindAllString(got, -1)); n != 4 {
		t.Errorf("%d partition rows with 3 messages, all uncommitted, lag 0 and a live owner; want 4", n)
	}
	member := regexp.MustCompile(`(?m)^\s+node-[ab]\s+node-[ab]:3200\s+[0-9 -]+\s+[0-9 -]+\s+[0-9.]+m?s ago$`)
	if n := len(member.FindAllString(got, -1)); n != 2 {
		t.Errorf("%d member rows, want 2", n)
	}
}

// checkStatusCommand runs `ariadne status` against a node of a JetStream cluster with
// partitions partitions and checks the cluster part: the stream, this node among the members
// owning every partition (it is the only builder), and a row per partition.
func checkStatusCommand(t *testing.T, httpAddr string, partitions int) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run([]string{"status", "--server", httpAddr}, &out, &errOut); code != 0 {
		t.Fatalf("status: exit %d %s", code, errOut.String())
	}
	got := out.String()
	for _, want := range []string{"Ingest log (JetStream), this node", fmt.Sprintf("%d partitions, 1 replicas;", partitions),
		"Members (1)", fmt.Sprintf("  %s  0-%d  ", httpAddr, partitions-1)} {
		if !strings.Contains(got, want) {
			t.Errorf("status output lacks %q:\n%s", want, got)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+\S+$`).FindAllString(got, -1)); n != partitions {
		t.Errorf("%d partition rows with a live owner, want %d:\n%s", n, partitions, got)
	}
}
