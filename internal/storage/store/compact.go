package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
)

// Compaction is leveled by time window. Blocks are grouped by the window (CompactWindow, a day
// by default) their creation time falls in; a block from the head is level 0 and a merged one
// is one level above its highest input.
//
//   - While a window is open, as soon as CompactMinBlocks blocks of one level exist in it, the
//     oldest of them are merged into one block of the next level (size-tiered within the
//     window), so an open window holds fewer than CompactMinBlocks blocks per level.
//   - Except that fresh blocks wait: a level-0 block younger than CompactFreshAge is not merged
//     unless more than CompactFreshBlocks level-0 blocks are waiting (then the oldest go
//     regardless). Merging a block seconds after it was written rewrites every span while
//     ingest is busiest (it was ~38% of a loaded server's CPU); waiting moves that work past
//     bursts shorter than CompactFreshAge, and the cap keeps the block count bounded at any
//     rate. Under load that lasts longer, each span is still rewritten as often as before:
//     waiting delays compaction's work, it does not remove it.
//   - Once a window has closed (an hour of grace after its end, for late flushes), its blocks
//     are merged, smallest first and CompactMinBlocks at a time, until no two of them fit in
//     CompactTargetBytes together.
//
// A merge streams: k-way merges by trace ID over the inputs' runs into a StreamWriter, the runs
// grouped by start time so that the merged block keeps its traces in runs by time
// (block.MergeRuns), so memory is a batch of traces per input run plus a row group's pages per
// output file, whatever the sizes. It runs in its own goroutine, outside the flush lock, so flushes never wait for it and
// it never waits for quiet: under sustained load it keeps pace as long as it gets its share of
// the CPU (each span is rewritten once per level, about log_fanout of the blocks per window,
// plus once when the window closes). docs/architecture.md gives the bound on the block count.
const (
	defaultCompactMinBlocks   = 8
	defaultCompactTargetBytes = 4 << 30
	defaultCompactWindow      = 24 * time.Hour
	defaultCompactFreshAge    = 2 * time.Minute
	defaultCompactFreshBlocks = 64
	compactWindowGrace        = time.Hour

	compactBackoffMin = time.Second
	compactBackoffMax = 5 * time.Minute
)

// compactPolicy is what planCompaction needs from the options.
type compactPolicy struct {
	fanout   int
	maxBytes int64
	window   time.Duration
	// Level-0 blocks younger than freshAge wait, unless more than freshBlocks of them do.
	freshAge    time.Duration
	freshBlocks int
}

func (s *Store) policy() compactPolicy {
	return compactPolicy{fanout: max(s.opts.CompactMinBlocks, 2), maxBytes: s.opts.CompactTargetBytes, window: s.opts.CompactWindow,
		freshAge: s.opts.CompactFreshAge, freshBlocks: s.opts.CompactFreshBlocks}
}

// planCompaction returns the indexes in metas of the next run to merge, or nil. It looks at
// metas only, so a simulated clock can drive it over weeks of blocks (see the bound test).
func planCompaction(metas []block.Meta, now time.Time, p compactPolicy) []int {
	win := func(i int) int64 { return metas[i].Created.UnixNano() / int64(p.window) }
	// One sort, by window, then level, then ID, groups everything the rules look at; no maps,
	// since the planner runs after every flush.
	order := make([]int, len(metas))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(win(a), win(b)), cmp.Compare(metas[a].Level, metas[b].Level), cmp.Compare(metas[a].ID, metas[b].ID))
	})
	for lo := 0; lo < len(order); {
		w := win(order[lo])
		hi := lo
		for hi < len(order) && win(order[hi]) == w {
			hi++
		}
		group := order[lo:hi]
		lo = hi
		end := time.Unix(0, (w+1)*int64(p.window))
		if !now.Before(end.Add(compactWindowGrace)) {
			// Closed: smallest first, as many as fit, at most fanout.
			bySize := slices.Clone(group)
			slices.SortStableFunc(bySize, func(a, b int) int { return cmp.Compare(metas[a].Bytes, metas[b].Bytes) })
			if run := fill(metas, bySize, p); len(run) >= 2 {
				slices.SortFunc(run, func(a, b int) int { return cmp.Compare(metas[a].ID, metas[b].ID) })
				return run
			}
			continue
		}
		// Open: the lowest level with a full tier, oldest first.
		for l0 := 0; l0 < len(group); {
			level := metas[group[l0]].Level
			l1 := l0
			var tier []int
			for l1 < len(group) && metas[group[l1]].Level == level {
				if metas[group[l1]].Bytes < p.maxBytes/2 {
					tier = append(tier, group[l1])
				}
				l1++
			}
			l0 = l1
			if level == 0 {
				tier = mature(metas, tier, now, p)
			}
			if len(tier) < p.fanout {
				continue
			}
			if run := fill(metas, tier, p); len(run) >= 2 {
				return run
			}
		}
	}
	return nil
}

