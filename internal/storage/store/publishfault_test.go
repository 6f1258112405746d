package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
	"github.com/ariadne-tracing/ariadne/internal/testkit/faultfs"
)

// Every write, fsync, rename, directory sync and create of a block publish fails in turn, with
// ENOSPC and with EIO. Whatever fails: the flush reports it and leaves no block, the traces stay
// in the head and the WAL, a crash right then (a copy of the directory) loses nothing and shows
// no half block, and the next flush, with the disk healthy again, writes the block.
func TestBlockPublishFaults(t *testing.T) {
	now := time.Now()
	for _, op := range []faultfs.Op{faultfs.OpWrite, faultfs.OpSync, faultfs.OpRename, faultfs.OpSyncDir, faultfs.OpCreate} {
		for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO} {
			for skip := 0; ; skip++ {
				name := fmt.Sprintf("%v/%v/%d", op, errno, skip)
				exhausted := false
				ok := t.Run(name, func(t *testing.T) {
					dir := t.TempDir()
					ffs := faultfs.New(vfs.OS)
					s := open(t, dir, func(o *Options) { o.WAL.FS, o.CompactMinBlocks = ffs, -1 })
					if err := s.Append(req(t, "svc", sp(1, 1, 0, now), sp(1, 2, 1, now))); err != nil {
						t.Fatal(err)
					}
					ffs.Inject(faultfs.Fault{Op: op, PathContains: string(filepath.Separator) + "blocks", Skip: skip, Count: 1, Err: errno})
					err := s.Flush()
					if ffs.Fired() == 0 {
						exhausted = true // past the last such operation of a publish
						s.Close()
						return
					}
					if err == nil {
						t.Fatalf("flush succeeded although its %v failed", op)
					}
					if h, b := spansOf(t, s, 1); h != 2 || b != 0 || len(s.Blocks()) != 0 {
						t.Fatalf("after the failed flush: head %d, blocks hold %d in %d blocks; want 2, 0, 0", h, b, len(s.Blocks()))
					}
					// A crash now: the copy must hold the trace and no block, whole or half.
					crash := filepath.Join(t.TempDir(), "crash")
					if err := os.CopyFS(crash, os.DirFS(dir)); err != nil {
						t.Fatal(err)
					}
					c := open(t, crash, func(o *Options) { o.CompactMinBlocks = -1 })
					if n, _ := findSpans(t, c, 1); n != 2 {
						t.Fatalf("after a crash at the failure: trace has %d spans, want 2", n)
					}
					if st := c.Stats(); st.Blocks != 0 || st.BlocksQuarantined != 0 {
						t.Fatalf("after a crash at the failure: %d blocks, %d quarantined", st.Blocks, st.BlocksQuarantined)
					}
					c.Close()
					// The disk recovers: the next flush writes the block.
					if err := s.Flush(); err != nil {
						t.Fatalf("flush after the fault: %v", err)
					}
					if h, b := spansOf(t, s, 1); h != 0 || b != 2 {
						t.Fatalf("after recovery: head %d, blocks %d", h, b)
					}
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					r := open(t, dir, func(o *Options) { o.CompactMinBlocks = -1 })
					defer r.Close()
					if n, _ := findSpans(t, r, 1); n != 2 {
						t.Fatalf("after restart: trace has %d spans, want 2", n)
					}
					inv, err := block.Survey(context.Background(), r.objs)
					if err != nil || len(inv.Complete) != 1 || len(inv.Incomplete)+len(inv.Damaged) != 0 {
						t.Fatalf("after restart: %+v, %v", inv, err)
					}
				})
				if exhausted || !ok {
					break
				}
				if skip > 50 {
					t.Fatalf("%v: more than 50 such operations in one publish", op)
				}
			}
		}
	}
}
