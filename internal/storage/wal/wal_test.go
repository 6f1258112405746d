package wal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
)

func replayAll(t *testing.T, dir string) (payloads [][]byte, seqs []uint64) {
	t.Helper()
	err := Replay(dir, nil, func(seq uint64, p []byte) error {
		payloads = append(payloads, bytes.Clone(p))
		seqs = append(seqs, seq)
		return nil
	})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	return payloads, seqs
}

func TestAppendReplayConcurrent(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := w.Append([]byte(fmt.Sprintf("w%d-r%d", g, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := w.Stats()
	if st.Records != writers*each {
		t.Fatalf("records = %d", st.Records)
	}
	if st.Fsyncs >= st.Records {
		t.Logf("no grouping happened: %d fsyncs for %d records", st.Fsyncs, st.Records)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, seqs := replayAll(t, dir)
	if len(got) != writers*each {
		t.Fatalf("replayed %d records, want %d", len(got), writers*each)
	}
	seen := map[string]bool{}
	for _, p := range got {
		seen[string(p)] = true
	}
	for g := 0; g < writers; g++ {
		for i := 0; i < each; i++ {
			if !seen[fmt.Sprintf("w%d-r%d", g, i)] {
				t.Fatalf("missing w%d-r%d", g, i)
			}
		}
	}
	if seqs[0] == seqs[len(seqs)-1] {
		t.Fatalf("expected several segments with 4 KiB segment size")
	}
}

func TestTornTailIsTruncated(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := w.Append(bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	path := filepath.Join(dir, segName(1))
	fi, _ := os.Stat(path)
	// Cut the last record in the middle of its payload, as a crash mid-write would.
	if err := os.Truncate(path, fi.Size()-50); err != nil {
		t.Fatal(err)
	}
	got, _ := replayAll(t, dir)
	if len(got) != 9 {
		t.Fatalf("replayed %d records after tear, want 9", len(got))
	}
	for i, p := range got {
		if !bytes.Equal(p, bytes.Repeat([]byte{byte(i)}, 100)) {
			t.Fatalf("record %d differs", i)
		}
	}
	fi2, _ := os.Stat(path)
	if fi2.Size() != segHeaderSize+9*(recHeaderSize+100) {
		t.Fatalf("segment not truncated to the last good record: %d", fi2.Size())
	}
	// A new WAL after the tear appends to a new segment and both replay.
	w, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := w.Append([]byte("after")); err != nil || seq != 2 {
		t.Fatalf("append after tear: seq %d err %v", seq, err)
	}
	w.Close()
	got, _ = replayAll(t, dir)
	if len(got) != 10 || string(got[9]) != "after" {
		t.Fatalf("after reopen: %d records", len(got))
	}
}

func TestCorruptChecksumStopsSegment(t *testing.T) {
	dir := t.TempDir()
	w, _ := Open(dir, Options{})
	for i := 0; i < 3; i++ {
		w.Append([]byte("record"))
	}
	w.Close()
	path := filepath.Join(dir, segName(1))
	data, _ := os.ReadFile(path)
	data[len(data)-1] ^= 0xff
	os.WriteFile(path, data, 0o644)
	got, _ := replayAll(t, dir)
	if len(got) != 2 {
		t.Fatalf("got %d records, want 2", len(got))
	}
}

func TestRemoveBefore(t *testing.T) {
	dir := t.TempDir()
	w, _ := Open(dir, Options{SegmentBytes: 64})
	for i := 0; i < 10; i++ {
		w.Append(bytes.Repeat([]byte("x"), 100))
	}
	active := w.ActiveSegment()
	if active < 5 {
		t.Fatalf("active segment %d, expected rolling", active)
	}
	if err := w.RemoveBefore(active + 10); err != nil {
		t.Fatal(err)
	}
	seqs, _ := segments(vfs.OS, dir)
	if len(seqs) != 1 || seqs[0] != active {
		t.Fatalf("segments left %v, want only active %d", seqs, active)
	}
	w.Close()
}

func BenchmarkAppend(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", sync), func(b *testing.B) {
			w, err := Open(b.TempDir(), Options{NoSync: !sync})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			payload := bytes.Repeat([]byte("s"), 64<<10)
			b.SetBytes(int64(len(payload)))
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := w.Append(payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func TestRoll(t *testing.T) {
	dir := t.TempDir()
	w, _ := Open(dir, Options{})
	defer w.Close()
	w.Roll() // nothing written yet: no empty segment is made for it
	if seq, _ := w.Append([]byte("a")); seq != 1 {
		t.Fatalf("seq %d", seq)
	}
	w.Roll()
	if seq, _ := w.Append([]byte("b")); seq != 2 {
		t.Fatalf("seq after roll %d", seq)
	}
	if seq, _ := w.Append([]byte("c")); seq != 2 {
		t.Fatalf("roll applied twice: seq %d", seq)
	}
}
