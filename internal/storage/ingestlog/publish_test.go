package ingestlog

import (
	"context"
	"encoding/binary"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	collpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/testkit/natstest"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// request makes an export of traces × spans: trace i has ID i+1, span j of it ID (i+1)<<16|j+1.
func request(tb testing.TB, firstTrace, traces, spans int) []byte {
	tb.Helper()
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "test"}}
	now := uint64(time.Now().UnixNano())
	for i := firstTrace; i < firstTrace+traces; i++ {
		for j := 0; j < spans; j++ {
			tid, sid := make([]byte, 16), make([]byte, 8)
			binary.BigEndian.PutUint64(tid[8:], uint64(i+1))
			binary.BigEndian.PutUint64(sid, uint64(i+1)<<16|uint64(j+1))
			ss.Spans = append(ss.Spans, &tracepb.Span{TraceId: tid, SpanId: sid, Name: "op", StartTimeUnixNano: now, EndTimeUnixNano: now + 1000})
		}
	}
	req := &collpb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "svc"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{ss}}}}
	b, err := proto.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func openLog(tb testing.TB, urls string, cfg Config) *Log {
	tb.Helper()
	cfg.URLs = strings.Split(urls, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(l.Close)
	return l
}

// A request is split by trace-ID partition, each part holding exactly its partition's spans
// under the tenant's subject; with the server gone, Publish fails instead of acknowledging.
func TestPublishSplitsByPartitionAndFailsWithoutServer(t *testing.T) {
	nc := natstest.Start(t, 1)
	l := openLog(t, nc.URLs(), Config{Replicas: 1, Partitions: 4, PublishTimeout: time.Second})
	ctx := context.Background()
	if err := l.Publish(ctx, "team-a", request(t, 0, 20, 3)); err != nil {
		t.Fatal(err)
	}
	cons, err := l.js.OrderedConsumer(ctx, l.cfg.Stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msgs := int(info.State.Msgs)
	if msgs < 2 || msgs > 4 {
		t.Fatalf("%d messages for 20 traces in 4 partitions", msgs)
	}
	spans := 0
	for i := 0; i < msgs; i++ {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Headers().Get(HeaderTenant); got != "team-a" {
			t.Errorf("tenant header %q", got)
		}
		var p int = -1
		err = otlpwire.ScanRequest(m.Data(), func(_ *otlpwire.Group, s *otlpwire.Span) error {
			q := Partition(s.TraceID, 4)
			if p >= 0 && q != p {
				t.Errorf("message %s mixes partitions %d and %d", m.Subject(), p, q)
			}
			p = q
			spans++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := l.subject("team-a", p); m.Subject() != want {
			t.Errorf("subject %s, want %s", m.Subject(), want)
		}
	}
	if spans != 60 {
		t.Fatalf("%d spans in the stream, want 60", spans)
	}
	nc.Servers[0].Kill()
	if err := l.Publish(ctx, "team-a", request(t, 100, 2, 1)); err == nil {
		t.Fatal("publish acknowledged with the only server dead")
	}
}

func TestTenantToken(t *testing.T) {
	for in, want := range map[string]string{"default": "default", "a.b": "x-612e62", "x-1": "x-782d31", "": "x-"} {
		if got := tenantToken(in); got != want {
			t.Errorf("tenantToken(%q) = %q, want %q", in, got, want)
		}
	}
}

// Partition is FNV-1a 64 of the trace ID: a stream written by one version is read by the next
// with every trace in the same partition.
func TestPartitionIsFNV1a(t *testing.T) {
	for i := 0; i < 1000; i++ {
		id := make([]byte, 16)
		binary.BigEndian.PutUint64(id, uint64(i)*0x9e3779b97f4a7c15)
		binary.BigEndian.PutUint64(id[8:], uint64(i))
		h := fnv.New64a()
		h.Write(id)
		for _, n := range []int{1, 16, 4096} {
			if got, want := Partition(id, n), int(h.Sum64()%uint64(n)); got != want {
				t.Fatalf("Partition(%x, %d) = %d, want %d", id, n, got, want)
			}
		}
	}
}
