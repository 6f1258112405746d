package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
	"github.com/ariadne-tracing/ariadne/internal/testkit/faultfs"
)

// Each write-path operation of the WAL fails in turn, with ENOSPC and with EIO, once at each
// point where it happens in a run. Whatever fails, every record that Append acknowledged must
// replay, and nothing may be appended behind the failed bytes (which, before, left acknowledged
// records behind a torn write that replay stopped at).
func TestEveryAcknowledgedRecordSurvivesEachFault(t *testing.T) {
	const records = 12
	// SegmentBytes small enough that the run rolls several times, so segment creation, its
	// header write and the directory sync all happen in the middle of the run too.
	opts := func(fs vfs.FS) Options {
		return Options{SegmentBytes: 400, FS: fs, Logger: quiet, Fatal: func(err error) { t.Errorf("fatal: %v", err) }}
	}
	// A dry run counts each operation, so that the faulty runs can fail the 1st, 2nd, ... of them.
	dry := faultfs.New(vfs.OS)
	w, err := Open(t.TempDir(), opts(dry))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < records; i++ {
		if _, err := w.Append(payloadOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	for _, op := range []faultfs.Op{faultfs.OpWrite, faultfs.OpSync, faultfs.OpSyncDir, faultfs.OpCreate} {
		for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO} {
			n := dry.Count(op)
			if n == 0 {
				t.Fatalf("the run never does %v", op)
			}
			for k := 0; k < n; k++ {
				t.Run(fmt.Sprintf("%v-%v-%d", op, errno, k), func(t *testing.T) {
					faultRun(t, opts, faultfs.Fault{Op: op, Skip: k, Count: 1, Err: errno, Torn: true}, records)
				})
			}
		}
	}
}

func faultRun(t *testing.T, opts func(vfs.FS) Options, f faultfs.Fault, records int) {
	dir := t.TempDir()
	ffs := faultfs.New(vfs.OS)
	ffs.Inject(f)
	w, err := Open(dir, opts(ffs))
	if err != nil {
		if !errors.Is(err, f.Err) {
			t.Fatalf("open: %v", err)
		}
		return // the fault hit creating the WAL's directory: nothing was acknowledged
	}
	atOpen := ffs.Fired() // a fault starting the first segment fails no append: the next commit starts one
	acked := map[string]bool{}
	failures := 0
	for i := 0; i < records; i++ {
		_, err := w.Append(payloadOf(i))
		switch {
		case err == nil:
			acked[string(payloadOf(i))] = true
		case errors.Is(err, ErrUnavailable) && errors.Is(err, f.Err):
			failures++
		default:
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if failures != ffs.Fired()-atOpen {
		t.Fatalf("%d appends failed for %d faults after open", failures, ffs.Fired()-atOpen)
	}
	if !w.Writable() {
		// The fault hit the last append: nothing came after to start a new segment.
		if err := w.Probe(); err != nil || !w.Writable() {
			t.Fatalf("WAL not writable after the fault passed: %v", err)
		}
	}
	w.Close()
	got, st := replayStats(t, dir)
	seen := map[string]bool{}
	for _, p := range got {
		seen[p] = true
	}
	for p := range acked {
		if !seen[p] {
			t.Fatalf("acknowledged record %.10q lost (replay stats %+v)", p, st)
		}
	}
	if st.LostRecords != 0 || st.Damaged != 0 {
		t.Fatalf("damage in the middle of a segment after %v: %+v", f, st)
	}
}

// A disk that stays full: appends fail as retryable, the WAL reports itself not writable, and
// once there is room again it recovers by itself (the prober, here called directly).
func TestRecoversWhenSpaceReturns(t *testing.T) {
	dir := t.TempDir()
	ffs := faultfs.New(vfs.OS)
	w, err := Open(dir, Options{FS: ffs, Logger: quiet, Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Append([]byte("before")); err != nil {
		t.Fatal(err)
	}
	ffs.Inject(faultfs.Fault{Op: faultfs.OpWrite, Err: syscall.ENOSPC, Torn: true})
	for i := 0; i < 3; i++ {
		if _, err := w.Append([]byte("while full")); !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("append on a full disk: %v", err)
		}
	}
	if w.Writable() || w.Probe() == nil {
		t.Fatal("writable while the disk is full")
	}
	st := w.Stats()
	if st.Writable || st.WriteErrors < 3 || st.LastError == "" || st.Sealed != 1 {
		t.Fatalf("stats %+v", st)
	}
	ffs.Clear()
	if err := w.Probe(); err != nil || !w.Writable() {
		t.Fatalf("probe after space returned: %v", err)
	}
	seq, err := w.Append([]byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	if seq == 1 {
		t.Fatal("appended to the segment that failed a write")
	}
	w.Close()
	got, _ := replayStats(t, dir)
	if fmt.Sprint(got) != "[before after]" {
		t.Fatalf("replayed %q", got)
	}
}

// If the failed segment cannot even be cut back, the WAL calls Fatal (in production: exit, so a
// restart replays what is durable) and still never writes to that segment again.
func TestFatalWhenTheFailedSegmentCannotBeCut(t *testing.T) {
	dir := t.TempDir()
	ffs := faultfs.New(vfs.OS)
	var mu sync.Mutex
	var fatal []error
	w, err := Open(dir, Options{FS: ffs, Logger: quiet, Fatal: func(err error) { mu.Lock(); fatal = append(fatal, err); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	w.Append([]byte("one"))
	ffs.Inject(faultfs.Fault{Op: faultfs.OpSync, Count: 1, Err: syscall.EIO})
	ffs.Inject(faultfs.Fault{Op: faultfs.OpTruncate, Count: 1, Err: syscall.EIO})
	if _, err := w.Append([]byte("two")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append: %v", err)
	}
	mu.Lock()
	if len(fatal) != 1 || !errors.Is(fatal[0], syscall.EIO) {
		t.Fatalf("fatal calls: %v", fatal)
	}
	mu.Unlock()
	seq, err := w.Append([]byte("three"))
	if err != nil || seq != 2 {
		t.Fatalf("append after the fatal: seq %d %v", seq, err)
	}
	w.Close()
	// "two" was written but its fsync failed: it may replay (it was never acknowledged, and a
	// duplicate after the sender's retry is removed at read time); "one" and "three" must.
	got, _ := replayStats(t, dir)
	if len(got) < 2 || got[0] != "one" || got[len(got)-1] != "three" {
		t.Fatalf("replayed %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, segName(2))); err != nil {
		t.Fatal(err)
	}
}

var quiet = slog.New(slog.DiscardHandler)

// A disk that is full when the server starts: the WAL opens anyway (the server starts and serves
// what it has), refuses appends as retryable, and becomes writable once there is room.
func TestOpensOnAFullDisk(t *testing.T) {
	dir := t.TempDir()
	ffs := faultfs.New(vfs.OS)
	ffs.Inject(faultfs.Fault{Op: faultfs.OpWrite, Err: syscall.ENOSPC})
	w, err := Open(dir, Options{FS: ffs, Logger: quiet, Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatalf("open on a full disk: %v", err)
	}
	defer w.Close()
	if w.Writable() {
		t.Fatal("writable on a full disk")
	}
	if _, err := w.Append([]byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append on a full disk: %v", err)
	}
	ffs.Clear()
	if err := w.Probe(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append([]byte("y")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if got, _ := replayStats(t, dir); fmt.Sprint(got) != "[y]" {
		t.Fatalf("replayed %q", got)
	}
}
