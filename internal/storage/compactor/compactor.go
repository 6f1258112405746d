// Package compactor maintains the blocks in the bucket for every tenant: it merges runs of
// small blocks into larger ones, applies retention, deletes blocks in two phases and writes
// the tenant's block index that query nodes poll.
//
// Many compactors may run; for each tenant, only the holder of the tenant's lease (package
// lease, S3 conditional writes) works, and the others wait and take over if it stops.
// Nothing is deleted at once: a block leaving (merged away, or past retention) first gets a
// deletion mark, which takes it out of the index and out of query nodes' listings, and is
// deleted only after DeleteGrace, longer than any query, so a query that opened it before
// the mark finishes reading it.
package compactor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/blockindex"
	"github.com/ariadne-tracing/ariadne/internal/storage/lease"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
)

// LeaseName is the lease object's name below a tenant's prefix.
const LeaseName = "compactor.lease"

// Options configure a Compactor. Zero values take the defaults.
type Options struct {
	// Bucket is the root of the installation in the bucket; tenants are its folders.
	Bucket *s3store.Store
	// Holder names this compactor in leases; unique per process.
	Holder string
	// WorkDir holds the scratch files of the block a merge writes (about its size on disk).
	WorkDir string

	Interval    time.Duration // default 30s
	LeaseTTL    time.Duration // default 1m
	DeleteGrace time.Duration // default 5m
	Retention   time.Duration // default 14 days
	// A run of more than MinBlocks blocks under TargetBytes each is merged, up to TargetBytes
	// (defaults 4 and 8 MiB); negative MinBlocks: no merging.
	MinBlocks   int
	TargetBytes int64
	// AbandonAfter deletes an incomplete block folder (an upload cut short) this long after
	// its ID's time (default 1h).
	AbandonAfter time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
}

// Stats count the compactor's work.
type Stats struct {
	Runs, LeaseWaits          int64
	Compactions, BlocksMerged int64
	Marked, Deleted           int64
	IndexWrites               int64
	LastError                 string
}

// Compactor works on every tenant whose lease it can take.
type Compactor struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex // one run at a time
	leases map[string]*lease.Lease
	metas  map[string]block.Meta // immutable: read once per block

	runs, waits, compactions, merged, marked, deleted, indexWrites atomic.Int64
	lastErr                                                        atomic.Value

	stop, stopped chan struct{}
	started       bool
}

