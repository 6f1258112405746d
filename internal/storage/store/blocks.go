package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// openBlocks loads the block list at open. Nothing one block holds stops the store from
// opening: leftovers of interrupted writes are removed, and a block that cannot be opened or
// fails its checks is quarantined, logged and counted, while every other block is served and
// the WAL is replayed as usual. Only a failure to list the store at all is an error.
func (s *Store) openBlocks(ctx context.Context) error {
	if sw, ok := s.objs.(objstore.Sweeper); ok {
		// No write is in progress before the store opens, so all staging is a crash's.
		n, err := sw.Sweep(ctx, block.Prefix)
		if err != nil {
			return fmt.Errorf("store: remove leftovers of interrupted block writes: %w", err)
		}
		if n > 0 {
			s.stats.swept.Add(int64(n))
			s.log.Warn("removed leftovers of interrupted block writes", "count", n)
		}
	}
	// A merge a crash interrupted left its scratch files; the inputs are still in place.
	if err := os.RemoveAll(filepath.Join(s.opts.Dir, scratchDir)); err != nil {
		return fmt.Errorf("store: remove compaction scratch: %w", err)
	}
	inv, err := block.Survey(ctx, s.objs)
	if err != nil {
		return fmt.Errorf("store: list blocks: %w", err)
	}
	for id, err := range inv.Damaged {
		s.quarantine(ctx, id, err)
	}
	if _, atomic := s.objs.(objstore.Publisher); atomic {
		// Blocks here appear whole by rename, so a folder under a block's name without its
		// meta.json lost it afterwards: its data may be nowhere else any more.
		for _, id := range inv.Incomplete {
			s.quarantine(ctx, id, fmt.Errorf("%w: meta.json is missing", block.ErrDamaged))
		}
	} else if len(inv.Incomplete) > 0 {
		// On an object store, a folder without meta.json may be another writer's upload in
		// progress; the compactor that owns the bucket cleans those.
		s.log.Warn("block folders without meta.json left alone", "count", len(inv.Incomplete))
	}
	var blocks []*block.Reader
	for _, m := range inv.Complete {
		r, err := s.openBlock(ctx, m.ID)
		if err != nil {
			if !errors.Is(err, block.ErrDamaged) {
				closeAll(blocks)
				return fmt.Errorf("store: open block %s: %w", m.ID, err)
			}
			s.quarantine(ctx, m.ID, err)
			continue
		}
		blocks = append(blocks, r)
	}
	s.modifyBlocks(func([]*block.Reader) []*block.Reader { return blocks })
	return nil
}

func closeAll(rs []*block.Reader) {
	for _, r := range rs {
		r.Release()
	}
}

// openBlock opens a block with the damage hook set: a read that finds damage queues the
// block for quarantine, which the loop does on its next tick.
func (s *Store) openBlock(ctx context.Context, id string) (*block.Reader, error) {
	r, err := block.Open(ctx, s.objs, id)
	if err != nil {
		return nil, err
	}
	if err := r.Degraded(); err != nil {
		s.stats.degraded.Add(1)
		s.log.Warn("block served without its bloom filter: its lookups read the trace-ID index instead",
			"block", id, "damage", err)
	}
	r.OnDamage(func(err error) {
		s.damagedMu.Lock()
		defer s.damagedMu.Unlock()
		if _, queued := s.damaged[r]; !queued {
			s.damaged[r] = err
		}
	})
	return r, nil
}

// quarantine moves block id aside and says so. Failing to move it is logged, not returned:
// the block is out of the list either way, and a restart tries again.
func (s *Store) quarantine(ctx context.Context, id string, reason error) {
	s.stats.quarantined.Add(1)
	dest, err := block.Quarantine(ctx, s.objs, id, reason)
	if err != nil {
		s.log.Error("damaged block left in place: could not move it to quarantine; it is not served",
			"block", id, "damage", reason, "err", err)
		return
	}
	s.log.Error("damaged block quarantined: it is not served, and the rest of the store is",
		"block", id, "damage", reason, "moved_to", dest)
}

// quarantineDamaged takes the blocks that reads found damaged out of the list and moves them
// aside. Queries holding one finish with their reference; the files close after them.
func (s *Store) quarantineDamaged() {
	s.damagedMu.Lock()
	found := s.damaged
	if len(found) == 0 {
		s.damagedMu.Unlock()
		return
	}
	s.damaged = map[*block.Reader]error{}
	s.damagedMu.Unlock()

	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	// Under flushMu no compaction is reading these blocks, and none can pick them after.
	left := s.modifyBlocks(func(cur []*block.Reader) []*block.Reader {
		return slices.DeleteFunc(cur, func(r *block.Reader) bool { _, bad := found[r]; return bad })
	})
	for _, r := range left {
		s.quarantine(context.Background(), r.Meta().ID, found[r])
		r.Release()
	}
}
