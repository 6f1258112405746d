package block

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Iter reads a block's traces in row order, one batch at a time, in the form Write takes (see
// ReadAll): in trace ID order within each run (see Run), so a merge iterates each run apart.
// It is what lets compaction merge many blocks holding only a batch of each.
type Iter struct {
	r        *Reader
	groups   []*otlpwire.Group
	split    map[string]bool
	row, end int64
	n        int64 // traces per batch
	batch    []Trace
	err      error
}

// Iter returns an iterator over the block's traces.
func (r *Reader) Iter() *Iter { return r.iterRows(0, r.traces.rows, readAllTraces) }

// iterRows returns an iterator over traces.parquet rows [from, to), batch traces at a time.
func (r *Reader) iterRows(from, to, batch int64) *Iter {
	it := &Iter{r: r, groups: r.wireGroups(), split: map[string]bool{}, row: from, end: to, n: batch}
	for _, st := range r.meta.Split {
		it.split[st.ID] = true
	}
	return it
}

// Next returns the next trace, or false at the end or on an error (see Err). The caller owns
// the trace.
func (it *Iter) Next(ctx context.Context) (Trace, bool) {
	if it.err != nil {
		return Trace{}, false
	}
	if len(it.batch) == 0 {
		if it.row >= it.end {
			return Trace{}, false
		}
		if err := ctx.Err(); err != nil {
			it.err = err
			return Trace{}, false
		}
		n := min(it.n, it.end-it.row)
		batch, err := it.r.readBatch(it.row, n, it.groups)
		if err != nil {
			it.err = it.r.wrap(fmt.Errorf("traces [%d,%d): %w", it.row, it.row+n, err))
			return Trace{}, false
		}
		it.row += n
		it.batch = batch
		if len(batch) == 0 {
			return Trace{}, false
		}
	}
	t := it.batch[0]
	it.batch[0] = Trace{}
	it.batch = it.batch[1:]
	t.Split = len(it.split) > 0 && it.split[hex.EncodeToString(t.ID[:])]
	return t, true
}

// Err is the error that ended the iteration, if any.
func (it *Iter) Err() error { return it.err }

// StreamWriter writes a block one trace at a time, in trace ID order, with each Parquet file
// going to a scratch file on local disk as it is encoded: memory stays at a row group's pages
// per file whatever the block's size, which is what lets compaction merge large blocks.
type StreamWriter struct {
	w       *writer
	opts    WriteOptions
	dir     string
	files   []*scratchFile
	lastID  [16]byte
	started bool
}

type scratchFile struct {
	fw   *fileWriter
	f    *os.File
	buf  *bufio.Writer
	sum  hash.Hash32
	size int64
}

func (s *scratchFile) Write(p []byte) (int, error) {
	n, err := s.buf.Write(p)
	s.sum.Write(p[:n])
	s.size += int64(n)
	return n, err
}

// streamRowGroupRows bounds a stream-written file's row group, and so the pages parquet-go
// holds before it writes them out.
const streamRowGroupRows = 64 << 10

// NewStreamWriter starts a block whose files are staged in a new folder under scratch (on the
// same file system as a local store, so that publishing renames rather than copies). traces
// is an estimate of how many traces the block will hold, for the bloom filter.
func NewStreamWriter(scratch string, traces int, opts WriteOptions) (_ *StreamWriter, err error) {
	if opts.ID == "" {
		opts.ID = NewID(time.Now())
	}
	if opts.PageSize <= 0 {
		opts.PageSize = defaultPageSize
	}
	if opts.RowGroupRows <= 0 {
		opts.RowGroupRows = streamRowGroupRows
	}
	if opts.BloomFPRate <= 0 || opts.BloomFPRate >= 1 {
		opts.BloomFPRate = 0.01
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return nil, fmt.Errorf("block %s: scratch: %w", opts.ID, err)
	}
	dir, err := os.MkdirTemp(scratch, ".tmp-"+opts.ID+"-")
	if err != nil {
		return nil, fmt.Errorf("block %s: scratch: %w", opts.ID, err)
	}
	sw := &StreamWriter{w: getWriter(opts.PageSize), opts: opts, dir: dir}
	defer func() {
		if err != nil {
			sw.Abort()
		}
	}()
	for _, fw := range sw.w.fileWriters() {
		f, err := os.Create(filepath.Join(dir, fw.name))
		if err != nil {
			return nil, fmt.Errorf("block %s: scratch: %w", opts.ID, err)
		}
		sf := &scratchFile{fw: fw, f: f, buf: bufio.NewWriterSize(f, 256<<10), sum: crc32.New(castagnoli)}
		fw.resetTo(sf, opts.RowGroupRows)
		sw.files = append(sw.files, sf)
	}
	sw.w.begin(opts, traces)
	return sw, nil
}

