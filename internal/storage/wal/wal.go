// Package wal is Ariadne's write-ahead log: an append-only sequence of segment files holding the
// requests that were acknowledged to senders.
//
// Appends from concurrent receivers are committed in groups: one writer goroutine takes every
// record queued since its last fsync, writes them with one write call and one fsync, and only then
// releases the waiting appenders. Under load that turns thousands of fsyncs per second into a few
// dozen without weakening the guarantee that an acknowledged record is on disk.
//
// Format (version 2, see format.go): a segment starts with an 8-byte header (magic "AWAL",
// version); each record is a 20-byte header (record magic, payload length, the record's index in
// its segment, CRC-32C of length, index and payload) followed by the payload. The magic makes
// records findable again after damage and the index says exactly how many were lost in between.
// Segments written by version 1 (no segment header; length and CRC only) still replay.
//
// Faults: the WAL never appends behind a failed write. When a write or fsync fails, the records
// of that group commit are refused to their senders, the segment is cut back to its last good
// record and closed for good, and the next commit starts a new segment. If the cut itself fails,
// the segment's state is unknown and Options.Fatal is called (by default it stops the process, so
// that a restart replays what is durable). While no segment can be written, appends fail with
// an error matching ErrUnavailable and a prober retries every RetryInterval, so the WAL is
// writable again on its own once the disk has room.
package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("wal: closed")

// ErrUnavailable is matched (errors.Is) by every Append error caused by the disk: a failed
// write, fsync or segment creation. Nothing of the request is acknowledged; the sender should
// retry later.
var ErrUnavailable = errors.New("wal: storage unavailable")

// WriteError is an Append failure caused by the disk.
type WriteError struct {
	Op      string // "write", "fsync", "open segment"
	Segment uint64
	Err     error
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("wal: %s segment %d: %v", e.Op, e.Segment, e.Err)
}
func (e *WriteError) Unwrap() error        { return e.Err }
func (e *WriteError) Is(target error) bool { return target == ErrUnavailable }

// Options configure a WAL.
type Options struct {
	// SegmentBytes is the size after which a new segment file is started.
	SegmentBytes int64
	// NoSync skips fsync. Only for benchmarks that measure everything but the disk.
	NoSync bool
	// ObserveFsync, when set, is told how long each group commit's fsync took.
	ObserveFsync func(time.Duration)
	Logger       *slog.Logger
	// FS is the filesystem segments are written through (default vfs.OS); tests inject faults.
	FS vfs.FS
	// RetryInterval is how often, while no segment can be written, the WAL tries to start one
	// (default 1s).
	RetryInterval time.Duration
	// Fatal is called when a segment that failed a write cannot be cut back to its last good
	// record: the only safe thing left is to stop and replay. Default: log and exit(1).
	Fatal func(error)
}

// WAL is safe for concurrent use.
type WAL struct {
	dir  string
	opts Options
	log  *slog.Logger
	fs   vfs.FS

	mu      sync.Mutex
	cond    *sync.Cond // signals the writer that pending is not empty
	pending []*request
	spare   []*request
	closed  bool

	pendingBytes atomic.Int64 // queued and not yet durable, for backpressure

	// Owned by the writer goroutine.
	seg        vfs.File // nil when no segment is open for writing
	nextSeq    uint64
	segSize    int64
	segRecords uint64
	buf        []byte

	segSeq atomic.Uint64 // the segment written to now (or last), read by RemoveBefore
	roll   atomic.Bool   // start a new segment before the next write

	writable atomic.Bool
	lastErr  atomic.Pointer[string]

	done      chan struct{}
	stopProbe chan struct{}
	probeDone chan struct{}

	statsMu   sync.Mutex
	stats     Stats
	lastFsync time.Duration
}

