package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// A block that compaction retires while a query holds it stays readable until that query
// releases it, and closes its files then: not on a timer, and not before.
func TestRetiredBlockClosesWithLastReader(t *testing.T) {
	s := open(t, t.TempDir(), func(o *Options) { o.CompactMinBlocks, o.CompactFreshAge = 1, -1 })
	defer s.Close()
	writeSmallBlocks(t, s)
	held, release := s.AcquireBlocks()
	if len(held) != 6 {
		t.Fatalf("%d blocks", len(held))
	}
	if err := s.compact(); err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Blocks() {
		for _, h := range held {
			if r == h {
				t.Fatal("compaction left an input in the list")
			}
		}
	}
	id := [16]byte(bytes.Repeat([]byte{10}, 16))
	for i := range 3 {
		// Long after any grace period a timer would give, the holder still reads.
		rss, err := held[0].FindTrace(context.Background(), id)
		if err != nil || len(rss) == 0 {
			t.Fatalf("read %d of a retired block still held: %d resource spans, %v", i, len(rss), err)
		}
	}
	release()
	release() // a second call is harmless
	if _, err := held[0].FindTrace(context.Background(), id); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("retired block still open after its last reader released it: %v", err)
	}
	if s.Stats().BlocksQuarantined != 0 {
		t.Fatal("reading a closed reader was taken for damage")
	}
}

// blockingStore holds every Put until release is closed, as a disk that has stopped
// answering would.
type blockingStore struct {
	*objstore.Local
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStore) Put(ctx context.Context, name string, r io.Reader) error {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	return b.Local.Put(ctx, name, r)
}

// Statistics and the block list never wait on storage: with a flush stuck inside a write,
// Stats, Blocks and AcquireBlocks still answer.
func TestStatsDoNotWaitForStorage(t *testing.T) {
	dir := t.TempDir()
	local, err := objstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	bs := &blockingStore{Local: local, entered: make(chan struct{}, 1), release: make(chan struct{})}
	// Without Publish the block writer goes through Put, where the store blocks.
	st, err := OpenWith(Options{Dir: dir, FlushInterval: time.Hour}, struct{ objstore.Store }{bs})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Append(req(t, "svc", sp(1, 1, 0, time.Now()))); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- st.Flush() }()
	<-bs.entered // the flush holds the flush lock and waits on the disk
	answered := make(chan Stats, 1)
	go func() {
		blocks, release := st.AcquireBlocks()
		release()
		_ = st.Blocks()
		if len(blocks) != 0 {
			t.Error("a block appeared before its write finished")
		}
		answered <- st.Stats()
	}()
	select {
	case got := <-answered:
		if got.BlocksWritten != 0 {
			t.Fatalf("stats say %d blocks written while the write is stuck", got.BlocksWritten)
		}
	case err := <-flushed:
		t.Fatalf("flush finished while its write was held: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Stats waited for a flush stuck on storage")
	}
	close(bs.release)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if got := st.Stats(); got.BlocksWritten != 1 || got.Blocks != 1 {
		t.Fatalf("after the flush: %d written, %d open", got.BlocksWritten, got.Blocks)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}
