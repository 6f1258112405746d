// Package store is Ariadne's embedded trace store: the write-ahead log, the head of live traces
// and the immutable blocks, and the loop that moves traces from one to the next.
//
// An append is durable when Append returns: the request is in the WAL (fsync'd, group-committed)
// and its spans are in the head. The flush loop cuts complete traces from the head, passes them
// through the sampling hook, writes the kept ones into a block, and once the block is durable
// drops them from the head and deletes the WAL segments nothing in the head needs any more.
// Opening a store replays what the WAL still holds, so a crash loses nothing acknowledged.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
	"github.com/ariadne-tracing/ariadne/internal/storage/wal"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Options configure a Store. Zero values take the defaults.
type Options struct {
	Dir string // data directory: wal/ and blocks/ below it

	TraceIdle    time.Duration // a trace with no new span for this long is complete (default 5s)
	TraceMaxAge  time.Duration // a trace is cut after this long even if busy (default 1m)
	HeadMaxBytes int64         // live span bytes past which the oldest traces are cut early (default 16 MiB)

	BlockMaxBytes int64         // cut traces are collected into one block up to this many span bytes (default 16 MiB)
	BlockMaxWait  time.Duration // or until the oldest has waited this long (default 1m)
	FlushInterval time.Duration // how often the loop looks for complete traces (default 250ms)
	// BlockWriters is how many blocks may be built at once (default GOMAXPROCS/2, at least 2):
	// past one, the flush loop goes on cutting, and a block encodes while the one before it is
	// fsync'd, opened and released. Each writer is itself a pipeline of about two cores
	// (block/pipeline.go), hence half the cores.
	BlockWriters int

	Retention time.Duration // blocks whose newest span is older are deleted (default 14 days)

	// MaxDiskBytes caps what the store keeps on disk (0: no cap). Past it, the blocks with the
	// oldest data are deleted first, keeping room for the WAL (see walReserve) and for one
	// block being written or compacted.
	MaxDiskBytes int64

	// Compaction (see compact.go) merges CompactMinBlocks blocks of one level within one
	// CompactWindow of creation time, and merges a closed window's blocks up to
	// CompactTargetBytes each (defaults 8, 4 GiB, 24h). A negative CompactMinBlocks turns
	// compaction off.
	CompactMinBlocks   int
	CompactTargetBytes int64
	CompactWindow      time.Duration
	// CompactFreshAge is how long a block from the head waits before it may be merged
	// (default 2m; negative: no wait), unless more than CompactFreshBlocks blocks from the head
	// are waiting (default 64): see compact.go.
	CompactFreshAge    time.Duration
	CompactFreshBlocks int

	// ExternalLog means the store keeps no write-ahead log: the caller's replicated log (the
	// JetStream ingest log) is the durable copy, appends come through AppendLogged with the
	// log's positions, and BlockWritten tells the caller what each block made safe to drop.
	ExternalLog bool
	// BlockWritten, when set, is called for each block written, with the oldest log position
	// (WAL segment, or AppendLogged's seq) of its traces, before they leave the head: with
	// ExternalLog the caller holds back its log's acknowledgement until the block is durable.
	BlockWritten func(id string, minSeq uint64)

	// Keep is the tail-sampling hook: it sees each complete trace and says whether it goes to a
	// block, and with what sampling ratio (see block.Trace.SampleRatio). Nil keeps everything.
	Keep func(t *head.Trace) (keep bool, ratio float64)

	WAL    wal.Options
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.TraceIdle <= 0 {
		o.TraceIdle = 5 * time.Second
	}
	if o.TraceMaxAge <= 0 {
		o.TraceMaxAge = time.Minute
	}
	if o.HeadMaxBytes <= 0 {
		o.HeadMaxBytes = 16 << 20
	}
	if o.BlockMaxBytes <= 0 {
		o.BlockMaxBytes = 16 << 20
	}
	if o.BlockMaxWait <= 0 {
		o.BlockMaxWait = time.Minute
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 250 * time.Millisecond
	}
	if o.BlockWriters <= 0 {
		o.BlockWriters = max(2, runtime.GOMAXPROCS(0)/2)
	}
	if o.Retention <= 0 {
		o.Retention = 14 * 24 * time.Hour
	}
	if o.CompactMinBlocks == 0 {
		o.CompactMinBlocks = defaultCompactMinBlocks
	}
	if o.CompactTargetBytes <= 0 {
		o.CompactTargetBytes = defaultCompactTargetBytes
	}
	if o.CompactWindow <= 0 {
		o.CompactWindow = defaultCompactWindow
	}
	if o.CompactFreshAge == 0 {
		o.CompactFreshAge = defaultCompactFreshAge
	}
	if o.CompactFreshBlocks <= 0 {
		o.CompactFreshBlocks = defaultCompactFreshBlocks
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.WAL.Logger == nil {
		o.WAL.Logger = o.Logger
	}
}

// Store is safe for concurrent use.
type Store struct {
	opts Options
	log  *slog.Logger
	wal  *wal.WAL
	head *head.Head
	objs objstore.Store

	// inflight orders WAL trimming against appends without making either wait for the other:
	// an append is registered from before its WAL write until its spans are in the head, so
	// trimming never deletes a segment whose spans the head has not seen yet (see trimWAL).
	inflight inflightAppends
	// afterWALWrite, when set (by tests), runs in Append between the WAL write and the head.
	afterWALWrite func()

	// blocksMu guards the list only: it is held for no I/O, so readers never wait on storage.
	// The list holds one reference to each reader (block.Reader.Retain); a retired block's
	// files close when the last query holding it releases it.
	blocksMu sync.RWMutex
	blocks   []*block.Reader // oldest first

	// damaged collects readers whose reads found damage, for the loop to quarantine.
	damagedMu sync.Mutex
	damaged   map[*block.Reader]error

	// Compaction runs in its own goroutine (compactLoop); compactMu makes runs one at a time.
	// compactBackoff spaces attempts after a failure, so a fault that persists costs a try per
	// backoff period rather than one per tick.
	compactMu      sync.Mutex
	compactCtx     context.Context
	compactCancel  context.CancelFunc
	compactStopped chan struct{}
	compactBackoff time.Duration
	compactAfter   time.Time

	pending      []*head.Trace // cut, kept, waiting to fill a block
	ratios       []float64     // the sampling ratio of each pending trace
	pendingBytes int64
	pendingSince time.Time

	// Blocks are built concurrently, up to Options.BlockWriters at once (see writers.go):
	// the flush loop hands a full batch to a writer and goes on cutting.
	writers   chan struct{}  // one token per writer at work
	writing   sync.WaitGroup // writers at work
	scratch   sync.Pool      // *writeScratch
	failedMu  sync.Mutex
	failed    []blockJob // batches whose block failed, back to pending at the next flush
	failedErr error

	now func() time.Time // the clock retention reads; tests move it
	// retention is Options.Retention, changed by SetRetention while the store runs (per-tenant
	// overrides re-read from the configuration file).
	retention atomic.Int64

	flushMu sync.Mutex // one flush at a time: the loop, Flush, Close
	stop    chan struct{}
	stopped chan struct{}
	closed  bool

	stats counters

	replay wal.ReplayStats // what the WAL replay at open found; never changes after
}

// counters are the store's statistics, kept in atomics so that Stats and /metrics never wait
// for a flush or a compaction.
type counters struct {
	blocksWritten, tracesFlushed, spansFlushed, tracesDropped, blocksDeleted, replayedSpans  atomic.Int64
	compactions, blocksCompacted, compactErrors, quarantined, swept, degraded, budgetDeleted atomic.Int64
	blocks, blockBytes                                                                       atomic.Int64
	lastFlushError, lastCompactError                                                         atomic.Pointer[string]
}

func setErr(p *atomic.Pointer[string], err error) {
	msg := err.Error()
	p.Store(&msg)
}

func loadErr(p *atomic.Pointer[string]) string {
	if m := p.Load(); m != nil {
		return *m
	}
	return ""
}

// Stats count the store's work since it opened.
type Stats struct {
	BlocksWritten  int64
	TracesFlushed  int64
	SpansFlushed   int64
	TracesDropped  int64 // by the sampling hook
	BlocksDeleted  int64 // by retention
	BudgetDeleted  int64 // by the disk budget (Options.MaxDiskBytes)
	ReplayedSpans  int64
	LastFlushError string

	Compactions      int64 // merged blocks written
	BlocksCompacted  int64 // blocks merged away
	CompactErrors    int64 // failed compaction attempts
	LastCompactError string

	BlocksQuarantined int64 // damaged blocks moved aside, at open or when a read found damage
	StagingSwept      int64 // leftovers of interrupted block writes removed at open
	BlocksDegraded    int64 // opened without a sound bloom filter, served from the index

	Blocks     int64 // blocks open for queries
	BlockBytes int64 // their size on disk (Meta.Bytes)
}

// Open opens or creates the store in opts.Dir, replays its WAL into the head and starts the flush
// loop.
func Open(opts Options) (*Store, error) {
	opts.defaults()
	if opts.Dir == "" {
		return nil, errors.New("store: no data directory")
	}
	// Blocks write through the WAL's file system, so one fault injector covers both.
	fsys := opts.WAL.FS
	if fsys == nil {
		fsys = vfs.OS
	}
	objs, err := objstore.NewLocalFS(opts.Dir, fsys)
	if err != nil {
		return nil, fmt.Errorf("store: open blocks: %w", err)
	}
	return OpenWith(opts, objs)
}

// OpenWith is Open with blocks in the given object store.
func OpenWith(opts Options, objs objstore.Store) (*Store, error) {
	opts.defaults()
	s := &Store{opts: opts, log: opts.Logger, head: head.New(), objs: objs, now: time.Now,
		stop: make(chan struct{}), stopped: make(chan struct{}), damaged: map[*block.Reader]error{}}
	s.retention.Store(int64(opts.Retention))
	if err := s.openBlocks(context.Background()); err != nil {
		return nil, err
	}
	if opts.ExternalLog {
		// The replicated log replays into the head itself (AppendLogged).
		s.startLoops()
		return s, nil
	}
	var err error
	walDir := filepath.Join(opts.Dir, "wal")
	start := time.Now()
	var replayed int64
	s.replay, err = wal.ReplayWith(walDir, wal.ReplayOptions{FS: opts.WAL.FS, Logger: s.log}, func(seq uint64, payload []byte) error {
		if !otlpwire.ValidUTF8(payload) {
			// Written by a build that did not replace invalid UTF-8 at ingest.
			if fixed, _, err := otlpwire.SanitizeUTF8(nil, payload); err == nil {
				payload = fixed
			}
		}
		n, err := s.appendHead(seq, payload)
		replayed += int64(n)
		return err
	})
	if err != nil {
		s.closeBlocks()
		return nil, fmt.Errorf("store: replay WAL: %w", err)
	}
	if replayed > 0 {
		s.log.Info("replayed write-ahead log", "spans", replayed, "took", time.Since(start).Round(time.Millisecond))
	}
	s.stats.replayedSpans.Store(replayed)
	s.wal, err = wal.Open(walDir, opts.WAL)
	if err != nil {
		s.closeBlocks()
		return nil, err
	}
	s.startLoops()
	return s, nil
}

func (s *Store) startLoops() {
	s.writers = make(chan struct{}, s.opts.BlockWriters)
	s.compactCtx, s.compactCancel = context.WithCancel(context.Background())
	s.compactStopped = make(chan struct{})
	go s.loop()
	go s.compactLoop()
}

// AppendLogged puts the spans of one request (validated, protobuf wire form) into the head
// without writing them to a WAL: with Options.ExternalLog they are durable in the caller's log
// at position seq, which the head remembers per trace (MinSegment) until a block holds them.
func (s *Store) AppendLogged(seq uint64, payload []byte) error {
	// Nothing to order against: with an external log the store trims no WAL, and the caller
	// commits offsets from head.MinSegment, which holds seq from the moment the spans are in.
	_, err := s.appendHead(seq, payload)
	return err
}

// Append makes the spans of one ExportTraceServiceRequest (already validated, protobuf wire
// form) durable and readable. payload may be reused when Append returns.
func (s *Store) Append(payload []byte) error {
	defer s.inflight.leave(s.inflight.enter(s.wal.ActiveSegment()))
	seq, err := s.wal.Append(payload)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if s.afterWALWrite != nil {
		s.afterWALWrite()
	}
	_, err = s.appendHead(seq, payload)
	return err
}

// AppendBatch is Append for a request its caller has scanned already (spans, every span
// valid): the head takes the spans from the batch instead of scanning payload again. payload
// is what goes to the WAL, and spans must be its scan.
func (s *Store) AppendBatch(payload []byte, spans *otlpwire.Batch) error {
	defer s.inflight.leave(s.inflight.enter(s.wal.ActiveSegment()))
	seq, err := s.wal.Append(payload)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	app := s.head.Appender(seq)
	for i := range spans.Spans {
		app.Append(spans.Group(i), &spans.Spans[i])
	}
	app.Commit()
	return nil
}

func (s *Store) appendHead(seq uint64, payload []byte) (int, error) {
	app := s.head.Appender(seq)
	n := 0
	err := otlpwire.ScanRequest(payload, func(g *otlpwire.Group, sp *otlpwire.Span) error {
		// Records in the WAL were validated before they were written; this guards replay against
		// a record from a build with different rules.
		if ok, _ := sp.Valid(); ok {
			app.Append(g, sp)
			n++
		}
		return nil
	})
	app.Commit()
	return n, err
}

// Head is the live part of the store, for readers.
func (s *Store) Head() *head.Head { return s.head }

// Blocks returns the open blocks, oldest first, for their metas. To read them, use
// AcquireBlocks: a block compacted or deleted after Blocks returns closes its files.
func (s *Store) Blocks() []*block.Reader {
	s.blocksMu.RLock()
	defer s.blocksMu.RUnlock()
	return append([]*block.Reader(nil), s.blocks...)
}

// AcquireBlocks returns the open blocks, oldest first, held open for the caller until it calls
// release (once): a block that compaction or retention retires meanwhile closes its files only
// when its last holder releases it, as Prometheus' tsdb does with a block's pending readers.
func (s *Store) AcquireBlocks() (blocks []*block.Reader, release func()) {
	s.blocksMu.RLock()
	blocks = append([]*block.Reader(nil), s.blocks...)
	for _, r := range blocks {
		r.Retain()
	}
	s.blocksMu.RUnlock()
	var once sync.Once
	return blocks, func() {
		once.Do(func() {
			for _, r := range blocks {
				r.Release()
			}
		})
	}
}

// modifyBlocks replaces the list with what fn makes of it, atomically against every other
// change (flush, compaction, retention, budget, quarantine), and returns the readers that left
// it, whose list reference the caller releases once it has dealt with their files. fn must not
// block: it runs under the list's lock.
func (s *Store) modifyBlocks(fn func(cur []*block.Reader) []*block.Reader) (left []*block.Reader) {
	s.blocksMu.Lock()
	defer s.blocksMu.Unlock()
	blocks := fn(slices.Clone(s.blocks))
	for _, r := range s.blocks {
		if !slices.Contains(blocks, r) {
			left = append(left, r)
		}
	}
	s.blocks = blocks
	var bytes int64
	for _, r := range blocks {
		bytes += r.Meta().Bytes
	}
	s.stats.blocks.Store(int64(len(blocks)))
	s.stats.blockBytes.Store(bytes)
	return left
}

// HeadBytes is the span data held in memory, for backpressure.
func (s *Store) HeadBytes() int64 { return s.head.Bytes() }

// WALPendingBytes is what waits to be made durable in the WAL, for backpressure.
func (s *Store) WALPendingBytes() int64 {
	if s.wal == nil {
		return 0
	}
	return s.wal.PendingBytes()
}

// TraceSpans is how many spans of a trace the head holds.
func (s *Store) TraceSpans(id [16]byte) int { return s.head.SpanCount(id) }

// MarkTruncated records that a trace in the head lost spans to the spans-per-trace limit; the
// mark goes with it into its block.
func (s *Store) MarkTruncated(id [16]byte) { s.head.MarkTruncated(id) }

// ReplayStats is what replaying the WAL at open found, damage included.
func (s *Store) ReplayStats() wal.ReplayStats { return s.replay }

// Writable reports whether the WAL can take appends now. It is false from a failed disk write
// until the WAL has written again (it retries by itself).
func (s *Store) Writable() bool { return s.wal == nil || s.wal.Writable() }

// WALStats reports the log's counters.
func (s *Store) WALStats() wal.Stats {
	if s.wal == nil {
		return wal.Stats{}
	}
	return s.wal.Stats()
}

// Stats reports the store's counters. It reads atomics only, so it never waits for a flush, a
// compaction or the disk.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		BlocksWritten: c.blocksWritten.Load(), TracesFlushed: c.tracesFlushed.Load(),
		SpansFlushed: c.spansFlushed.Load(), TracesDropped: c.tracesDropped.Load(),
		BlocksDeleted: c.blocksDeleted.Load(), BudgetDeleted: c.budgetDeleted.Load(), ReplayedSpans: c.replayedSpans.Load(),
		LastFlushError: loadErr(&c.lastFlushError),
		Compactions:    c.compactions.Load(), BlocksCompacted: c.blocksCompacted.Load(),
		CompactErrors: c.compactErrors.Load(), LastCompactError: loadErr(&c.lastCompactError),
		BlocksQuarantined: c.quarantined.Load(), StagingSwept: c.swept.Load(), BlocksDegraded: c.degraded.Load(),
		Blocks: c.blocks.Load(), BlockBytes: c.blockBytes.Load(),
	}
}