// Stats are counters for self-monitoring.
type Stats struct {
	Records     uint64
	Bytes       uint64
	Fsyncs      uint64
	FsyncTotal  time.Duration
	Segments    int
	ActiveSeq   uint64
	FirstSeq    uint64
	LastFsync   time.Duration
	BytesOnDisk int64
	// WriteErrors counts group commits that failed on the disk (write, fsync or new segment).
	WriteErrors uint64
	// Sealed counts segments closed early because a write or fsync in them failed.
	Sealed uint64
	// Writable is false from a failed write until a segment has been written again.
	Writable bool
	// LastError is the most recent disk error, kept after recovery for diagnosis.
	LastError string
}

type request struct {
	payload []byte
	probe   bool // no record: only make sure a segment is open
	seq     uint64
	err     error
	done    chan struct{}
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

// Open opens (creating if needed) the WAL in dir. Records already in it are not read: call Replay
// first when recovering. New appends always go to a fresh segment, so a torn tail of an old one
// never sits in front of new data.
func Open(dir string, opts Options) (*WAL, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 128 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.FS == nil {
		opts.FS = vfs.OS
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	if opts.Fatal == nil {
		log := opts.Logger
		opts.Fatal = func(err error) {
			log.Error("write-ahead log cannot continue safely; stopping so that a restart replays what is durable", "err", err)
			os.Exit(1)
		}
	}
	if err := opts.FS.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	seqs, err := segments(opts.FS, dir)
	if err != nil {
		return nil, err
	}
	w := &WAL{dir: dir, opts: opts, log: opts.Logger, fs: opts.FS, done: make(chan struct{}),
		stopProbe: make(chan struct{}), probeDone: make(chan struct{}), nextSeq: 1}
	w.cond = sync.NewCond(&w.mu)
	if len(seqs) > 0 {
		w.nextSeq = seqs[len(seqs)-1] + 1
	}
	if err := w.openSegment(); err != nil {
		// A full or failing disk must not stop the server from starting: it serves what it has,
		// refuses appends as retryable, and the prober starts the segment once it can.
		w.failed(err)
	} else {
		w.writable.Store(true)
	}
	go w.writer()
	go w.prober()
	return w, nil
}

func segName(seq uint64) string { return fmt.Sprintf("%016d%s", seq, segSuffix) }

func segments(fsys vfs.FS, dir string) ([]uint64, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	var seqs []uint64
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// openSegment closes the current segment and starts the next one: created, header written and
// fsync'd, directory entry fsync'd. On failure no segment is open and the half-made file is
// removed; its sequence number is not reused either way.
func (w *WAL) openSegment() error {
	if w.seg != nil {
		if err := w.seg.Close(); err != nil {
			// Everything in it was fsync'd before; a close error cannot un-write it.
			w.log.Warn("wal: closing segment", "segment", w.segSeq.Load(), "err", err)
		}
		w.seg = nil
	}
	seq := w.nextSeq
	w.nextSeq++
	path := filepath.Join(w.dir, segName(seq))
	f, err := w.fs.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return &WriteError{Op: "open", Segment: seq, Err: err}
	}
	fail := func(op string, err error) error {
		f.Close()
		if rerr := w.fs.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			// Left behind, it holds at most a segment header: replay finds no record in it.
			w.log.Warn("wal: removing a segment that could not be started", "segment", path, "err", rerr)
		}
		return &WriteError{Op: op, Segment: seq, Err: err}
	}
	if _, err := f.Write(segmentHeader()); err != nil {
		return fail("write header of", err)
	}
	if !w.opts.NoSync {
		if err := f.Datasync(); err != nil {
			return fail("fsync header of", err)
		}
		// The new file's directory entry must be durable too, or a crash can lose the whole segment.
		if err := w.fs.SyncDir(w.dir); err != nil {
			return fail("sync directory for", err)
		}
	}
	w.seg, w.segSize, w.segRecords = f, segHeaderSize, 0
	w.segSeq.Store(seq)
	return nil
}

// Append writes payload as one record and returns, once it is durable, the sequence number of the
// segment holding it. The caller may reuse payload after Append returns. An error matching
// ErrUnavailable means the record is not durable and was not written anywhere replay would
// find it... or, if the disk failed mid-write, possibly was: a retry may then store it twice,
// which readers remove by span ID.
func (w *WAL) Append(payload []byte) (uint64, error) {
	if len(payload) > MaxRecord {
		return 0, fmt.Errorf("wal: record of %d bytes exceeds %d", len(payload), MaxRecord)
	}
	r := requestPool.Get().(*request)
	r.payload, r.err, r.seq, r.probe = payload, nil, 0, false
	seq, err := w.submit(r)
	requestPool.Put(r)
	return seq, err
}

func (w *WAL) submit(r *request) (uint64, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return 0, ErrClosed
	}
	w.pending = append(w.pending, r)
	w.pendingBytes.Add(int64(len(r.payload)))
	w.cond.Signal()
	w.mu.Unlock()
	<-r.done
	w.pendingBytes.Add(-int64(len(r.payload)))
	seq, err := r.seq, r.err
	r.payload = nil
	return seq, err
}