// Add writes one trace. Traces must come in ascending ID order within a run, each ID once
// (merge entries of one ID first).
func (sw *StreamWriter) Add(t Trace) error {
	if sw.started && string(t.ID[:]) <= string(sw.lastID[:]) {
		return fmt.Errorf("block %s: trace %x added after %x", sw.opts.ID, t.ID, sw.lastID)
	}
	sw.started, sw.lastID = true, t.ID
	one := []Trace{t}
	return sw.w.add(one, []int32{0})
}

// EndRun closes the run of the traces added since the last EndRun (see Run); the next Add
// starts a new one, whose IDs start over. Runs should come in order of their traces' start
// times, which is what lets a search for the newest traces read only the newest runs.
func (sw *StreamWriter) EndRun() error {
	if err := sw.w.endRun(); err != nil {
		return fmt.Errorf("block %s: write: %w", sw.opts.ID, err)
	}
	sw.started = false
	return nil
}

// Finish completes the files, makes them durable and publishes the block to store, as Write
// does. The scratch folder is gone afterwards, whatever the outcome.
func (sw *StreamWriter) Finish(ctx context.Context, store objstore.Store) (Meta, error) {
	defer sw.Abort()
	meta, err := sw.w.end()
	if err != nil {
		return Meta{}, fmt.Errorf("block %s: write: %w", sw.opts.ID, err)
	}
	meta.Files = map[string]int64{}
	meta.Checksums = map[string]uint32{}
	var objs []objstore.Object
	for _, sf := range sw.files {
		if err := sf.buf.Flush(); err != nil {
			return Meta{}, fmt.Errorf("block %s: %s: %w", sw.opts.ID, sf.fw.name, err)
		}
		if err := sf.f.Sync(); err != nil {
			return Meta{}, fmt.Errorf("block %s: %s: sync: %w", sw.opts.ID, sf.fw.name, err)
		}
		meta.Files[sf.fw.name] = sf.size
		meta.Checksums[sf.fw.name] = sf.sum.Sum32()
		meta.Bytes += sf.size
		objs = append(objs, objstore.Object{Name: sf.fw.name, Path: sf.f.Name()})
	}
	bloomBytes := sw.w.bloomBuf.Bytes()
	meta.Files[fileBloom] = int64(len(bloomBytes))
	meta.Checksums[fileBloom] = crc32.Checksum(bloomBytes, castagnoli)
	meta.Bytes += int64(len(bloomBytes))
	objs = append(objs, objstore.Object{Name: fileBloom, Data: bloomBytes})
	indexBytes := sw.w.indexBuf.Bytes()
	meta.Files[fileIndex] = int64(len(indexBytes))
	meta.Checksums[fileIndex] = crc32.Checksum(indexBytes, castagnoli)
	meta.Bytes += int64(len(indexBytes))
	objs = append(objs, objstore.Object{Name: fileIndex, Data: indexBytes})
	js, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return Meta{}, fmt.Errorf("block %s: encode meta: %w", sw.opts.ID, err)
	}
	if err := publish(ctx, store, sw.opts.ID, objs, js); err != nil {
		return Meta{}, err
	}
	return meta, nil
}

// Abort drops the block being written. Safe to call more than once.
func (sw *StreamWriter) Abort() {
	if sw.w == nil {
		return
	}
	sw.w.stopPipeline()
	for _, sf := range sw.files {
		sf.f.Close()
		sf.fw.resetTo(io.Discard, 1)
	}
	os.RemoveAll(sw.dir)
	sw.w.release()
	sw.w = nil
}
