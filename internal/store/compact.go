package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/block"
)

// A run is merged in memory, and a block's spans take about ten times its bytes once decoded
// (small spans: ~13 bytes on disk, ~120 in the wire form the writer takes), so the target is
// what bounds compaction's memory: 8 MiB of blocks is ~80 MiB of spans at the peak.
const (
	defaultCompactMinBlocks   = 4
	defaultCompactTargetBytes = 8 << 20

	compactBackoffMin = time.Second
	compactBackoffMax = 5 * time.Minute
)

// compact merges the oldest run of small blocks into one, when there are more small blocks
// than Options.CompactMinBlocks. It does one run per call; the flush loop calls it every tick,
// so a backlog drains a run at a time without stalling flushes for long.
//
// Order of effects, for crash safety: the merged block is written whole (meta.json last) and
// opened before the list changes, and the inputs are deleted only after the swap. A crash in
// between leaves inputs and merged block side by side; queries remove the duplicate spans, and
// the merged block's ID sorts among its inputs, so the next compaction takes them in one run
// and drops the duplicates (mergeTraces), rather than copying them on for ever.
func (s *Store) compact() error {
	if s.opts.CompactMinBlocks < 0 {
		return nil
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if s.closed {
		return nil
	}
	// Under load the head is being cut by its memory budget: merging now would hold flushes
	// back and add compaction's memory to the head's. Blocks wait for a quieter tick.
	if s.head.Bytes() > s.opts.HeadMaxBytes/2 {
		return nil
	}
	if now := time.Now(); now.Before(s.compactAfter) {
		return nil
	}
	run := pickRun(s.Blocks(), s.opts.CompactMinBlocks, s.opts.CompactTargetBytes)
	if len(run) == 0 {
		return nil
	}
	err := s.compactRun(run)
	if err != nil {
		// A fault that persists (a full disk, a damaged input awaiting quarantine) must not
		// turn the loop into a busy retry: each failure doubles the wait, up to a cap.
		s.compactBackoff = min(max(2*s.compactBackoff, compactBackoffMin), compactBackoffMax)
		s.compactAfter = time.Now().Add(s.compactBackoff)
		s.stats.compactErrors.Add(1)
		setErr(&s.stats.lastCompactError, err)
		return fmt.Errorf("%w (next attempt in %s)", err, s.compactBackoff)
	}
	s.compactBackoff, s.compactAfter = 0, time.Time{}
	return nil
}

// pickRun returns the oldest run of consecutive blocks under target bytes, at least two and
// at most target bytes in all, or nil unless more than minBlocks such blocks exist. The run
// is consecutive so that the merged block, taking the first one's place, keeps the list in
// creation order.
func pickRun(blocks []*block.Reader, minBlocks int, target int64) []*block.Reader {
	small := 0
	for _, r := range blocks {
		if r.Meta().Bytes < target {
			small++
		}
	}
	if small <= minBlocks {
		return nil
	}
	var run []*block.Reader
	var bytes int64
	for _, r := range blocks {
		b := r.Meta().Bytes
		if b < target && bytes+b <= target {
			run = append(run, r)
			bytes += b
			continue
		}
		if len(run) >= 2 {
			return run
		}
		// A large block, or one that would overflow a run too short to merge, starts afresh.
		run, bytes = nil, 0
		if b < target {
			run, bytes = append(run, r), b
		}
	}
	if len(run) >= 2 {
		return run
	}
	return nil
}

func (s *Store) compactRun(run []*block.Reader) error {
	ctx := context.Background()
	start := time.Now()
	traces, spans, err := mergeTraces(ctx, run)
	if err != nil {
		return fmt.Errorf("store: compact: %w", err)
	}
	first, created := run[0].Meta(), run[0].Meta().Created
	for _, r := range run[1:] {
		if c := r.Meta().Created; c.After(created) {
			created = c
		}
	}
	// The ID sorts with the oldest input, so the block list stays in creation order after a
	// restart too; the newest input's creation time keeps retention from deleting the merged
	// data sooner than it would have deleted any of it.
	meta, err := block.Write(ctx, s.objs, traces, block.WriteOptions{ID: block.NewID(first.Created), Now: created})
	if err != nil {
		return fmt.Errorf("store: compact: %w", err)
	}
	merged, err := s.openBlock(ctx, meta.ID)
	if err != nil {
		// Unopened, the block must not linger either: a restart would load it beside its inputs.
		derr := block.Delete(ctx, s.objs, meta.ID)
		return errors.Join(fmt.Errorf("store: compact: open merged block %s: %w", meta.ID, err), derr)
	}

	inRun := make(map[*block.Reader]bool, len(run))
	for _, r := range run {
		inRun[r] = true
	}
	var keep []*block.Reader
	placed := false
	for _, r := range s.Blocks() {
		switch {
		case !inRun[r]:
			keep = append(keep, r)
		case !placed:
			keep = append(keep, merged)
			placed = true
		}
	}
	var errs []error
	for _, r := range s.setBlocks(keep) {
		id := r.Meta().ID
		if err := block.Delete(ctx, s.objs, id); err != nil {
			// The data is safe in the merged block; a leftover input only costs a duplicate
			// that queries drop and a later compaction removes.
			errs = append(errs, fmt.Errorf("store: compact: delete block %s: %w", id, err))
		}
		// A query holding the input keeps reading it; its files close when that query ends.
		r.Release()
	}
	s.stats.compactions.Add(1)
	s.stats.blocksCompacted.Add(int64(len(run)))
	s.log.Info("compacted blocks", "into", meta.ID, "blocks", len(run), "traces", meta.Traces, "spans", spans,
		"bytes", meta.Bytes, "took", time.Since(start).Round(time.Millisecond))
	return errors.Join(errs...)
}

// mergeTraces reads every trace of the run and joins the entries of one trace ID. A span
// already present byte for byte is dropped: it is the same span stored twice, which only a
// crash between a compaction's write and its deletes produces.
func mergeTraces(ctx context.Context, run []*block.Reader) ([]block.Trace, int, error) {
	var traces []block.Trace
	byID := map[[16]byte]int{}
	spans := 0
	for _, r := range run {
		err := r.ReadAll(ctx, func(t block.Trace) error {
			i, seen := byID[t.ID]
			if !seen {
				byID[t.ID] = len(traces)
				traces = append(traces, t)
				spans += len(t.Spans)
				return nil
			}
			have := make(map[string]bool, len(traces[i].Spans))
			for _, sp := range traces[i].Spans {
				have[string(sp.Raw)] = true
			}
			m := &traces[i]
			for _, sp := range t.Spans {
				if !have[string(sp.Raw)] {
					m.Spans = append(m.Spans, sp)
					spans++
				}
			}
			// The merged trace keeps the strictest sampling ratio and any truncation, as Write
			// does for entries it merges; 0 stands for 1.
			if t.SampleRatio > 0 && (m.SampleRatio == 0 || t.SampleRatio < m.SampleRatio) {
				m.SampleRatio = t.SampleRatio
			}
			m.Truncated = m.Truncated || t.Truncated
			// Parts may remain outside the run, so a split mark is kept.
			m.Split = m.Split || t.Split
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("read block %s: %w", r.Meta().ID, err)
		}
	}
	return traces, spans, nil
}