func (w *WAL) writer() {
	defer close(w.done)
	for {
		w.mu.Lock()
		for len(w.pending) == 0 && !w.closed {
			w.cond.Wait()
		}
		if len(w.pending) == 0 && w.closed {
			w.mu.Unlock()
			return
		}
		batch := w.pending
		w.pending = w.spare[:0]
		w.mu.Unlock()

		err := w.commit(batch)
		if err != nil {
			w.failed(err)
		}
		for _, r := range batch {
			r.err, r.seq = err, w.segSeq.Load()
			r.done <- struct{}{}
		}
		clear(batch)
		w.mu.Lock()
		w.spare = batch[:0]
		w.mu.Unlock()
	}
}

func (w *WAL) failed(err error) {
	msg := err.Error()
	w.lastErr.Store(&msg)
	if w.writable.Swap(false) {
		w.log.Error("write-ahead log cannot write; refusing appends as retryable until it can", "err", err)
	}
	w.statsMu.Lock()
	w.stats.WriteErrors++
	w.statsMu.Unlock()
}

func (w *WAL) commit(batch []*request) error {
	if w.seg == nil || w.segSize >= w.opts.SegmentBytes || (w.segRecords > 0 && w.roll.Load()) {
		w.roll.Store(false)
		if err := w.openSegment(); err != nil {
			return err
		}
	}
	w.buf = w.buf[:0]
	records := 0
	for _, r := range batch {
		if r.probe {
			continue
		}
		w.buf = appendRecord(w.buf, w.segRecords+uint64(records), r.payload)
		records++
	}
	if records > 0 {
		good := w.segSize
		if _, err := w.seg.Write(w.buf); err != nil {
			w.seal(good, err)
			return &WriteError{Op: "write", Segment: w.segSeq.Load(), Err: err}
		}
		w.segSize += int64(len(w.buf))
		var took time.Duration
		if !w.opts.NoSync {
			start := time.Now()
			if err := w.seg.Datasync(); err != nil {
				// After a failed fsync the kernel may have dropped the dirty pages and will not
				// report it again (fsyncgate): what this segment holds past good is unknowable.
				w.seal(good, err)
				return &WriteError{Op: "fsync", Segment: w.segSeq.Load(), Err: err}
			}
			took = time.Since(start)
			if w.opts.ObserveFsync != nil {
				w.opts.ObserveFsync(took)
			}
		}
		w.segRecords += uint64(records)
		w.statsMu.Lock()
		w.stats.Records += uint64(records)
		w.stats.Bytes += uint64(len(w.buf))
		w.stats.Fsyncs++
		w.stats.FsyncTotal += took
		w.lastFsync = took
		w.statsMu.Unlock()
	}
	// A burst can grow buf to hundreds of megabytes; do not keep that forever.
	if cap(w.buf) > 64<<20 {
		w.buf = nil
	}
	if !w.writable.Swap(true) {
		w.log.Info("write-ahead log is writable again", "segment", w.segSeq.Load())
	}
	return nil
}