func (s *Store) loop() {
	defer close(s.stopped)
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.quarantineDamaged()
			if err := s.flush(false); err != nil {
				s.log.Error("flush failed; traces stay in the head and the WAL", "err", err)
			}
		}
	}
}

// SetRetention changes how long blocks are kept (<= 0: the default); it applies from the next
// flush loop tick.
func (s *Store) SetRetention(d time.Duration) {
	if d <= 0 {
		d = 14 * 24 * time.Hour
	}
	s.retention.Store(int64(d))
}

// Flush cuts every trace in the head, complete or not, into a block now.
func (s *Store) Flush() error { return s.flush(true) }

func (s *Store) flush(all bool) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if s.wal != nil {
		s.wal.Roll()
	}
	// Before cutting, so each cut trace carries into its block whether it has parts elsewhere.
	s.head.CheckSplits(s.inBlocks)
	cut := s.head.Cut(head.CutPolicy{Idle: s.opts.TraceIdle, MaxAge: s.opts.TraceMaxAge,
		MaxBytes: s.opts.HeadMaxBytes, All: all})
	var dropped []*head.Trace
	for _, t := range cut {
		ratio := 1.0
		if s.opts.Keep != nil {
			var keep bool
			if keep, ratio = s.opts.Keep(t); !keep {
				dropped = append(dropped, t)
				continue
			}
		}
		if len(s.pending) == 0 {
			s.pendingSince = time.Now()
		}
		s.pending = append(s.pending, t)
		s.ratios = append(s.ratios, ratio)
		s.pendingBytes += int64(t.Bytes())
	}
	if len(dropped) > 0 {
		s.head.Release(dropped)
		s.stats.tracesDropped.Add(int64(len(dropped)))
	}
	err := s.dispatchBlocks(all)
	if err != nil {
		setErr(&s.stats.lastFlushError, err)
	}
	if len(dropped) > 0 || err == nil {
		if terr := s.trimWAL(); terr != nil && err == nil {
			err = terr
		}
	}
	if rerr := s.applyRetention(); rerr != nil && err == nil {
		err = rerr
	}
	if berr := s.applyDiskBudget(); berr != nil && err == nil {
		err = berr
	}
	return err
}

