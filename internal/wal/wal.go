// Package wal is Ariadne's write-ahead log: an append-only sequence of segment files holding the
// requests that were acknowledged to senders.
//
// Appends from concurrent receivers are committed in groups: one writer goroutine takes every
// record queued since its last fsync, writes them with one write call and one fsync, and only then
// releases the waiting appenders. Under load that turns thousands of fsyncs per second into a few
// dozen without weakening the guarantee that an acknowledged record is on disk.
//
// Record framing: a 4-byte little-endian payload length, a 4-byte CRC-32C of the payload, then the
// payload. A crash can leave the last record of the last segment torn; replay detects it by length
// or checksum, logs it and truncates the segment there.
package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	headerSize = 8
	// MaxRecord bounds one record so a corrupt length cannot make replay allocate gigabytes.
	MaxRecord = 256 << 20
	segSuffix = ".wal"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("wal: closed")

// Options configure a WAL.
type Options struct {
	// SegmentBytes is the size after which a new segment file is started.
	SegmentBytes int64
	// NoSync skips fsync. Only for benchmarks that measure everything but the disk.
	NoSync bool
	// ObserveFsync, when set, is told how long each group commit's fsync took.
	ObserveFsync func(time.Duration)
	Logger       *slog.Logger
}

// WAL is safe for concurrent use.
type WAL struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond // signals the writer that pending is not empty
	pending []*request
	spare   []*request
	closed  bool

	pendingBytes atomic.Int64 // queued and not yet durable, for backpressure

	// Owned by the writer goroutine.
	seg     *os.File
	segSeq  atomic.Uint64 // written by the writer, read by RemoveBefore
	segSize int64
	buf     []byte
	roll    atomic.Bool // start a new segment before the next write

	done chan struct{}

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
}

