package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
)

func payloadOf(i int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("record-%03d;", i)), 9)
}

// writeRecords appends n records to a fresh WAL in one segment and returns the segment's path
// and the offset of each record.
func writeRecords(t *testing.T, dir string, n int) (string, []int64) {
	t.Helper()
	w, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	offs := make([]int64, n)
	off := int64(segHeaderSize)
	for i := 0; i < n; i++ {
		offs[i] = off
		if _, err := w.Append(payloadOf(i)); err != nil {
			t.Fatal(err)
		}
		off += recHeaderSize + int64(len(payloadOf(i)))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, segName(1)), offs
}

func replayStats(t *testing.T, dir string) ([]string, ReplayStats) {
	t.Helper()
	var got []string
	st, err := ReplayWith(dir, ReplayOptions{}, func(_ uint64, p []byte) error {
		got = append(got, string(p))
		return nil
	})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	return got, st
}

func flip(t *testing.T, path string, off int64, n int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < int64(n); i++ {
		data[off+i] ^= 0xff
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Four bytes flipped in the middle of a segment used to end replay there ("torn tail") and
// truncate every later record away. Now exactly the damaged record is lost, counted, and the
// segment is copied to quarantine first.
func TestMidSegmentDamageLosesOnlyTheDamagedRecords(t *testing.T) {
	for _, tc := range []struct {
		name   string
		at     func(offs []int64) int64 // where the bytes are flipped
		n      int
		lost   []int // records that must be missing
		region func(offs []int64) int64
	}{
		{"payload", func(o []int64) int64 { return o[10] + recHeaderSize + 30 }, 4, []int{10}, nil},
		{"length", func(o []int64) int64 { return o[10] + 4 }, 4, []int{10}, nil},
		{"magic", func(o []int64) int64 { return o[10] }, 4, []int{10}, nil},
		{"three records", func(o []int64) int64 { return o[10] + 50 }, int(3 * (recHeaderSize + len(payloadOf(0)))), []int{10, 11, 12, 13}, nil},
		{"segment header", func(o []int64) int64 { return 0 }, 4, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path, offs := writeRecords(t, dir, 30)
			before, _ := os.ReadFile(path)
			at := tc.at(offs)
			flip(t, path, at, tc.n)
			got, st := replayStats(t, dir)
			missing := map[int]bool{}
			for _, i := range tc.lost {
				missing[i] = true
			}
			var want []string
			for i := 0; i < 30; i++ {
				if !missing[i] {
					want = append(want, string(payloadOf(i)))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("replayed %d records, want %d (all but %v)", len(got), len(want), tc.lost)
			}
			if st.LostRecords != int64(len(tc.lost)) || st.Damaged != 1 || st.TornTails != 0 {
				t.Fatalf("stats %+v, want %d records lost in 1 damaged segment", st, len(tc.lost))
			}
			// Bytes lost: from the first damaged record to the next intact one.
			var wantBytes int64
			if len(tc.lost) == 0 {
				wantBytes = segHeaderSize
			} else {
				wantBytes = offs[tc.lost[len(tc.lost)-1]+1] - offs[tc.lost[0]]
			}
			if st.LostBytes != wantBytes {
				t.Fatalf("lost bytes %d, want %d", st.LostBytes, wantBytes)
			}
			if len(st.Quarantined) != 1 {
				t.Fatalf("quarantined %v", st.Quarantined)
			}
			q, err := os.ReadFile(st.Quarantined[0])
			if err != nil {
				t.Fatal(err)
			}
			damaged, _ := os.ReadFile(path)
			if !bytes.Equal(q, damaged) || bytes.Equal(q, before) {
				t.Fatalf("quarantine copy is not the damaged segment")
			}
			// A second start finds the same and keeps the one copy.
			got2, st2 := replayStats(t, dir)
			if len(got2) != len(got) || len(st2.Quarantined) != 0 {
				t.Fatalf("second replay: %d records, quarantined %v", len(got2), st2.Quarantined)
			}
		})
	}
}

// A tail cut in the middle of a record (the process died mid-write) is copied out and cut off;
// every complete record before it replays, and a new WAL appends to a new segment.
func TestTornTailIsQuarantinedAndCut(t *testing.T) {
	dir := t.TempDir()
	path, offs := writeRecords(t, dir, 5)
	fi, _ := os.Stat(path)
	cut := fi.Size() - 10
	if err := os.Truncate(path, cut); err != nil {
		t.Fatal(err)
	}
	got, st := replayStats(t, dir)
	if len(got) != 4 || st.TornTails != 1 || st.LostBytes != cut-offs[4] || st.LostRecords != 0 {
		t.Fatalf("got %d records, stats %+v", len(got), st)
	}
	if fi, _ := os.Stat(path); fi.Size() != offs[4] {
		t.Fatalf("segment not cut at its last good record: %d, want %d", fi.Size(), offs[4])
	}
	if len(st.Quarantined) != 1 {
		t.Fatalf("quarantined %v", st.Quarantined)
	}
	if q, _ := os.ReadFile(st.Quarantined[0]); int64(len(q)) != cut-offs[4] {
		t.Fatalf("tail copy holds %d bytes", len(q))
	}
}

// Segments written before the format had a header and record magic still replay.
func TestVersion1SegmentsStillReplay(t *testing.T) {
	dir := t.TempDir()
	var old []byte
	for i := 0; i < 3; i++ {
		p := payloadOf(i)
		var hdr [8]byte
		binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(p)))
		binary.LittleEndian.PutUint32(hdr[4:8], crc32.Checksum(p, castagnoli))
		old = append(append(old, hdr[:]...), p...)
	}
	if err := os.WriteFile(filepath.Join(dir, segName(7)), old, 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := w.Append(payloadOf(3)); err != nil || seq != 8 {
		t.Fatalf("append after a v1 segment: seq %d, %v", seq, err)
	}
	w.Close()
	got, st := replayStats(t, dir)
	if len(got) != 4 || st.LostBytes != 0 {
		t.Fatalf("got %d records, stats %+v", len(got), st)
	}
	for i, p := range got {
		if p != string(payloadOf(i)) {
			t.Fatalf("record %d = %q", i, p)
		}
	}
	// A torn v1 tail is still cut as before.
	os.Truncate(filepath.Join(dir, segName(7)), int64(len(old)-3))
	got, st = replayStats(t, dir)
	if len(got) != 3 || st.TornTails != 1 {
		t.Fatalf("after tearing the v1 segment: %d records, %+v", len(got), st)
	}
}

func TestUnknownFormatVersionIsRefused(t *testing.T) {
	dir := t.TempDir()
	h := segmentHeader()
	binary.LittleEndian.PutUint32(h[4:], 99)
	os.WriteFile(filepath.Join(dir, segName(1)), h, 0o644)
	if _, err := ReplayWith(dir, ReplayOptions{FS: vfs.OS}, func(uint64, []byte) error { return nil }); err == nil {
		t.Fatal("a segment of an unknown format version replayed")
	}
}