// New returns a compactor; Start runs it.
func New(opts Options) *Compactor {
	if opts.Interval <= 0 {
		opts.Interval = 30 * time.Second
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = time.Minute
	}
	if opts.DeleteGrace <= 0 {
		opts.DeleteGrace = 5 * time.Minute
	}
	if opts.Retention <= 0 {
		opts.Retention = 14 * 24 * time.Hour
	}
	if opts.MinBlocks == 0 {
		opts.MinBlocks = 4
	}
	if opts.TargetBytes <= 0 {
		opts.TargetBytes = 8 << 20
	}
	if opts.AbandonAfter <= 0 {
		opts.AbandonAfter = time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Compactor{opts: opts, log: opts.Logger, leases: map[string]*lease.Lease{}, metas: map[string]block.Meta{},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	c.lastErr.Store("")
	return c
}

// Start runs RunOnce every Interval (and at least every LeaseTTL/3, to keep leases) until Stop.
func (c *Compactor) Start() {
	c.started = true
	every := min(c.opts.Interval, c.opts.LeaseTTL/3)
	go func() {
		defer close(c.stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if err := c.RunOnce(context.Background()); err != nil {
				c.log.Warn("compactor run failed", "err", err)
			}
			select {
			case <-c.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends the loop and gives up the leases.
func (c *Compactor) Stop() {
	close(c.stop)
	if c.started {
		<-c.stopped
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.leases {
		l.Release()
	}
}

// Stats reports the counters.
func (c *Compactor) Stats() Stats {
	return Stats{Runs: c.runs.Load(), LeaseWaits: c.waits.Load(), Compactions: c.compactions.Load(),
		BlocksMerged: c.merged.Load(), Marked: c.marked.Load(), Deleted: c.deleted.Load(),
		IndexWrites: c.indexWrites.Load(), LastError: c.lastErr.Load().(string)}
}

// Holds reports whether this compactor holds tenant's lease now.
func (c *Compactor) Holds(tenant string) bool {
	c.mu.Lock()
	l := c.leases[tenant]
	c.mu.Unlock()
	return l != nil && l.Held()
}

// RunOnce works once on every tenant in the bucket.
func (c *Compactor) RunOnce(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runs.Add(1)
	tenants, err := c.opts.Bucket.Folders(ctx, "")
	if err != nil {
		c.lastErr.Store(err.Error())
		return fmt.Errorf("compactor: list tenants: %w", err)
	}
	var errs []error
	for _, t := range tenants {
		if err := c.tenant(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("compactor: tenant %s: %w", t, err))
		}
	}
	err = errors.Join(errs...)
	if err != nil {
		c.lastErr.Store(err.Error())
	} else {
		c.lastErr.Store("")
	}
	return err
}

func (c *Compactor) tenant(ctx context.Context, tenant string) error {
	st := c.opts.Bucket.Sub(tenant)
	l := c.leases[tenant]
	if l == nil {
		l = lease.New(st, LeaseName, c.opts.Holder, c.opts.LeaseTTL)
		c.leases[tenant] = l
	}
	ok, err := l.Acquire(ctx)
	if err != nil {
		return err
	}
	if !ok {
		c.waits.Add(1)
		return nil
	}
	// A merge can outlast the TTL: keep renewing while working, and check before every write
	// that the lease is still ours.
	renewDone := make(chan struct{})
	renewStopped := make(chan struct{})
	go func() {
		defer close(renewStopped)
		t := time.NewTicker(c.opts.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-renewDone:
				return
			case <-t.C:
				if _, err := l.Acquire(ctx); err != nil {
					c.log.Warn("compactor: renewing the lease failed", "tenant", tenant, "err", err)
				}
			}
		}
	}()
	defer func() { close(renewDone); <-renewStopped }()
	held := func() error {
		if !l.Held() {
			return fmt.Errorf("lost the lease")
		}
		return nil
	}
	now := c.opts.Now()
	names, err := st.List(ctx, block.Prefix)
	if err != nil {
		return err
	}
	var live []block.Meta
	marks := map[string]time.Time{}
	for _, f := range blockindex.Scan(names) {
		switch {
		case f.Marked:
			at, err := blockindex.MarkedAt(ctx, st, f.ID)
			if err != nil && !errors.Is(err, objstore.ErrNotFound) {
				return err
			}
			if at.IsZero() || now.Sub(at) < c.opts.DeleteGrace {
				if at.IsZero() {
					at = now
				}
				marks[f.ID] = at
				continue
			}
			if err := held(); err != nil {
				return err
			}
			if err := blockindex.DeleteFolder(ctx, st, f); err != nil {
				return err
			}
			delete(c.metas, f.ID)
			c.deleted.Add(1)
			c.log.Info("deleted block after its grace period", "tenant", tenant, "id", f.ID)
		case !f.Complete:
			if f.ID < blockindex.IDAt(now.Add(-c.opts.AbandonAfter)) {
				if err := held(); err != nil {
					return err
				}
				if err := blockindex.DeleteFolder(ctx, st, f); err != nil {
					return err
				}
			}
		default:
			m, ok := c.metas[f.ID]
			if !ok {
				if m, err = blockindex.ReadMeta(ctx, st, f.ID); err != nil {
					if errors.Is(err, objstore.ErrNotFound) {
						continue
					}
					return err
				}
				c.metas[f.ID] = m
			}
			live = append(live, m)
		}
	}
	// Retention: a block goes when its newest span is past retention, and never sooner than
	// retention after it was written (as the single-node store does).
	cutoff := now.Add(-c.opts.Retention)
	var kept []block.Meta
	for _, m := range live {
		if m.MaxEnd < cutoff.UnixNano() && m.Created.Before(cutoff) {
			if err := c.mark(ctx, st, held, m.ID, now, marks); err != nil {
				return err
			}
			continue
		}
		kept = append(kept, m)
	}
	live = kept
	if run := pickRun(live, c.opts.MinBlocks, c.opts.TargetBytes); len(run) > 0 {
		merged, err := c.merge(ctx, st, held, run)
		if err != nil {
			return err
		}
		c.metas[merged.ID] = merged
		inRun := map[string]bool{}
		for _, m := range run {
			inRun[m.ID] = true
			if err := c.mark(ctx, st, held, m.ID, now, marks); err != nil {
				return err
			}
		}
		live = slices.DeleteFunc(live, func(m block.Meta) bool { return inRun[m.ID] })
		live = append(live, merged)
		slices.SortFunc(live, func(a, b block.Meta) int { return strings.Compare(a.ID, b.ID) })
	}
	if err := held(); err != nil {
		return err
	}
	ix := blockindex.Index{Written: now, Blocks: live, Marked: marks}
	data, err := ix.Encode()
	if err != nil {
		return err
	}
	if err := st.Put(ctx, blockindex.Name, strings.NewReader(string(data))); err != nil {
		return err
	}
	c.indexWrites.Add(1)
	return nil
}

func (c *Compactor) mark(ctx context.Context, st objstore.Store, held func() error, id string, now time.Time, marks map[string]time.Time) error {
	if err := held(); err != nil {
		return err
	}
	if err := blockindex.Mark(ctx, st, id, now); err != nil {
		return err
	}
	marks[id] = now
	c.marked.Add(1)
	return nil
}

// pickRun returns the oldest run of consecutive blocks under target bytes, at least two and at
// most target bytes in all, or nil unless more than minBlocks such blocks exist (the rule of
// the single-node store's compaction, applied to the bucket's blocks).
func pickRun(blocks []block.Meta, minBlocks int, target int64) []block.Meta {
	if minBlocks < 0 {
		return nil
	}
	small := 0
	for _, m := range blocks {
		if m.Bytes < target {
			small++
		}
	}
	if small <= minBlocks {
		return nil
	}
	var run []block.Meta
	var bytes int64
	for _, m := range blocks {
		if m.Bytes < target && bytes+m.Bytes <= target {
			run = append(run, m)
			bytes += m.Bytes
			continue
		}
		if len(run) >= 2 {
			return run
		}
		run, bytes = nil, 0
		if m.Bytes < target {
			run, bytes = append(run, m), m.Bytes
		}
	}
	if len(run) >= 2 {
		return run
	}
	return nil
}

// merge streams the run's blocks from the bucket into one: each input is read in order through
// ranged GETs of mergeChunk bytes (readahead), traces are merged by ID a batch per input at a
// time (block.MergeRuns, which drops spans stored twice: a crash between a merge and its marks
// leaves them side by side), the output's Parquet files are encoded to scratch files in WorkDir
// and uploaded from them (multipart when large). Memory is a few chunks and a batch of traces
// per input plus a row group's pages per output file, whatever the blocks' sizes; local disk
// holds the output once.
func (c *Compactor) merge(ctx context.Context, st *s3store.Store, held func() error, run []block.Meta) (block.Meta, error) {
	start := time.Now()
	src := readahead{Store: st, chunk: mergeChunk, keep: 4}
	readers := make([]*block.Reader, 0, len(run))
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	created, traces, level := run[0].Created, int64(0), 0
	for _, m := range run {
		if m.Created.After(created) {
			created = m.Created
		}
		traces += m.Traces
		level = max(level, m.Level+1)
		r, err := block.Open(ctx, src, m.ID)
		if err != nil {
			return block.Meta{}, fmt.Errorf("compactor: open %s: %w", m.ID, err)
		}
		readers = append(readers, r)
	}
	// The ID sorts with the oldest input and the newest input's creation time is kept, as in
	// the single-node store: retention never deletes merged data sooner than its parts.
	sw, err := block.NewStreamWriter(c.opts.WorkDir, int(traces), block.WriteOptions{ID: block.NewID(run[0].Created), Now: created, Level: level})
	if err != nil {
		return block.Meta{}, fmt.Errorf("compactor: %w", err)
	}
	spans, err := block.MergeRuns(ctx, readers, sw)
	if err == nil {
		err = held()
	}
	if err != nil {
		sw.Abort()
		return block.Meta{}, fmt.Errorf("compactor: merge: %w", err)
	}
	meta, err := sw.Finish(ctx, st)
	if err != nil {
		return block.Meta{}, fmt.Errorf("compactor: write merged block: %w", err)
	}
	c.compactions.Add(1)
	c.merged.Add(int64(len(run)))
	c.log.Info("compacted blocks in the bucket", "into", meta.ID, "blocks", len(run), "traces", meta.Traces,
		"spans", spans, "bytes", meta.Bytes, "took", time.Since(start).Round(time.Millisecond))
	return meta, nil
}

// mergeChunk is the size of the ranged reads a merge makes of its inputs.
const mergeChunk = 512 << 10