type request struct {
	payload []byte
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
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	seqs, err := segments(dir)
	if err != nil {
		return nil, err
	}
	w := &WAL{dir: dir, opts: opts, log: opts.Logger, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	next := uint64(1)
	if len(seqs) > 0 {
		next = seqs[len(seqs)-1] + 1
	}
	if err := w.openSegment(next); err != nil {
		return nil, err
	}
	go w.writer()
	return w, nil
}

func segName(seq uint64) string { return fmt.Sprintf("%016d%s", seq, segSuffix) }

func segments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	var seqs []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
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

func (w *WAL) openSegment(seq uint64) error {
	f, err := os.OpenFile(filepath.Join(w.dir, segName(seq)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("wal: open segment %d: %w", seq, err)
	}
	if !w.opts.NoSync {
		// The new file's directory entry must be durable too, or a crash can lose the whole segment.
		if err := syncDir(w.dir); err != nil {
			f.Close()
			return err
		}
	}
	if w.seg != nil {
		if err := w.seg.Close(); err != nil {
			f.Close()
			return fmt.Errorf("wal: close segment %d: %w", w.segSeq.Load(), err)
		}
	}
	w.seg, w.segSize = f, 0
	w.segSeq.Store(seq)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wal: sync dir: %w", err)
	}
	return nil
}

// Append writes payload as one record and returns, once it is durable, the sequence number of the
// segment holding it. The caller may reuse payload after Append returns.
func (w *WAL) Append(payload []byte) (uint64, error) {
	if len(payload) > MaxRecord {
		return 0, fmt.Errorf("wal: record of %d bytes exceeds %d", len(payload), MaxRecord)
	}
	r := requestPool.Get().(*request)
	r.payload, r.err, r.seq = payload, nil, 0
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		requestPool.Put(r)
		return 0, ErrClosed
	}
	w.pending = append(w.pending, r)
	w.pendingBytes.Add(int64(len(payload)))
	w.cond.Signal()
	w.mu.Unlock()
	<-r.done
	w.pendingBytes.Add(-int64(len(payload)))
	seq, err := r.seq, r.err
	r.payload = nil
	requestPool.Put(r)
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

func (w *WAL) commit(batch []*request) error {
	if w.segSize >= w.opts.SegmentBytes || (w.segSize > 0 && w.roll.Swap(false)) {
		if err := w.openSegment(w.segSeq.Load() + 1); err != nil {
			return err
		}
	}
	w.buf = w.buf[:0]
	for _, r := range batch {
		var hdr [headerSize]byte
		binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(r.payload)))
		binary.LittleEndian.PutUint32(hdr[4:8], crc32.Checksum(r.payload, castagnoli))
		w.buf = append(w.buf, hdr[:]...)
		w.buf = append(w.buf, r.payload...)
	}
	if _, err := w.seg.Write(w.buf); err != nil {
		return fmt.Errorf("wal: write segment %d: %w", w.segSeq.Load(), err)
	}
	w.segSize += int64(len(w.buf))
	var took time.Duration
	if !w.opts.NoSync {
		start := time.Now()
		if err := fdatasync(w.seg); err != nil {
			return fmt.Errorf("wal: fsync segment %d: %w", w.segSeq.Load(), err)
		}
		took = time.Since(start)
		if w.opts.ObserveFsync != nil {
			w.opts.ObserveFsync(took)
		}
	}
	w.statsMu.Lock()
	w.stats.Records += uint64(len(batch))
	w.stats.Bytes += uint64(len(w.buf))
	w.stats.Fsyncs++
	w.stats.FsyncTotal += took
	w.lastFsync = took
	w.statsMu.Unlock()
	// A burst can grow buf to hundreds of megabytes; do not keep that forever.
	if cap(w.buf) > 64<<20 {
		w.buf = nil
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (w *WAL) Stats() Stats {
	w.statsMu.Lock()
	s := w.stats
	s.LastFsync = w.lastFsync
	w.statsMu.Unlock()
	seqs, _ := segments(w.dir)
	s.Segments = len(seqs)
	if len(seqs) > 0 {
		s.FirstSeq = seqs[0]
		s.ActiveSeq = seqs[len(seqs)-1]
	}
	for _, seq := range seqs {
		if fi, err := os.Stat(filepath.Join(w.dir, segName(seq))); err == nil {
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
	seqs, err := segments(w.dir)
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
		if err := os.Remove(filepath.Join(w.dir, segName(s))); err != nil && !errors.Is(err, os.ErrNotExist) {
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
	<-w.done
	if err := w.seg.Close(); err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}

// Replay reads every record of every segment in dir, oldest first, and calls fn with the
// segment's sequence number and the payload (valid only during the call). A record that is torn
// or fails its checksum ends its segment: it is logged and the file is truncated there, because
// anything after it was never acknowledged.
func Replay(dir string, log *slog.Logger, fn func(seq uint64, payload []byte) error) error {
	if log == nil {
		log = slog.Default()
	}
	seqs, err := segments(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var buf []byte
	for _, seq := range seqs {
		path := filepath.Join(dir, segName(seq))
		good, err := replaySegment(path, seq, &buf, fn)
		if err == nil {
			continue
		}
		var torn *tornError
		if !errors.As(err, &torn) {
			return err
		}
		log.Warn("wal: torn or corrupt record, truncating segment", "segment", path, "offset", good, "reason", torn.reason)
		if err := os.Truncate(path, good); err != nil {
			return fmt.Errorf("wal: truncate torn segment %s: %w", path, err)
		}
	}
	return nil
}

type tornError struct{ reason string }

func (e *tornError) Error() string { return "wal: torn record: " + e.reason }

func replaySegment(path string, seq uint64, buf *[]byte, fn func(uint64, []byte) error) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("wal: open %s: %w", path, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	var hdr [headerSize]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return off, nil
			}
			return off, &tornError{"short header"}
		}
		n := binary.LittleEndian.Uint32(hdr[0:4])
		sum := binary.LittleEndian.Uint32(hdr[4:8])
		if n > MaxRecord {
			return off, &tornError{fmt.Sprintf("length %d out of range", n)}
		}
		if cap(*buf) < int(n) {
			*buf = make([]byte, n)
		}
		p := (*buf)[:n]
		if _, err := io.ReadFull(r, p); err != nil {
			return off, &tornError{"short payload"}
		}
		if crc32.Checksum(p, castagnoli) != sum {
			return off, &tornError{"checksum mismatch"}
		}
		if err := fn(seq, p); err != nil {
			return off, fmt.Errorf("wal: replay %s at %d: %w", path, off, err)
		}
		off += headerSize + int64(n)
	}
}
