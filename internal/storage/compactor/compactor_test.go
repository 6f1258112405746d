package compactor_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/blockindex"
	"github.com/ariadne-tracing/ariadne/internal/storage/bucketblocks"
	"github.com/ariadne-tracing/ariadne/internal/storage/compactor"
	"github.com/ariadne-tracing/ariadne/internal/storage/objcache"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
	"github.com/ariadne-tracing/ariadne/internal/testkit/blocktest"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
)

const tenant = "t1"

func bucket(t *testing.T) *s3store.Store {
	t.Helper()
	srv := miniotest.Start(t)
	s, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "compact", Prefix: "ariadne", Insecure: true,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	return s
}

func newCompactor(t *testing.T, root *s3store.Store, holder string, opts compactor.Options) *compactor.Compactor {
	opts.Bucket, opts.Holder, opts.WorkDir = root, holder, t.TempDir()
	return compactor.New(opts)
}

func readIndex(t *testing.T, st *s3store.Store) *blockindex.Index {
	t.Helper()
	rc, _, err := st.GetWithETag(context.Background(), blockindex.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ix, err := blockindex.Decode(rc)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func newSet(t *testing.T, st *s3store.Store) *bucketblocks.Set {
	t.Helper()
	c, err := objcache.New(st, objcache.Options{Dir: filepath.Join(t.TempDir(), "cache")})
	if err != nil {
		t.Fatal(err)
	}
	s := bucketblocks.New(bucketblocks.Options{Bucket: st, Cache: c})
	t.Cleanup(s.Close)
	return s
}

// Two compactors race for one tenant: one wins the lease and merges, the other waits; when
// the winner stops, the other takes over once the lease has gone unrenewed for its TTL.
func TestTwoCompactorsRace(t *testing.T) {
	ctx := context.Background()
	root := bucket(t)
	st := root.Sub(tenant)
	var all [][16]byte
	for i := 0; i < 6; i++ {
		_, ids := blocktest.Write(t, st, 200, uint64(i+1), time.Now(), time.Time{})
		all = append(all, ids...)
	}
	const ttl = time.Second
	opts := compactor.Options{LeaseTTL: ttl, MinBlocks: 2, TargetBytes: 64 << 20, DeleteGrace: time.Hour}
	a := newCompactor(t, root, "a", opts)
	b := newCompactor(t, root, "b", opts)
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		for _, c := range []*compactor.Compactor{a, b} {
			wg.Go(func() {
				if err := c.RunOnce(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if a.Holds(tenant) == b.Holds(tenant) {
			t.Fatalf("round %d: a holds %v, b holds %v; want exactly one", round, a.Holds(tenant), b.Holds(tenant))
		}
	}
	winner, loser := a, b
	if b.Holds(tenant) {
		winner, loser = b, a
	}
	ws, ls := winner.Stats(), loser.Stats()
	if ws.Compactions != 1 || ws.BlocksMerged != 6 || ls.Compactions != 0 || ls.LeaseWaits != 3 {
		t.Fatalf("winner %+v, loser %+v: want one merge of 6 blocks by the winner, the loser waiting each round", ws, ls)
	}
	ix := readIndex(t, st)
	if len(ix.Blocks) != 1 || len(ix.Marked) != 6 {
		t.Fatalf("index: %d live blocks, %d marked; want the merged one live and its 6 inputs marked", len(ix.Blocks), len(ix.Marked))
	}
	// Every trace is in the merged block, whole.
	set := newSet(t, st)
	if err := set.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	blocks := set.Blocks()
	if len(blocks) != 1 || blocks[0].Meta().Spans != int64(len(all)*blocktest.SpansPerTrace) {
		t.Fatalf("query view: %d blocks, want the merged block with every span", len(blocks))
	}
	for _, id := range everyFiftieth(all) {
		rss, err := blocks[0].FindTrace(ctx, id)
		if err != nil || len(blocktest.SpanIDs(rss)) != blocktest.SpansPerTrace {
			t.Fatalf("trace %x: %d spans, %v", id, len(blocktest.SpanIDs(rss)), err)
		}
	}

	winner.Stop() // stops renewing
	start := time.Now()
	for !loser.Holds(tenant) {
		if winner.Holds(tenant) && loser.Holds(tenant) {
			t.Fatal("both compactors hold the lease")
		}
		if time.Since(start) > 20*ttl {
			t.Fatal("the waiting compactor never took over")
		}
		if err := loser.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ttl / 5)
	}
	// The takeover waited out the TTL since the winner's last renewal (timed in package lease),
	// so the two never held it at once.
	if winner.Holds(tenant) {
		t.Fatal("the stopped compactor still holds the lease its successor took over")
	}
	if loser.Stats().IndexWrites == 0 {
		t.Fatal("the new holder wrote no index")
	}
}

// A block past retention is marked, leaves the query view at the next poll, and stays
// readable for a query that already holds it until the grace period has passed; then it is
// deleted.
func TestRetentionWithQueryInFlight(t *testing.T) {
	ctx := context.Background()
	root := bucket(t)
	st := root.Sub(tenant)
	old := time.Now().Add(-30 * 24 * time.Hour)
	oldMeta, oldIDs := blocktest.Write(t, st, 500, 1, old, old)
	_, newIDs := blocktest.Write(t, st, 10, 2, time.Now(), time.Time{})

	set := newSet(t, st)
	if err := set.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	// A query takes the block list and is about to read.
	held, release := set.AcquireBlocks()
	defer release()
	var inFlight *block.Reader
	for _, r := range held {
		if r.Meta().ID == oldMeta.ID {
			inFlight = r
		}
	}
	if inFlight == nil {
		t.Fatal("old block not in the query view")
	}
	// Read one trace before the mark, so the rest of the block is not in the cache yet.
	if rss, err := inFlight.FindTrace(ctx, oldIDs[0]); err != nil || len(rss) == 0 {
		t.Fatalf("before retention: %v", err)
	}

	const grace = 2 * time.Second
	c := newCompactor(t, root, "c", compactor.Options{Retention: 14 * 24 * time.Hour, DeleteGrace: grace, MinBlocks: -1, LeaseTTL: time.Minute})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	marked := time.Now()
	if s := c.Stats(); s.Marked != 1 || s.Deleted != 0 {
		t.Fatalf("after retention: %+v, want one block marked and none deleted", s)
	}
	if err := set.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range set.Blocks() {
		if r.Meta().ID == oldMeta.ID {
			t.Fatal("a marked block is still offered to new queries")
		}
	}
	if len(set.Blocks()) != 1 {
		t.Fatalf("%d blocks in the view, want the recent one", len(set.Blocks()))
	}
	// The query in flight goes on reading pages it never read, from the bucket.
	for _, id := range oldIDs[100:110] {
		rss, err := inFlight.FindTrace(ctx, id)
		if err != nil || len(blocktest.SpanIDs(rss)) != blocktest.SpansPerTrace {
			t.Fatalf("in-flight query lost the block under it: %d spans, %v", len(blocktest.SpanIDs(rss)), err)
		}
	}
	// Within the grace period nothing is deleted; after it, the block is.
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Stats().Deleted != 0 && time.Since(marked) < grace {
		t.Fatal("deleted within the grace period")
	}
	time.Sleep(time.Until(marked.Add(grace + 100*time.Millisecond)))
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	names, err := st.List(ctx, block.Prefix+oldMeta.ID+"/")
	if err != nil {
		t.Fatal(err)
	}
	if c.Stats().Deleted != 1 || len(names) != 0 {
		t.Fatalf("after the grace: %d deleted, %v left", c.Stats().Deleted, names)
	}
	// The recent block is untouched.
	blocks := set.Blocks()
	if rss, err := blocks[0].FindTrace(ctx, newIDs[3]); err != nil || len(blocktest.SpanIDs(rss)) != blocktest.SpansPerTrace {
		t.Fatalf("recent block: %v", err)
	}
	if slices.ContainsFunc(readIndex(t, st).Blocks, func(m block.Meta) bool { return m.ID == oldMeta.ID }) {
		t.Fatal("index still lists the deleted block")
	}
}

func everyFiftieth(ids [][16]byte) [][16]byte {
	var out [][16]byte
	for i := 0; i < len(ids); i += 50 {
		out = append(out, ids[i])
	}
	return out
}
