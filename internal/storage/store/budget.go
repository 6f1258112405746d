package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
)

// walReserve is the room the disk budget keeps for the WAL: what it holds now, and never less
// than two segments plus what the head may grow to before it is cut, so that accepted spans
// always have somewhere to go while blocks wait to be deleted.
func (s *Store) walReserve() int64 {
	seg := s.opts.WAL.SegmentBytes
	if seg <= 0 {
		seg = 128 << 20 // the WAL's default
	}
	return max(s.WALStats().BytesOnDisk, 2*seg+2*s.opts.HeadMaxBytes)
}

// blockBudget is how many bytes blocks may take under Options.MaxDiskBytes: the budget less the
// WAL's reserve and room for one block being written or compacted beside its inputs.
func (s *Store) blockBudget() int64 {
	return s.opts.MaxDiskBytes - s.walReserve() - max(s.opts.BlockMaxBytes, s.opts.CompactTargetBytes)
}

// applyDiskBudget deletes the blocks with the oldest data until blocks fit the budget. The
// newest block always stays: a budget smaller than one block would otherwise delete data as
// soon as it was written. Called under flushMu.
func (s *Store) applyDiskBudget() error {
	if s.opts.MaxDiskBytes <= 0 {
		return nil
	}
	budget := s.blockBudget()
	var dropped []*block.Reader
	var used int64
	left := s.modifyBlocks(func(blocks []*block.Reader) []*block.Reader {
		used = 0
		for _, r := range blocks {
			used += r.Meta().Bytes
		}
		if used <= budget || len(blocks) <= 1 {
			return blocks
		}
		drop := pickOverBudget(blocks, budget, &used)
		return slices.DeleteFunc(blocks, func(r *block.Reader) bool { return drop[r] })
	})
	dropped = left
	if used > budget && len(s.Blocks()) == 1 {
		s.log.Warn("disk budget is smaller than the newest block; keeping it", "max_disk_bytes", s.opts.MaxDiskBytes,
			"block_budget", budget, "block_bytes", used)
	}
	var errs []error
	for _, r := range dropped {
		m := r.Meta()
		if err := block.Delete(context.Background(), s.objs, m.ID); err != nil {
			errs = append(errs, fmt.Errorf("store: disk budget: delete block %s: %w", m.ID, err))
		}
		r.Release()
		s.stats.budgetDeleted.Add(1)
		s.log.Warn("disk budget deleted block with the oldest data", "id", m.ID, "bytes", m.Bytes,
			"newest_span_unix_nano", m.MaxEnd, "max_disk_bytes", s.opts.MaxDiskBytes, "block_budget", budget)
	}
	return errors.Join(errs...)
}

// pickOverBudget chooses the blocks with the oldest data until the rest fit in budget, never
// the newest block; used is updated to what stays.
func pickOverBudget(blocks []*block.Reader, budget int64, used *int64) map[*block.Reader]bool {
	// Oldest data first: by newest span, then by creation.
	byAge := slices.Clone(blocks)
	slices.SortFunc(byAge, func(a, b *block.Reader) int {
		return cmp.Or(cmp.Compare(a.Meta().MaxEnd, b.Meta().MaxEnd), cmp.Compare(a.Meta().ID, b.Meta().ID))
	})
	newest := slices.MaxFunc(blocks, func(a, b *block.Reader) int { return cmp.Compare(a.Meta().ID, b.Meta().ID) })
	drop := map[*block.Reader]bool{}
	for _, r := range byAge {
		if *used <= budget {
			break
		}
		if r == newest {
			continue
		}
		drop[r] = true
		*used -= r.Meta().Bytes
	}
	return drop
}