// mature returns the level-0 blocks of tier (oldest first) that may be merged: those at least
// freshAge old, and, while more than freshBlocks wait, the oldest of the rest beyond that count.
// Blocks are ordered by ID, which sorts by creation time, so the mature ones are a prefix.
func mature(metas []block.Meta, tier []int, now time.Time, p compactPolicy) []int {
	if p.freshAge <= 0 {
		return tier
	}
	n := 0
	for n < len(tier) && !metas[tier[n]].Created.After(now.Add(-p.freshAge)) {
		n++
	}
	return tier[:max(n, len(tier)-p.freshBlocks)]
}

// fill takes candidates in order while they fit in maxBytes together, up to fanout of them.
func fill(metas []block.Meta, candidates []int, p compactPolicy) []int {
	var run []int
	var bytes int64
	for _, i := range candidates {
		if len(run) == p.fanout || bytes+metas[i].Bytes > p.maxBytes {
			break
		}
		run = append(run, i)
		bytes += metas[i].Bytes
	}
	return run
}

// compactLoop runs compaction beside the flush loop until the store closes.
func (s *Store) compactLoop() {
	defer close(s.compactStopped)
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.compactCtx.Done():
			return
		case <-t.C:
			if err := s.compact(); err != nil && s.compactCtx.Err() == nil {
				s.log.Error("compaction failed; blocks stay as they were", "err", err)
			}
		}
	}
}