// seal cuts the current segment back to good, its last good record, and closes it for good:
// nothing is ever appended behind a failed write.
//
// Whether the cut reaches the disk does not matter for safety: if it does not, the segment ends
// in the failed group's bytes, which replay cuts off as a torn tail or replays as records that
// were never acknowledged (duplicates of the senders' retries, removed at read time); nothing
// acknowledged follows them. So a failed fsync of the cut is only logged. A failed truncate
// itself is different: the filesystem refused to change a file it just wrote, the state of that
// file is unknown, and Fatal is called.
func (w *WAL) seal(good int64, cause error) {
	seq := w.segSeq.Load()
	err := w.seg.Truncate(good)
	if err == nil && !w.opts.NoSync {
		if serr := w.seg.Datasync(); serr != nil {
			w.log.Warn("wal: the cut of a failed segment may not be durable; replay will cut it again", "segment", seq, "err", serr)
		}
	}
	w.seg.Close()
	w.seg = nil
	w.statsMu.Lock()
	w.stats.Sealed++
	w.statsMu.Unlock()
	if err != nil {
		w.opts.Fatal(fmt.Errorf("wal: segment %d failed (%v) and cannot be cut back to its last good record at %d: %w", seq, cause, good, err))
		return
	}
	w.log.Warn("wal: segment sealed at its last good record after a failed write; the next commit starts a new one",
		"segment", seq, "size", good, "err", cause)
}

// prober, while the WAL is not writable, asks the writer every RetryInterval to start a segment,
// so that it recovers once the disk has room even if no sender is trying (a load balancer
// reading /ready will have stopped sending).
func (w *WAL) prober() {
	defer close(w.probeDone)
	t := time.NewTicker(w.opts.RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stopProbe:
			return
		case <-t.C:
			if !w.writable.Load() {
				w.Probe()
			}
		}
	}
}

// Probe makes sure a segment is open for writing, starting one if needed, and reports whether
// that worked. It writes no record.
func (w *WAL) Probe() error {
	_, err := w.submit(&request{probe: true, done: make(chan struct{}, 1)})
	return err
}

// Writable reports whether the last attempt to write succeeded.
func (w *WAL) Writable() bool { return w.writable.Load() }

// Stats returns a snapshot of the counters.
func (w *WAL) Stats() Stats {
	w.statsMu.Lock()
	s := w.stats
	s.LastFsync = w.lastFsync
	w.statsMu.Unlock()
	s.Writable = w.writable.Load()
	if p := w.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	seqs, _ := segments(w.fs, w.dir)
	s.Segments = len(seqs)
	if len(seqs) > 0 {
		s.FirstSeq = seqs[0]
		s.ActiveSeq = seqs[len(seqs)-1]
	}
	for _, seq := range seqs {
		if fi, err := w.fs.Stat(filepath.Join(w.dir, segName(seq))); err == nil {
			s.BytesOnDisk += fi.Size()
		}
	}
	return s
}

// PendingBytes is the size of the records waiting to be made durable.
func (w *WAL) PendingBytes() int64 { return w.pendingBytes.Load() }

// ActiveSegment is the sequence number that appends are going to now.
func (w *WAL) ActiveSegment() uint64 { return w.segSeq.Load() }

// Roll makes the next append start a new segment. The store rolls when it cuts traces into a
// block, so that once the block is durable the segments before it can go, instead of waiting
// for the active segment to fill.
func (w *WAL) Roll() { w.roll.Store(true) }

// RemoveBefore deletes every segment whose sequence number is below seq. The active segment is
// removed only once the WAL is closed.
func (w *WAL) RemoveBefore(seq uint64) error {
	seqs, err := segments(w.fs, w.dir)
	if err != nil {
		return err
	}
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	active := w.ActiveSegment()
	for _, s := range seqs {
		if s >= seq || (s >= active && !closed) {
			break
		}
		if err := w.fs.Remove(filepath.Join(w.dir, segName(s))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal: remove segment %d: %w", s, err)
		}
	}
	return nil
}

// Close waits for pending appends to be committed and closes the active segment.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	close(w.stopProbe)
	<-w.probeDone
	<-w.done
	if w.seg == nil {
		return nil
	}
	if err := w.seg.Close(); err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}
