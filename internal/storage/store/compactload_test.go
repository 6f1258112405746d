package store

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// stuckMerges holds the meta.json write of every merged block (its meta carries a level) until
// release is closed: a compaction stuck on storage. Blocks from the head pass.
type stuckMerges struct {
	objstore.Store
	entered chan struct{}
	release chan struct{}
}

func (s *stuckMerges) Put(ctx context.Context, name string, r io.Reader) error {
	if strings.HasSuffix(name, "/meta.json") {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(`"level"`)) {
			select {
			case s.entered <- struct{}{}:
			default:
			}
			<-s.release
		}
		r = bytes.NewReader(b)
	}
	return s.Store.Put(ctx, name, r)
}

// Compaction never holds up flushes or statistics: with a merge stuck writing its block,
// appends, flushes and Stats go on, and the merge completes once storage answers.
func TestFlushAndStatsWhileCompactionIsStuck(t *testing.T) {
	dir := t.TempDir()
	local, err := objstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := &stuckMerges{Store: local, entered: make(chan struct{}, 1), release: make(chan struct{})}
	s, err := OpenWith(Options{Dir: dir, FlushInterval: 10 * time.Millisecond, CompactMinBlocks: 2, CompactFreshAge: -1}, st)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	for id := byte(1); id <= 2; id++ {
		if err := s.Append(req(t, "svc", sp(id, 1, 0, now))); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-st.entered: // the compactor is now stuck publishing the merge of the two
	case <-time.After(30 * time.Second):
		t.Fatal("compaction did not start")
	}
	for id := byte(3); id <= 5; id++ {
		if err := s.Append(req(t, "svc", sp(id, 1, 0, now))); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(); err != nil {
			t.Fatalf("flush while a compaction is stuck: %v", err)
		}
	}
	if got := s.Stats(); got.BlocksWritten != 5 || got.Compactions != 0 {
		t.Fatalf("while the merge is stuck: %d blocks written, %d compactions", got.BlocksWritten, got.Compactions)
	}
	close(st.release)
	deadline := time.Now().Add(30 * time.Second)
	for s.Stats().Compactions == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the merge did not finish once storage answered: %+v", s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for id := byte(1); id <= 5; id++ {
		if n, _ := findSpans(t, s, id); n != 1 {
			t.Fatalf("trace %d has %d spans", id, n)
		}
	}
}

// Under sustained load (the head kept over half its cut budget, where the old compactor
// stood aside) compaction still runs.
func TestCompactionProgressesUnderLoad(t *testing.T) {
	s := open(t, t.TempDir(), func(o *Options) {
		o.FlushInterval, o.CompactMinBlocks, o.CompactFreshAge = 10*time.Millisecond, 2, -1
		o.HeadMaxBytes = 1 << 20
		o.TraceIdle = time.Hour // nothing completes by itself: the head stays full
		o.BlockMaxWait = time.Hour
	})
	defer s.Close()
	now := time.Now()
	// Fill the head past half its budget and keep it there.
	filler := sp(200, 1, 0, now)
	filler.Name = strings.Repeat("x", 64<<10)
	for k := byte(1); s.HeadBytes() < 3<<19; k++ {
		f := sp(200, k, 0, now)
		f.Name = filler.Name
		f.TraceId[1] = k
		if err := s.Append(req(t, "load", f)); err != nil {
			t.Fatal(err)
		}
	}
	// Blocks keep coming, and the head is refilled after each, as under sustained load.
	for id := byte(1); id <= 4; id++ {
		if err := s.Append(req(t, "svc", sp(id, 1, 0, now))); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		// Refill the head.
		for k := byte(1); s.HeadBytes() < 3<<19; k++ {
			f := sp(200+id, k, 0, now)
			f.Name = filler.Name
			f.TraceId[1] = k
			if err := s.Append(req(t, "load", f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.Stats().Compactions == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no compaction with the head over half its budget: head %d bytes, %+v", s.HeadBytes(), s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.HeadBytes() < 1<<19 {
		t.Fatalf("the head drained (%d bytes): the test did not hold the load", s.HeadBytes())
	}
}