// compact merges runs until the plan has none left, or fails. After a failure it waits a
// backoff that doubles per failure (a fault that persists, such as a full disk, costs one try
// per period rather than one per tick); a damaged input is quarantined by then.
func (s *Store) compact() error {
	if s.opts.CompactMinBlocks < 0 {
		return nil
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	if time.Now().Before(s.compactAfter) {
		return nil
	}
	for s.compactCtx.Err() == nil {
		blocks := s.Blocks()
		metas := make([]block.Meta, len(blocks))
		for i, r := range blocks {
			metas[i] = r.Meta()
		}
		idx := planCompaction(metas, s.now(), s.policy())
		if len(idx) == 0 {
			return nil
		}
		run := make([]*block.Reader, len(idx))
		for i, j := range idx {
			run[i] = blocks[j]
		}
		if err := s.compactRun(s.compactCtx, run); err != nil {
			if s.compactCtx.Err() != nil {
				return nil // closing
			}
			s.compactBackoff = min(max(2*s.compactBackoff, compactBackoffMin), compactBackoffMax)
			s.compactAfter = time.Now().Add(s.compactBackoff)
			s.stats.compactErrors.Add(1)
			setErr(&s.stats.lastCompactError, err)
			return fmt.Errorf("%w (next attempt in %s)", err, s.compactBackoff)
		}
		s.compactBackoff, s.compactAfter = 0, time.Time{}
	}
	return nil
}

// compactRun merges run into one block and swaps it in. Order of effects, for crash safety:
// the merged block is published whole and opened before the list changes, and the inputs are
// deleted only after the swap. A crash in between leaves inputs and merged block side by side;
// queries drop the duplicate spans, and the merged block shares its inputs' window, so the next
// merge there takes them together and drops the duplicates (mergeEntries).
func (s *Store) compactRun(ctx context.Context, run []*block.Reader) error {
	start := time.Now()
	// The inputs stay readable even if retention or the disk budget retires them meanwhile.
	for _, r := range run {
		r.Retain()
	}
	defer func() {
		for _, r := range run {
			r.Release()
		}
	}()
	first, created, level, traces := run[0].Meta(), run[0].Meta().Created, 0, int64(0)
	for _, r := range run {
		m := r.Meta()
		if m.Created.After(created) {
			created = m.Created
		}
		if m.Created.Before(first.Created) {
			first = m
		}
		level = max(level, m.Level+1)
		traces += m.Traces
	}
	// The ID sorts with the oldest input; the newest input's creation time keeps retention
	// from deleting the merged data sooner than it would have deleted any of it, and keeps the
	// block in its inputs' window.
	sw, err := block.NewStreamWriter(filepath.Join(s.opts.Dir, scratchDir), int(traces),
		block.WriteOptions{ID: block.NewID(first.Created), Now: created, Level: level})
	if err != nil {
		return fmt.Errorf("store: compact: %w", err)
	}
	spans, err := block.MergeRuns(ctx, run, sw)
	if err != nil {
		sw.Abort()
		return fmt.Errorf("store: compact: %w", err)
	}
	meta, err := sw.Finish(ctx, s.objs)
	if err != nil {
		return fmt.Errorf("store: compact: %w", err)
	}
	merged, err := s.openBlock(ctx, meta.ID)
	if err != nil {
		// Unopened, the block must not linger either: a restart would load it beside its inputs.
		derr := block.Delete(context.WithoutCancel(ctx), s.objs, meta.ID)
		return errors.Join(fmt.Errorf("store: compact: open merged block %s: %w", meta.ID, err), derr)
	}
	inRun := make(map[*block.Reader]bool, len(run))
	for _, r := range run {
		inRun[r] = true
	}
	swapped := false
	left := s.modifyBlocks(func(cur []*block.Reader) []*block.Reader {
		n := 0
		for _, r := range cur {
			if inRun[r] {
				n++
			}
		}
		if n != len(run) {
			// Retention, the disk budget or quarantine took an input meanwhile: its data was
			// meant to go, so the merged copy goes instead of coming back.
			return cur
		}
		swapped = true
		out := slices.DeleteFunc(slices.Clone(cur), func(r *block.Reader) bool { return inRun[r] })
		out = append(out, merged)
		slices.SortFunc(out, func(a, b *block.Reader) int { return cmp.Compare(a.Meta().ID, b.Meta().ID) })
		return out
	})
	if !swapped {
		merged.Release()
		return block.Delete(context.WithoutCancel(ctx), s.objs, meta.ID)
	}
	var errs []error
	for _, r := range left {
		id := r.Meta().ID
		if err := block.Delete(context.WithoutCancel(ctx), s.objs, id); err != nil {
			// The data is safe in the merged block; a leftover input only costs a duplicate
			// that queries drop and a later compaction removes.
			errs = append(errs, fmt.Errorf("store: compact: delete block %s: %w", id, err))
		}
		// A query holding the input keeps reading it; its files close when that query ends.
		r.Release()
	}
	s.stats.compactions.Add(1)
	s.stats.blocksCompacted.Add(int64(len(run)))
	s.log.Info("compacted blocks", "into", meta.ID, "level", level, "blocks", len(run), "traces", meta.Traces,
		"spans", spans, "bytes", meta.Bytes, "took", time.Since(start).Round(time.Millisecond))
	return errors.Join(errs...)
}

// scratchDir is where compaction stages a merged block's files, under the data directory so
// that publishing to a local store renames them. Its leftovers are removed at open.
const scratchDir = "compact-scratch"
