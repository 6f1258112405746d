package ingestlog

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/store"
	"github.com/ariadne-tracing/ariadne/internal/testkit/natstest"
)

// storeSink is a real store with no WAL of its own, as a block builder runs it.
type storeSink struct{ *store.Store }

func (s storeSink) MinSeq() (uint64, bool) { return s.Head().MinSegment() }

func (s storeSink) AppendLogged(_ string, seq uint64, payload []byte) error {
	return s.Store.AppendLogged(seq, payload)
}

func openStore(tb testing.TB, pending *Pending, written func(id string)) storeSink {
	tb.Helper()
	st, err := store.Open(store.Options{Dir: tb.TempDir(), ExternalLog: true, TraceIdle: time.Hour, BlockMaxWait: time.Hour,
		BlockWritten: func(id string, minSeq uint64) {
			pending.BlockWritten(id, minSeq)
			if written != nil {
				written(id)
			}
		}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return storeSink{st}
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func committed(tb testing.TB, l *Log) map[int]uint64 {
	out := map[int]uint64{}
	for p := 0; p < l.Partitions(); p++ {
		v, err := l.committedOffset(context.Background(), p)
		if err != nil {
			tb.Fatal(err)
		}
		out[p] = v
	}
	return out
}

// One builder takes every partition, consumes into its head and commits nothing until the
// block holding the spans is uploaded; a second builder joining takes some partitions over,
// starting after the committed offsets, so together they hold every span once the first
// hands its data over.
func TestBuilderCommitsOnlyUploadedAndRebalances(t *testing.T) {
	nc := natstest.Start(t, 1)
	cfg := Config{Replicas: 1, Partitions: 4, MemberTTL: time.Second}
	l1 := openLog(t, nc.URLs(), cfg)
	p1 := NewPending()
	var mu sync.Mutex
	var blocks []string
	s1 := openStore(t, p1, func(id string) { mu.Lock(); blocks = append(blocks, id); mu.Unlock() })
	b1 := l1.NewBuilder(BuilderOptions{NodeID: "node-1", Addr: "a1", Sink: s1, Pending: p1, Interval: 50 * time.Millisecond})
	b1.Start()
	defer b1.Close(context.Background())
	waitFor(t, "node-1 to own every partition", func() bool { return ownedBy(t, l1, "node-1") == 4 })

	ctx := context.Background()
	if err := l1.Publish(ctx, "default", request(t, 0, 40, 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "80 spans in the head", func() bool { return s1.Head().Stats().Spans == 80 })
	time.Sleep(200 * time.Millisecond) // several commit rounds
	for p, v := range committed(t, l1) {
		if v != 0 {
			t.Fatalf("partition %d committed at %d with its spans only in the head", p, v)
		}
	}
	if err := s1.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	for p, v := range committed(t, l1) {
		if v != 0 {
			t.Fatalf("partition %d committed at %d before its block was uploaded", p, v)
		}
	}
	mu.Lock()
	for _, id := range blocks {
		p1.Uploaded(id) // what blockship reports once the block is whole in the bucket
	}
	mu.Unlock()
	info, err := l1.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := info.State.LastSeq
	waitFor(t, "every partition committed", func() bool {
		sum := uint64(0)
		for _, v := range committed(t, l1) {
			sum = max(sum, v)
		}
		return sum == last
	})

	// A second node joins: some partitions move to it, after their committed offsets, so it
	// replays nothing already in a block.
	l2 := openLog(t, nc.URLs(), cfg)
	p2 := NewPending()
	s2 := openStore(t, p2, nil)
	b2 := l2.NewBuilder(BuilderOptions{NodeID: "node-2", Addr: "a2", Sink: s2, Pending: p2, Interval: 50 * time.Millisecond})
	b2.Start()
	defer b2.Close(context.Background())
	waitFor(t, "partitions split between the nodes", func() bool {
		n1, n2 := ownedBy(t, l1, "node-1"), ownedBy(t, l1, "node-2")
		return n1+n2 == 4 && n2 > 0 && n1 > 0
	})
	if n := s2.Head().Stats().Spans; n != 0 {
		t.Fatalf("the new owner replayed %d spans that were already in an uploaded block", n)
	}
	if err := l1.Publish(ctx, "default", request(t, 100, 40, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new spans split between the heads", func() bool {
		return s1.Head().Stats().Spans+s2.Head().Stats().Spans == 40
	})
	if s2.Head().Stats().Spans == 0 {
		t.Fatal("the joined node consumed nothing")
	}
	members, err := l1.Members(ctx)
	if err != nil || len(members) != 2 {
		t.Fatalf("members %v, %v", members, err)
	}
}

func ownedBy(tb testing.TB, l *Log, node string) int {
	n := 0
	for p := 0; p < l.Partitions(); p++ {
		e, err := l.owners.Get(context.Background(), partitionKey(p))
		if err == nil && string(e.Value()) == node {
			n++
		}
	}
	return n
}

// Rendezvous assignment spreads partitions over members evenly enough and moves only the
// joining member's share.
func TestAssignedSpreadsAndMovesLittle(t *testing.T) {
	live := map[string]Member{}
	for i := 1; i <= 3; i++ {
		live[fmt.Sprintf("node-%d", i)] = Member{}
	}
	before := map[int]string{}
	count := map[string]int{}
	for p := 0; p < 64; p++ {
		before[p] = assigned(p, live)
		count[before[p]]++
	}
	for id, n := range count {
		if n < 10 {
			t.Errorf("%s got %d of 64 partitions", id, n)
		}
	}
	live["node-4"] = Member{}
	for p := 0; p < 64; p++ {
		if now := assigned(p, live); now != before[p] && now != "node-4" {
			t.Errorf("partition %d moved from %s to %s, not to the joining node", p, before[p], now)
		}
	}
}
