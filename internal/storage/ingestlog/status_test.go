package ingestlog

import (
	"context"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/testkit/natstest"
)

// Status on a three-server cluster with replicas 3: every server holds a copy, the builder is
// listed with its partitions and lag, and each partition's backlog after its committed offset
// is counted exactly, before any commit, after one, and once the owner is gone.
func TestStatusThreeServers(t *testing.T) {
	nc := natstest.Start(t, 3)
	cfg := Config{Replicas: 3, Partitions: 4, MemberTTL: time.Second}
	l := openLog(t, nc.URLs(), cfg)
	ctx := context.Background()
	pending := NewPending()
	var blocks []string
	sink := openStore(t, pending, func(id string) { blocks = append(blocks, id) })
	b := l.NewBuilder(BuilderOptions{NodeID: "node-1", Addr: "127.0.0.1:3200", Sink: sink, Pending: pending, Interval: 50 * time.Millisecond})
	b.Start()
	waitFor(t, "node-1 to own every partition", func() bool { return ownedBy(t, l, "node-1") == 4 })
	if err := l.Publish(ctx, "default", request(t, 0, 40, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "40 spans in the head", func() bool { return sink.Head().Stats().Spans == 40 })
	waitFor(t, "the member entry listing every partition", func() bool {
		ms, err := l.Members(ctx)
		return err == nil && len(ms) == 1 && len(ms[0].Partitions) == 4
	})

	st := status(t, l)
	if st.Replicas != 3 || len(st.Servers) != 3 || !st.Servers[0].Leader {
		t.Fatalf("stream servers %+v (replicas %d): want a leader and two more", st.Servers, st.Replicas)
	}
	if len(st.Members) != 1 || st.Members[0].ID != "node-1" || st.Members[0].Addr != "127.0.0.1:3200" || len(st.Members[0].Partitions) != 4 {
		t.Fatalf("members %+v", st.Members)
	}
	msgs := perPartition(t, l)
	for _, ps := range st.Parts {
		if ps.Owner != "node-1" || !ps.OwnerLive || ps.Messages != msgs[ps.Partition] || ps.Uncommitted != ps.Messages || ps.Committed != 0 {
			t.Errorf("before any commit: %+v, want owned by live node-1, %d messages all uncommitted", ps, msgs[ps.Partition])
		}
		if ps.Lag != 0 {
			t.Errorf("partition %d: lag %d with every message consumed", ps.Partition, ps.Lag)
		}
	}

	// The block is written and uploaded: every offset is committed; the next request is the
	// only backlog, counted from the committed offset.
	if err := sink.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, id := range blocks {
		pending.Uploaded(id)
	}
	last := st.LastSeq
	waitFor(t, "the offsets committed", func() bool {
		for _, v := range committed(t, l) {
			if v == last {
				return true
			}
		}
		return false
	})
	waitFor(t, "every partition committed and its messages purged from the stream", func() bool {
		for _, ps := range status(t, l).Parts {
			if ps.Messages != 0 || ps.Uncommitted != 0 {
				return false
			}
		}
		return true
	})
	b.StopConsuming() // consumes no more, and its member entry expires: the owner is gone
	if err := l.Publish(ctx, "default", request(t, 100, 40, 1)); err != nil {
		t.Fatal(err)
	}
	after := perPartition(t, l)
	// Until the entry's expiry has reached every replica of the members bucket, one listing may
	// miss it and the next see it again: wait for a status that agrees throughout.
	waitFor(t, "node-1's member entry to expire", func() bool {
		st = status(t, l)
		if len(st.Members) != 0 {
			return false
		}
		for _, ps := range st.Parts {
			if ps.OwnerLive {
				return false
			}
		}
		return true
	})
	for _, ps := range st.Parts {
		want := after[ps.Partition] // the committed ones were purged
		if ps.Owner != "node-1" || ps.OwnerLive || ps.Uncommitted != want || ps.Lag != -1 {
			t.Errorf("after the owner stopped: %+v, want dead owner node-1, %d uncommitted, lag unknown", ps, want)
		}
	}
}

func status(tb testing.TB, l *Log) Status {
	tb.Helper()
	st, err := l.Status(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return st
}