// inBlocks sets found[i] when some block holds part of trace ids[i]. A block that cannot be read
// counts as holding it: a trace wrongly taken as split is only judged more slowly.
func (s *Store) inBlocks(ids [][16]byte, found []bool) {
	blocks, release := s.AcquireBlocks()
	defer release()
	probes := make([]*block.Probe, len(ids))
	for i, id := range ids {
		probes[i] = block.NewProbe(id)
	}
	// Block by block, so each bloom filter is read from cache for every trace.
	for _, b := range blocks {
		for i, p := range probes {
			if found[i] || !b.MayContainProbe(p) {
				continue
			}
			if ok, err := b.HasTrace(ids[i]); ok || err != nil {
				found[i] = true
			}
		}
	}
}

func (s *Store) trimWAL() error {
	if s.wal == nil {
		return nil
	}
	// Every segment from the lowest of three bounds on is kept, read in this order:
	//  1. the active segment: an append that writes to the WAL after this reading writes here
	//     or later (segments only grow);
	//  2. the appends in flight: one that wrote before (1) and has not reached the head is
	//     registered, with a segment no later than the one it wrote to;
	//  3. the head: an append that left the registry before (2) has its spans in the head, or
	//     in a block already.
	// Trimming used to exclude appends while it walked the head (an RWMutex taken exclusively):
	// every export then waited for the walk and for the group commit in flight, the largest
	// item of the server's mutex profile with queries running.
	seq := s.wal.ActiveSegment()
	if f, ok := s.inflight.min(); ok && f < seq {
		seq = f
	}
	if h, ok := s.head.MinSegment(); ok && h < seq {
		seq = h
	}
	return s.wal.RemoveBefore(seq)
}

