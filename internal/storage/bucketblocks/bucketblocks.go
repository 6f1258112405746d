// Package bucketblocks keeps a query node's view of a tenant's blocks in the bucket: it polls
// the block index (blockindex), lists what was uploaded since, opens new blocks through the
// on-disk cache and closes the ones that went away. It holds no state that matters: a restart
// rebuilds it from the bucket.
package bucketblocks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/blockindex"
	"github.com/ariadne-tracing/ariadne/internal/storage/objcache"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
)

// Options configure a Set.
type Options struct {
	// Bucket is the tenant's view of the bucket (index, marks, listings); Cache the cached
	// view of the same names that blocks are read through.
	Bucket *s3store.Store
	Cache  *objcache.Store
	// Poll is how often the index is reloaded (default 10s).
	Poll time.Duration
	// ListLag is how far before the index's time listings start, for blocks uploaded late
	// with older IDs (default 15m).
	ListLag time.Duration
	Logger  *slog.Logger
}

// Set is the open blocks of one tenant's bucket prefix. Safe for concurrent use.
type Set struct {
	opts Options
	log  *slog.Logger

	mu      sync.RWMutex
	blocks  []*block.Reader // by ID
	byID    map[string]*block.Reader
	etag    string
	index   *blockindex.Index
	lastErr error
	polled  time.Time

	started       bool
	stop, stopped chan struct{}
}

// New returns an empty Set; Start polls.
func New(opts Options) *Set {
	if opts.Poll <= 0 {
		opts.Poll = 10 * time.Second
	}
	if opts.ListLag <= 0 {
		opts.ListLag = 15 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Set{opts: opts, log: opts.Logger, byID: map[string]*block.Reader{}, stop: make(chan struct{}), stopped: make(chan struct{})}
}

// Start polls once, then every Poll until Close. A failed first poll is logged, not fatal: a
// query node answers what it can reach (partially) and catches up when the bucket is back.
func (s *Set) Start(ctx context.Context) {
	if err := s.Poll(ctx); err != nil {
		s.log.Warn("block index: first poll failed; retrying", "err", err)
	}
	s.started = true
	go func() {
		defer close(s.stopped)
		t := time.NewTicker(s.opts.Poll)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				// Logged when the state changes, not at every poll of an outage.
				was := s.Stale()
				err := s.Poll(context.Background())
				switch {
				case err != nil && was == nil:
					s.log.Warn("block index poll failed; serving the blocks known, answers flagged partial", "err", err)
				case err == nil && was != nil:
					s.log.Info("block index poll works again")
				}
			}
		}
	}()
}

// Blocks returns the open blocks, oldest first, for their metas. To read them, use
// AcquireBlocks: a block that leaves the bucket's view closes once its holders release it.
func (s *Set) Blocks() []*block.Reader {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.blocks)
}

// AcquireBlocks returns the open blocks, held open for the caller until it calls release
// (once). The set holds one reference of its own to each block it lists.
func (s *Set) AcquireBlocks() (blocks []*block.Reader, release func()) {
	s.mu.RLock()
	blocks = slices.Clone(s.blocks)
	for _, r := range blocks {
		r.Retain()
	}
	s.mu.RUnlock()
	var once sync.Once
	return blocks, func() {
		once.Do(func() {
			for _, r := range blocks {
				r.Release()
			}
		})
	}
}

// Stale reports the last poll's error, nil when the view is current.
func (s *Set) Stale() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastErr
}

