package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/query"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/partial"
)

// crashCopy builds a store with two blocks (trace 1 in the first, trace 2 in the second) and
// trace 3 acknowledged but only in the WAL, and returns a copy of its data directory taken while
// it runs: the state a kill -9 leaves. It also returns the first block's ID.
func crashCopy(t *testing.T) (dir, first string) {
	t.Helper()
	src := t.TempDir()
	s := open(t, src, func(o *Options) { o.CompactMinBlocks = -1 })
	now := time.Now()
	for id := byte(1); id <= 2; id++ {
		if err := s.Append(req(t, "svc", sp(id, 1, 0, now), sp(id, 2, 1, now))); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(req(t, "svc", sp(3, 1, 0, now))); err != nil {
		t.Fatal(err)
	}
	first = s.Blocks()[0].Meta().ID
	dir = filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, first
}

func findSpans(t *testing.T, s *Store, id byte) (int, *partial.Report) {
	t.Helper()
	ctx, rep := partial.New(context.Background())
	td, err := query.New(s).FindTrace(ctx, [16]byte(bytes.Repeat([]byte{id}, 16)), query.TimeRange{})
	if err != nil {
		t.Fatalf("trace %d: %v", id, err)
	}
	n := 0
	for _, rs := range td.GetResourceSpans() {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	return n, rep
}

// Each kind of damage to one block: the store still opens, replays its WAL and serves the
// other block, and the damaged block is in quarantine, counted, out of the block list.
func TestOpenQuarantinesDamagedBlock(t *testing.T) {
	truncate := func(name string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, name)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, st.Size()/2); err != nil {
				t.Fatal(err)
			}
		}
	}
	remove := func(name string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	editMeta := func(edit func(m map[string]any)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, "meta.json")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			edit(m)
			if b, err = json.Marshal(m); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"truncated spans.parquet", truncate("spans.parquet")},
		{"truncated traces.parquet", truncate("traces.parquet")},
		{"missing traces.parquet", remove("traces.parquet")},
		{"missing attrs.parquet", remove("attrs.parquet")},
		{"truncated groups.parquet", truncate("groups.parquet")},
		{"truncated meta.json", truncate("meta.json")},
		{"missing meta.json", remove("meta.json")},
		{"empty meta.json", truncate("meta.json")},
		{"unknown format version", editMeta(func(m map[string]any) { m["version"] = 99 })},
		{"meta.json of another block", editMeta(func(m map[string]any) { m["id"] = "01ARZ3NDEKTSV4RRFFQ69G5FAV" })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, first := crashCopy(t)
			tc.damage(t, filepath.Join(dir, "blocks", first))
			s, err := Open(Options{Dir: dir, FlushInterval: time.Hour, CompactMinBlocks: -1})
			if err != nil {
				t.Fatalf("one damaged block stopped the store from opening: %v", err)
			}
			defer s.Close()
			if st := s.Stats(); st.BlocksQuarantined != 1 || st.Blocks != 1 || st.ReplayedSpans == 0 {
				t.Fatalf("quarantined %d, %d blocks open, replayed %d spans; want 1, 1, some", st.BlocksQuarantined, st.Blocks, st.ReplayedSpans)
			}
			if n, _ := findSpans(t, s, 2); n != 2 {
				t.Fatalf("the sound block's trace has %d spans, want 2", n)
			}
			if n, _ := findSpans(t, s, 3); n != 1 {
				t.Fatalf("the WAL's trace has %d spans, want 1", n)
			}
			if _, err := os.Stat(filepath.Join(dir, "blocks", first)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("damaged block still among the blocks: %v", err)
			}
			note, err := os.ReadFile(filepath.Join(dir, "quarantine", "blocks", first, "QUARANTINED.txt"))
			if err != nil {
				t.Fatalf("quarantine does not hold the block: %v", err)
			}
			if !strings.Contains(string(note), "block damaged") {
				t.Fatalf("quarantine note does not say why: %q", note)
			}
			// A second start finds nothing left to quarantine.
			s.Close()
			s2 := open(t, dir, func(o *Options) { o.CompactMinBlocks = -1 })
			defer s2.Close()
			if st := s2.Stats(); st.BlocksQuarantined != 0 || st.Blocks != 2 {
				t.Fatalf("after restart: quarantined %d, %d blocks", st.BlocksQuarantined, st.Blocks)
			}
		})
	}
}

// A bloom filter with cleared bits would answer "not here" for traces that are. Its checksum
// catches that, and the block is served from its trace-ID index instead; a missing bloom
// filter likewise.
func TestDamagedBloomFallsBackToIndex(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(p string) error
	}{
		{"zeroed", func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			clear(b[len(b)/4:])
			return os.WriteFile(p, b, 0o644)
		}},
		{"missing", os.Remove},
		{"truncated", func(p string) error { return os.Truncate(p, 10) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, first := crashCopy(t)
			if err := tc.damage(filepath.Join(dir, "blocks", first, "bloom")); err != nil {
				t.Fatal(err)
			}
			s := open(t, dir, func(o *Options) { o.CompactMinBlocks = -1 })
			defer s.Close()
			if st := s.Stats(); st.BlocksDegraded != 1 || st.BlocksQuarantined != 0 || st.Blocks != 2 {
				t.Fatalf("degraded %d, quarantined %d, %d blocks; want 1, 0, 2", st.BlocksDegraded, st.BlocksQuarantined, st.Blocks)
			}
			for id := byte(1); id <= 2; id++ {
				if n, _ := findSpans(t, s, id); n != 2 {
					t.Fatalf("trace %d has %d spans, want 2", id, n)
				}
			}
			if n, _ := findSpans(t, s, 9); n != 0 {
				t.Fatalf("absent trace found with %d spans", n)
			}
		})
	}
}

// Leftovers of a block write that a crash interrupted (a staging folder, a Put's temporary
// file) are removed at open and never read as blocks.
func TestOpenSweepsStaging(t *testing.T) {
	dir, first := crashCopy(t)
	staging := filepath.Join(dir, "blocks", ".tmp-01ZZZ-123")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staging, "spans.parquet"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpFile := filepath.Join(dir, "blocks", first, ".tmp-456")
	if err := os.WriteFile(tmpFile, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, nil)
	defer s.Close()
	if st := s.Stats(); st.StagingSwept != 2 || st.Blocks != 2 || st.BlocksQuarantined != 0 {
		t.Fatalf("swept %d, %d blocks, %d quarantined; want 2, 2, 0", st.StagingSwept, st.Blocks, st.BlocksQuarantined)
	}
	for _, p := range []string{staging, tmpFile} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind: %v", p, err)
		}
	}
	metas, err := block.List(context.Background(), s.objs)
	if err != nil || len(metas) != 2 {
		t.Fatalf("%d blocks listed, %v", len(metas), err)
	}
}