// inflightAppends counts the appends between their WAL write and the head, by the segment that
// was active when each began: a lower bound of the segment it writes to. The lock is held for a
// map update, never across I/O, and there are a few distinct segments in it at most.
type inflightAppends struct {
	mu     sync.Mutex
	counts map[uint64]int
}

func (f *inflightAppends) enter(seq uint64) uint64 {
	f.mu.Lock()
	if f.counts == nil {
		f.counts = make(map[uint64]int)
	}
	f.counts[seq]++
	f.mu.Unlock()
	return seq
}

func (f *inflightAppends) leave(seq uint64) {
	f.mu.Lock()
	if f.counts[seq]--; f.counts[seq] == 0 {
		delete(f.counts, seq)
	}
	f.mu.Unlock()
}

// min is the lowest segment an append in flight may have written to.
func (f *inflightAppends) min() (seq uint64, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.counts {
		if !ok || s < seq {
			seq, ok = s, true
		}
	}
	return seq, ok
}

func (s *Store) applyRetention() error {
	cutoff := s.now().Add(-time.Duration(s.retention.Load()))
	expired := s.modifyBlocks(func(cur []*block.Reader) []*block.Reader {
		// A block goes when its newest span is past retention, but never sooner than retention
		// after it was written: a sender replaying old data must still be able to read it back.
		return slices.DeleteFunc(cur, func(r *block.Reader) bool {
			m := r.Meta()
			return m.MaxEnd < cutoff.UnixNano() && m.Created.Before(cutoff)
		})
	})
	if len(expired) == 0 {
		return nil
	}
	var errs []error
	for _, r := range expired {
		id := r.Meta().ID
		// A query holding the block keeps reading it through its open files, which close when
		// it releases the block.
		if err := block.Delete(context.Background(), s.objs, id); err != nil {
			errs = append(errs, fmt.Errorf("store: retention: delete block %s: %w", id, err))
		}
		r.Release()
		s.stats.blocksDeleted.Add(1)
		s.log.Info("retention deleted block", "id", id, "newest_span", time.Unix(0, r.Meta().MaxEnd))
	}
	return errors.Join(errs...)
}

// Close flushes everything in the head into a block, trims the WAL and closes the store. Callers
// stop appending first.
func (s *Store) Close() error {
	s.flushMu.Lock()
	if s.closed {
		s.flushMu.Unlock()
		return nil
	}
	s.closed = true
	s.flushMu.Unlock()
	close(s.stop)
	<-s.stopped
	// A merge in progress stops at its next batch; its scratch files go with it.
	s.compactCancel()
	<-s.compactStopped
	ferr := s.flush(true)
	if s.wal == nil {
		s.closeBlocks()
		return ferr
	}
	werr := s.wal.Close()
	if _, ok := s.head.MinSegment(); !ok && ferr == nil && werr == nil {
		// Everything is in blocks: nothing for the next start to replay.
		werr = s.wal.RemoveBefore(s.wal.ActiveSegment() + 1)
	}
	s.closeBlocks()
	return errors.Join(ferr, werr)
}

func (s *Store) closeBlocks() {
	for _, r := range s.modifyBlocks(func([]*block.Reader) []*block.Reader { return nil }) {
		r.Release()
	}
}