// Poll reloads the index and opens and closes blocks to match the bucket.
func (s *Set) Poll(ctx context.Context) (err error) {
	defer func() {
		s.mu.Lock()
		s.lastErr = err
		if err == nil {
			s.polled = time.Now()
		}
		s.mu.Unlock()
	}()
	live, err := s.discover(ctx)
	if err != nil {
		return err
	}
	want := map[string]block.Meta{}
	for _, m := range live {
		want[m.ID] = m
	}
	s.mu.RLock()
	var toOpen []block.Meta
	for id, m := range want {
		if s.byID[id] == nil {
			toOpen = append(toOpen, m)
		}
	}
	s.mu.RUnlock()
	opened, openErr := s.openAll(ctx, toOpen)

	s.mu.Lock()
	for _, r := range opened {
		s.byID[r.Meta().ID] = r
	}
	var gone []*block.Reader
	for id, r := range s.byID {
		if _, ok := want[id]; !ok {
			gone = append(gone, r)
			delete(s.byID, id)
		}
	}
	blocks := make([]*block.Reader, 0, len(s.byID))
	for _, r := range s.byID {
		blocks = append(blocks, r)
	}
	slices.SortFunc(blocks, func(a, b *block.Reader) int { return cmpString(a.Meta().ID, b.Meta().ID) })
	s.blocks = blocks
	s.mu.Unlock()
	for _, r := range gone {
		// A query holding the block (AcquireBlocks) keeps reading it: its objects stay in the
		// bucket for the deletion grace, longer than any query.
		r.Release()
	}
	if len(opened) > 0 || len(gone) > 0 {
		s.log.Debug("block index polled", "opened", len(opened), "closed", len(gone), "blocks", len(blocks))
	}
	return openErr
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// discover returns the live (complete, unmarked) blocks: the index's, plus any listed since.
func (s *Set) discover(ctx context.Context) ([]block.Meta, error) {
	rc, etag, err := s.opts.Bucket.GetWithETag(ctx, blockindex.Name, s.etag)
	var ix *blockindex.Index
	switch {
	case errors.Is(err, s3store.ErrNotModified):
		s.mu.RLock()
		ix = s.index
		s.mu.RUnlock()
	case err == nil:
		ix, err = blockindex.Decode(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.index, s.etag = ix, etag
		s.mu.Unlock()
	case isNotFound(err):
		ix = nil
	default:
		return nil, fmt.Errorf("bucketblocks: read index: %w", err)
	}
	after := ""
	metas := map[string]block.Meta{}
	if ix != nil {
		for _, m := range ix.Blocks {
			metas[m.ID] = m
		}
		after = block.Prefix + blockindex.IDAt(ix.Written.Add(-s.opts.ListLag))
	}
	names, err := s.opts.Bucket.ListAfter(ctx, block.Prefix, after)
	if err != nil {
		return nil, fmt.Errorf("bucketblocks: list: %w", err)
	}
	for _, f := range blockindex.Scan(names) {
		if f.Marked {
			delete(metas, f.ID)
			continue
		}
		if !f.Complete {
			continue
		}
		if _, ok := metas[f.ID]; ok {
			continue
		}
		s.mu.RLock()
		r := s.byID[f.ID]
		s.mu.RUnlock()
		if r != nil {
			metas[f.ID] = r.Meta()
			continue
		}
		// Read through the cache: meta.json is immutable and block.Open reads it again.
		m, err := blockindex.ReadMeta(ctx, s.opts.Cache, f.ID)
		if isNotFound(err) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, err
		}
		metas[f.ID] = m
	}
	if ix != nil {
		for id := range ix.Marked {
			delete(metas, id)
		}
	}
	out := make([]block.Meta, 0, len(metas))
	for _, m := range metas {
		out = append(out, m)
	}
	return out, nil
}

// openAll opens blocks in parallel (a few at a time), each with one wave of prefetches.
func (s *Set) openAll(ctx context.Context, metas []block.Meta) ([]*block.Reader, error) {
	var (
		mu     sync.Mutex
		out    []*block.Reader
		errs   []error
		wg     sync.WaitGroup
		tokens = make(chan struct{}, 8)
	)
	for _, m := range metas {
		tokens <- struct{}{}
		wg.Go(func() {
			defer func() { <-tokens }()
			r, err := s.open(ctx, m)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out = append(out, r)
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (s *Set) open(ctx context.Context, m block.Meta) (*block.Reader, error) {
	dir := block.Prefix + m.ID + "/"
	ranged := map[string]int64{}
	whole := []string{dir + "meta.json", dir + "bloom"}
	for name, size := range m.Files {
		switch name {
		case "bloom":
		case "index": // format 3: small, and read whole by the first metrics query or tag lookup
			whole = append(whole, dir+name)
		default:
			ranged[dir+name] = size
		}
	}
	if err := s.opts.Cache.Prefetch(ctx, ranged, whole); err != nil {
		return nil, fmt.Errorf("bucketblocks: prefetch block %s: %w", m.ID, err)
	}
	r, err := block.Open(ctx, s.opts.Cache, m.ID)
	if err != nil {
		return nil, fmt.Errorf("bucketblocks: %w", err)
	}
	return r, nil
}

// Close stops polling and closes every block.
func (s *Set) Close() {
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	if s.started {
		<-s.stopped
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.blocks {
		r.Release()
	}
	s.blocks, s.byID = nil, map[string]*block.Reader{}
}

func isNotFound(err error) bool { return errors.Is(err, objstore.ErrNotFound) }
