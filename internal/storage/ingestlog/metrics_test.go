package ingestlog

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ariadne-tracing/ariadne/internal/testkit/natstest"
)

// pausable is a store sink whose head can be made to look full, which holds consumption back
// as a real overload does.
type pausable struct {
	storeSink
	full atomic.Bool
}

func (p *pausable) HeadBytes() int64 {
	if p.full.Load() {
		return math.MaxInt64
	}
	return p.storeSink.HeadBytes()
}

// metricValue is a family's sample (a histogram's count) whose labels include want (nil: the first),
// and -1 when there is none.
func metricValue(tb testing.TB, reg *prometheus.Registry, name string, want map[string]string) float64 {
	tb.Helper()
	fams, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.Metric {
			for k, v := range want {
				if !hasLabel(m, k, v) {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.Label {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// perPartition counts the stream's messages in each partition.
func perPartition(tb testing.TB, l *Log) map[int]uint64 {
	tb.Helper()
	info, err := l.stream.Info(context.Background(), jetstream.WithSubjectFilter(l.cfg.Stream+".>"))
	if err != nil {
		tb.Fatal(err)
	}
	out := map[int]uint64{}
	for subj, n := range info.State.Subjects {
		p, err := strconv.Atoi(subj[strings.LastIndexByte(subj, '.')+1:])
		if err != nil {
			tb.Fatal(err)
		}
		out[p] += n
	}
	return out
}

// The metrics the issue names, against a real server: publish latency counts every request;
// the lag per partition is the whole backlog while consumption is held back (including the
// messages read ahead into the client), and zero once consumed; consumed messages count as
// uncommitted until their block is in the bucket; taking and handing over partitions count as
// rebalances on each side.
func TestMetricsLagLatencyRebalances(t *testing.T) {
	nc := natstest.Start(t, 1)
	reg := prometheus.NewRegistry()
	l := openLog(t, nc.URLs(), Config{Replicas: 1, Partitions: 2, MemberTTL: 3 * time.Second, Registerer: reg})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := l.Publish(ctx, "default", request(t, i*10, 10, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if n := metricValue(t, reg, "ariadne_ingestlog_publish_duration_seconds", nil); n != 5 {
		t.Fatalf("publish latency histogram holds %v requests, want 5", n)
	}
	backlog := perPartition(t, l)
	if len(backlog) != 2 {
		t.Fatalf("messages per partition %v: want both partitions used", backlog)
	}

	sink := &pausable{storeSink: openStore(t, NewPending(), nil)}
	sink.full.Store(true)
	b := l.NewBuilder(BuilderOptions{NodeID: "node-1", Addr: "a1", Sink: sink, Interval: 50 * time.Millisecond})
	b.Start()
	defer b.Close(ctx)
	lagIs := func(want map[int]uint64) func() bool {
		return func() bool {
			for p, n := range want {
				if metricValue(t, reg, "ariadne_ingestlog_consumer_lag_messages", map[string]string{"partition": strconv.Itoa(p)}) != float64(n) {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "the lag to show the whole backlog while the head is full", lagIs(backlog))
	if n := metricValue(t, reg, "ariadne_ingestlog_rebalances_total", map[string]string{"change": "taken"}); n != 2 {
		t.Fatalf("%v partitions counted as taken, want 2", n)
	}
	if n := metricValue(t, reg, "ariadne_ingestlog_partitions_owned", nil); n != 2 {
		t.Fatalf("partitions owned %v, want 2", n)
	}

	sink.full.Store(false)
	waitFor(t, "every span consumed", func() bool { return sink.Head().Stats().Spans == 50 })
	waitFor(t, "the lag back to zero", lagIs(map[int]uint64{0: 0, 1: 0}))
	waitFor(t, "every consumed message counted as uncommitted while only in the head", func() bool {
		for p, n := range backlog {
			if metricValue(t, reg, "ariadne_ingestlog_uncommitted_messages", map[string]string{"partition": strconv.Itoa(p)}) != float64(n) {
				return false
			}
		}
		return true
	})

	// A second node joins: the first hands over a partition, the second takes it.
	reg2 := prometheus.NewRegistry()
	l2 := openLog(t, nc.URLs(), Config{Replicas: 1, Partitions: 2, MemberTTL: 3 * time.Second, Registerer: reg2})
	b2 := l2.NewBuilder(BuilderOptions{NodeID: "node-2", Addr: "a2", Sink: openStore(t, NewPending(), nil), Interval: 50 * time.Millisecond})
	b2.Start()
	defer b2.Close(ctx)
	moves := 0.0
	for p := 0; p < 2; p++ {
		if assigned(p, map[string]Member{"node-1": {}, "node-2": {}}) == "node-2" {
			moves++
		}
	}
	if moves == 0 {
		t.Fatal("test setup: node-2 is assigned no partition")
	}
	waitFor(t, "node-2's partitions handed over", func() bool {
		// At least: on a loaded machine a heartbeat can come late, the member look dead
		// for a moment and a partition move twice.
		return metricValue(t, reg, "ariadne_ingestlog_rebalances_total", map[string]string{"change": "released"}) >= moves &&
			metricValue(t, reg2, "ariadne_ingestlog_rebalances_total", map[string]string{"change": "taken"}) >= moves
	})
}
