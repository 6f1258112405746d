package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
)

// Forget takes a block out of the store once it lives elsewhere (an ingest node has uploaded it
// to the bucket): new readers stop seeing it and its local files are deleted; a query holding
// it (AcquireBlocks) keeps reading through its open files until it releases it.
func (s *Store) Forget(id string) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	left := s.modifyBlocks(func(cur []*block.Reader) []*block.Reader {
		return slices.DeleteFunc(cur, func(r *block.Reader) bool { return r.Meta().ID == id })
	})
	if len(left) == 0 {
		return nil
	}
	gone := left[0]
	err := block.Delete(context.Background(), s.objs, id)
	gone.Release()
	if err != nil {
		return fmt.Errorf("store: forget block %s: %w", id, err)
	}
	return nil
}
