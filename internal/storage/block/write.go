package block

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/maphash"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// WriteOptions tunes Write. The zero value uses the defaults.
type WriteOptions struct {
	// ID of the block; NewID(time.Now()) when empty.
	ID string
	// PageSize is the uncompressed size at which a column page is cut. Smaller pages make
	// FindTrace read less; larger ones compress slightly better. Default 32 KiB.
	PageSize int
	// RowGroupRows caps the rows of a row group in every file. Default 1<<20.
	RowGroupRows int64
	// BloomFPRate is the bloom filter's false positive rate. Default 0.01.
	BloomFPRate float64
	// Now is the creation time recorded in meta.json; time.Now when zero.
	Now time.Time
	// Level is recorded in meta.json for compaction: 0 for a block from the head, one more
	// than its inputs' highest for a merged block.
	Level int
	// RunTraces is the least traces MergeRuns puts in a run of this block when it can choose;
	// default 8192 (below it a run's pages are mostly overhead).
	RunTraces int64
}

const (
	defaultPageSize     = 32 << 10
	defaultRowGroupRows = 1 << 20
	// dictionaryMaxBytes caps a column chunk's dictionary; past it the column falls back to
	// plain, so a high-cardinality column never makes FindTrace read a huge dictionary page.
	dictionaryMaxBytes = 256 << 10
	batchRows          = 512
	// noID marks a span ID that is not 8 bytes. All-zero IDs are invalid in OTLP, so using
	// zero as the marker never hides a real parent link.
	noID = 0
)

// Write stores traces as a new block and returns its meta. Traces are sorted by ID; entries
// with the same ID are merged. The block appears whole or not at all: published as one folder
// where the store can (objstore.Publisher), else with meta.json written after every other file
// is durable. On error no block is left.
func Write(ctx context.Context, store objstore.Store, traces []Trace, opts WriteOptions) (Meta, error) {
	if opts.ID == "" {
		opts.ID = NewID(time.Now())
	}
	if opts.PageSize <= 0 {
		opts.PageSize = defaultPageSize
	}
	if opts.RowGroupRows <= 0 {
		opts.RowGroupRows = defaultRowGroupRows
	}
	if opts.BloomFPRate <= 0 || opts.BloomFPRate >= 1 {
		opts.BloomFPRate = 0.01
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	w := getWriter(opts.PageSize)
	defer w.release()
	meta, err := w.write(ctx, traces, opts)
	if err != nil {
		return Meta{}, fmt.Errorf("block %s: write: %w", opts.ID, err)
	}
	files := w.files()
	meta.Files = map[string]int64{}
	meta.Checksums = map[string]uint32{}
	for _, f := range files {
		meta.Files[f.name] = int64(f.buf.Len())
		meta.Checksums[f.name] = crc32.Checksum(f.buf.Bytes(), castagnoli)
		meta.Bytes += int64(f.buf.Len())
	}
	js, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return Meta{}, fmt.Errorf("block %s: encode meta: %w", opts.ID, err)
	}
	objs := make([]objstore.Object, 0, len(files))
	for _, f := range files {
		objs = append(objs, objstore.Object{Name: f.name, Data: f.buf.Bytes()})
	}
	if err := publish(ctx, store, opts.ID, objs, js); err != nil {
		return Meta{}, err
	}
	return meta, nil
}

// publish stores a block's files and its meta.json so that it appears whole or not at all: as
// one folder where the store can (objstore.Publisher), else with meta.json written after every
// other file is durable. On error no block is left.
func publish(ctx context.Context, store objstore.Store, id string, objs []objstore.Object, meta []byte) error {
	dir := blockDir(id)
	if p, ok := store.(objstore.Publisher); ok {
		all := append(objs[:len(objs):len(objs)], objstore.Object{Name: fileMeta, Data: meta})
		if err := p.Publish(ctx, dir, all); err != nil {
			return fmt.Errorf("block %s: %w", id, err)
		}
		return nil
	}
	fail := func(err error) error {
		// Without meta.json the files are invisible anyway; removing them is housekeeping,
		// so it runs even if ctx is what failed. meta.json goes first: a Put that failed after
		// its rename (a failed directory sync) may have left it in place.
		_ = Delete(context.WithoutCancel(ctx), store, id)
		return fmt.Errorf("block %s: %w", id, err)
	}
	// Without atomic publish (object stores), meta.json is the commit: it is written last,
	// after every other file is durable, and a folder without it is not a block.
	errs := make([]error, len(objs))
	var wg sync.WaitGroup
	for i, o := range objs {
		wg.Go(func() {
			r, err := o.Open()
			if err != nil {
				errs[i] = err
				return
			}
			defer r.Close()
			errs[i] = store.Put(ctx, dir+o.Name, r)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	if err := store.Put(ctx, dir+fileMeta, bytes.NewReader(meta)); err != nil {
		return fail(err)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// saturate converts unix nanoseconds to int64, saturating at the year 2262.
func saturate(ns uint64) int64 { return int64(min(ns, math.MaxInt64)) }

// fileWriter accumulates one Parquet file. Rows are staged column by column in vals and handed
// to parquet-go a batch at a time, which keeps parquet-go on its typed column-buffer path. With
// a pipeline (pipeline.go) full batches go to the file's encoder goroutine instead.
type fileWriter struct {
	name    string
	fs      *fileSchema
	buf     bytes.Buffer
	w       *parquet.Writer
	vals    []parquet.Value // column-major batch: column c, row r at c*batchRows+r
	n       int             // rows in the batch
	rows    int64           // rows written in total
	rgRows  int64           // rows in the current row group
	rgLimit int64
	cut     bool // end the row group at the next flush, whatever its size (endRowGroup)

	seen seenFilter // attributes files: the plain strings of the current row group

	bg      *fileEncoder  // the encoder goroutine while a pipelined block is written
	batches []*valueBatch // the pipeline's batches, kept from block to block
	cur     *valueBatch   // the batch vals belongs to, while pipelined
}

func newFileWriter(name string, fs *fileSchema, pageSize int) *fileWriter {
	f := &fileWriter{name: name, fs: fs}
	f.batches = []*valueBatch{{vals: make([]parquet.Value, len(fs.cols)*batchRows)}}
	f.cur, f.vals = f.batches[0], f.batches[0].vals
	opts := []parquet.WriterOption{
		fs.schema,
		parquet.PageBufferSize(pageSize),
		parquet.DictionaryMaxBytes(dictionaryMaxBytes),
		parquet.DataPageStatistics(false),
		parquet.CreatedBy("ariadne", "block", fmt.Sprint(FormatVersion)),
	}
	// Byte-array page bounds cost a comparison per value and serve no query; the trace ID
	// minimums that the lookup index is built from are FIXED_LEN and keep theirs.
	for _, c := range fs.cols {
		if c.kind == kDict || c.kind == kBytes || c.kind == kRandom {
			opts = append(opts, parquet.SkipPageBounds(c.name))
		}
	}
	f.w = parquet.NewWriter(&f.buf, opts...)
	return f
}

func (f *fileWriter) reset(rgLimit int64) {
	f.buf.Reset()
	f.resetTo(&f.buf, rgLimit)
}

// resetTo starts a file that goes to out instead of the in-memory buffer.
func (f *fileWriter) resetTo(out io.Writer, rgLimit int64) {
	f.w.Reset(out)
	f.rows, f.rgRows, f.rgLimit, f.n, f.cut = 0, 0, rgLimit, 0, false
}

// set stores column c of the current row. Indexed stores into a fixed batch were measurably
// cheaper than appending to per-column slices: there is no length to write back per value.
func (f *fileWriter) set(c int, v parquet.Value) {
	f.vals[c*batchRows+f.n] = v
}

// endRow counts a row whose values are all appended; full batches go to parquet-go.
func (f *fileWriter) endRow() error {
	f.rows++
	f.rgRows++
	f.n++
	if f.n == batchRows || f.rgRows >= f.rgLimit {
		return f.flushBatch()
	}
	return nil
}

func (f *fileWriter) flushBatch() error {
	if f.n == 0 && !f.cut {
		return nil
	}
	n, endRG := f.n, f.cut || f.rgRows >= f.rgLimit
	f.n, f.cut = 0, false
	if endRG {
		f.rgRows = 0
	}
	if f.bg != nil {
		f.submit(n, endRG)
		return nil
	}
	return f.encode(f.vals, n, endRG)
}

// endRowGroup ends the row group after the rows set so far, so that the next row starts a
// row group (and so a page) of its own.
func (f *fileWriter) endRowGroup() error {
	if f.rgRows == 0 {
		return nil
	}
	f.cut = true
	return f.flushBatch()
}

// encode hands n rows of vals to parquet-go, and ends the row group after them with endRG.
func (f *fileWriter) encode(vals []parquet.Value, n int, endRG bool) error {
	cws := f.w.ColumnWriters()
	for i := range f.fs.cols {
		vs := vals[i*batchRows : i*batchRows+n]
		if _, err := cws[f.fs.leaf[i]].WriteRowValues(vs); err != nil {
			return fmt.Errorf("%s: column %s: %w", f.name, f.fs.cols[i].name, err)
		}
	}
	if endRG {
		if err := f.w.Flush(); err != nil {
			return fmt.Errorf("%s: flush row group: %w", f.name, err)
		}
	}
	return nil
}

// finish hands over the last rows and, without a pipeline, completes the file; wait then
// returns once the file is complete. Split in two so that the pipelined files finish at once.
func (f *fileWriter) finish() error {
	if err := f.flushBatch(); err != nil {
		return err
	}
	if f.bg != nil {
		e := f.bg
		e.close = true
		close(e.work)
		return nil
	}
	return f.closeParquet()
}

func (f *fileWriter) wait() error {
	if f.bg == nil {
		return nil
	}
	e := f.bg
	<-e.done
	f.bg = nil
	f.cur, f.vals = f.batches[0], f.batches[0].vals
	for _, b := range f.batches {
		clear(b.vals)
	}
	return e.err
}

func (f *fileWriter) closeParquet() error {
	if err := f.w.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", f.name, err)
	}
	// The pooled batch would otherwise keep the caller's span bytes alive.
	clear(f.vals)
	return nil
}

// writer is the reusable state of Write; pooled so that steady-state block writing reuses
// arenas, value batches and Parquet buffers.
type writer struct {
	pageSize int
	dec      decoder

	traces, spans, attrs, events, eventAttrs, links, linkAttrs, groups *fileWriter
	bloomBuf                                                           bytes.Buffer
	idx                                                                indexBuilder
	idxQ                                                               *indexFeed // the index goroutine, while pipelined
	idxChunks                                                          []*idxChunk
	// attrRowCount is the attribute rows laid out so far, which the attribute goroutine may
	// not have written yet.
	attrRowCount int64
	indexBuf     bytes.Buffer

	keys     []sortKey
	order    []int32 // trace entries sorted by ID
	units    []unit  // order's trace IDs, in the order they are written
	perm     []int32 // span order within the current trace
	parentOf []int32
	ids      []uint64
	byID     map[uint64]int32

	groupList  []*otlpwire.Group
	groupByPtr map[*otlpwire.Group]int32
	groupByKey map[string]int32
	keyBuf     []byte

	// The block being written: begin, add per trace, end.
	meta         Meta
	bf           *bloom.BloomFilter
	first        bool
	minID, maxID [16]byte
	// The run being written (see Run): its first traces.parquet row and its traces' start
	// range; runs are what endRun closed.
	runRow         int64
	runMin, runMax int64
	runs           []Run
}

type sortKey struct {
	hi, lo uint64 // trace ID, big-endian halves: integer order is byte order
	idx    int32
}

var writerPool sync.Pool

func getWriter(pageSize int) *writer {
	if w, ok := writerPool.Get().(*writer); ok && w.pageSize == pageSize {
		return w
	}
	w := &writer{
		pageSize:   pageSize,
		byID:       map[uint64]int32{},
		groupByPtr: map[*otlpwire.Group]int32{},
		groupByKey: map[string]int32{},
	}
	w.traces = newFileWriter(fileTraces, tracesSchema, pageSize)
	w.spans = newFileWriter(fileSpans, spansSchema, pageSize)
	w.attrs = newFileWriter(fileAttrs, attrsSchema, pageSize)
	w.events = newFileWriter(fileEvents, eventsSchema, pageSize)
	w.eventAttrs = newFileWriter(fileEventAttrs, attrsSchema, pageSize)
	w.links = newFileWriter(fileLinks, linksSchema, pageSize)
	w.linkAttrs = newFileWriter(fileLinkAttrs, attrsSchema, pageSize)
	w.groups = newFileWriter(fileGroups, groupsSchema, pageSize)
	return w
}

// release returns w to the pool without references to the caller's spans and groups, which
// the pool would otherwise keep alive until the next block.
func (w *writer) release() {
	w.stopPipeline()
	d := &w.dec
	for _, a := range [][]attrRec{d.attrs, d.eventAttrs, d.linkAttrs} {
		clear(a[:cap(a)])
	}
	clear(d.spans[:cap(d.spans)])
	clear(d.events[:cap(d.events)])
	clear(d.links[:cap(d.links)])
	clear(w.groupList[:cap(w.groupList)])
	clear(w.groupByPtr)
	writerPool.Put(w)
}

func (w *writer) fileWriters() []*fileWriter {
	return []*fileWriter{w.traces, w.spans, w.attrs, w.events, w.eventAttrs, w.links, w.linkAttrs, w.groups}
}

type namedBuf struct {
	name string
	buf  *bytes.Buffer
}

func (w *writer) files() []namedBuf {
	var out []namedBuf
	for _, f := range w.fileWriters() {
		out = append(out, namedBuf{f.name, &f.buf})
	}
	return append(out, namedBuf{fileBloom, &w.bloomBuf}, namedBuf{fileIndex, &w.indexBuf})
}

func (w *writer) write(ctx context.Context, traces []Trace, opts WriteOptions) (Meta, error) {
	for _, f := range w.fileWriters() {
		f.reset(opts.RowGroupRows)
	}
	w.begin(opts, len(traces))

	// Sorting compact keys rather than indexes into traces keeps every comparison in cache;
	// the index breaks ties so that entries with one ID keep their input order.
	w.keys = w.keys[:0]
	for i := range traces {
		id := &traces[i].ID
		w.keys = append(w.keys, sortKey{binary.BigEndian.Uint64(id[:8]), binary.BigEndian.Uint64(id[8:]), int32(i)})
	}
	slices.SortFunc(w.keys, func(a, b sortKey) int {
		switch {
		case a.hi != b.hi:
			return cmp.Compare(a.hi, b.hi)
		case a.lo != b.lo:
			return cmp.Compare(a.lo, b.lo)
		}
		return cmp.Compare(a.idx, b.idx)
	})
	w.order = w.order[:0]
	for _, k := range w.keys {
		w.order = append(w.order, k.idx)
	}

	// Each trace ID's entries are one unit, in ID order.
	w.units = w.units[:0]
	for i := 0; i < len(w.order); {
		j := i + 1
		id := traces[w.order[i]].ID
		for j < len(w.order) && traces[w.order[j]].ID == id {
			j++
		}
		w.units = append(w.units, unit{int32(i), int32(j), 0})
		i = j
	}
	runs, err := w.runsOf(traces, opts)
	if err != nil {
		return Meta{}, err
	}
	for k, u := range w.units {
		if k%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return Meta{}, err
			}
		}
		if len(runs) > 0 && k == runs[0] {
			runs = runs[1:]
			if err := w.endRun(); err != nil {
				return Meta{}, err
			}
		}
		if err := w.add(traces, w.order[u.i:u.j]); err != nil {
			return Meta{}, err
		}
	}
	return w.end()
}

// unit is one trace ID's entries, order[i:j], and its earliest span start once known.
type unit struct {
	i, j  int32
	start uint64
}

// runsOf puts a block of enough traces in runs by start time (see Run), as compaction would:
// it reorders w.units by start, cuts them into runs of at least RunTraces (at most MaxRuns),
// sorts each run by trace ID again and returns the indexes in w.units where runs after the
// first begin. Fewer than two runs' worth of traces stay one run, sorted by ID, unchanged.
func (w *writer) runsOf(traces []Trace, opts WriteOptions) ([]int, error) {
	least := opts.RunTraces
	if least <= 0 {
		least = minRunTraces
	}
	n := int64(len(w.units))
	if n < 2*least {
		return nil, nil
	}
	for k := range w.units {
		u := &w.units[k]
		for _, e := range w.order[u.i:u.j] {
			st, err := traceStart(&traces[e])
			if err != nil {
				return nil, fmt.Errorf("trace %x: %w", traces[e].ID, err)
			}
			if e == w.order[u.i] || st < u.start {
				u.start = st
			}
		}
	}
	// Stable: units of one start keep their ID order.
	slices.SortStableFunc(w.units, func(a, b unit) int { return cmp.Compare(a.start, b.start) })
	r := min(n/least, MaxRuns)
	var cuts []int
	for k := int64(0); k < r; k++ {
		lo, hi := int(k*n/r), int((k+1)*n/r)
		// Units were in ID order before the sort, so their positions order them by ID.
		slices.SortFunc(w.units[lo:hi], func(a, b unit) int { return cmp.Compare(a.i, b.i) })
		if k > 0 {
			cuts = append(cuts, lo)
		}
	}
	return cuts, nil
}

// traceStart is the earliest start of a trace's spans: Trace.Start when the caller set it,
// else read from the spans' wire form.
func traceStart(t *Trace) (uint64, error) {
	if t.Start != 0 {
		return t.Start, nil
	}
	var start uint64
	for i, sp := range t.Spans {
		for b := sp.Raw; len(b) > 0; {
			num, typ, _, x, rest, err := next(b, "span")
			if err != nil {
				return 0, err
			}
			b = rest
			if num == spanStart && typ == protowire.Fixed64Type {
				if i == 0 || x < start {
					start = x
				}
				break
			}
		}
	}
	return start, nil
}

// begin starts a block: the file writers are reset by the caller (to memory or to files).
func (w *writer) begin(opts WriteOptions, traces int) {
	w.groupList = w.groupList[:0]
	clear(w.groupByPtr)
	clear(w.groupByKey)
	w.meta = Meta{ID: opts.ID, Version: FormatVersion, Created: opts.Now.UTC(), Level: opts.Level}
	w.bf = bloom.NewWithEstimates(uint(max(traces, 1)), opts.BloomFPRate)
	w.first = true
	w.runRow, w.runs = 0, nil
	w.attrRowCount = 0
	w.idx.reset()
	w.startPipeline()
}

// add writes the entries of one trace ID (indexes into traces), in ID order across calls.
func (w *writer) add(traces []Trace, entries []int32) error {
	id := traces[entries[0]].ID
	n, start, end, err := w.writeTrace(traces, entries)
	if err != nil {
		return fmt.Errorf("trace %x: %w", id, err)
	}
	if n == 0 {
		return nil
	}
	for _, e := range entries {
		if traces[e].Split {
			w.meta.Split = append(w.meta.Split, SplitTrace{ID: hex.EncodeToString(id[:]), Start: start})
			break
		}
	}
	w.bf.Add(id[:])
	if w.traces.rows-1 == w.runRow {
		w.runMin, w.runMax = start, start
	}
	w.runMin, w.runMax = min(w.runMin, start), max(w.runMax, start)
	if w.first {
		w.minID, w.maxID = id, id
		w.meta.MinStart, w.meta.MaxEnd = start, end
		w.first = false
	}
	// IDs ascend within a run only: the block's least and greatest are kept apart.
	if bytes.Compare(id[:], w.minID[:]) < 0 {
		w.minID = id
	}
	if bytes.Compare(id[:], w.maxID[:]) > 0 {
		w.maxID = id
	}
	w.meta.MinStart = min(w.meta.MinStart, start)
	w.meta.MaxEnd = max(w.meta.MaxEnd, end)
	return nil
}

// endRun closes the run of the traces added since the last one: the next trace starts a row
// group of traces.parquet, so that no page of trace IDs holds two runs. A run without traces
// is none.
func (w *writer) endRun() error {
	n := w.traces.rows - w.runRow
	if n == 0 {
		return nil
	}
	w.runs = append(w.runs, Run{Traces: n, MinStart: w.runMin, MaxStart: w.runMax})
	w.runRow = w.traces.rows
	return w.traces.endRowGroup()
}

// end finishes every file and returns the meta, without Files and Checksums.
func (w *writer) end() (Meta, error) {
	if len(w.runs) > 0 {
		// The last run needs no row group of its own: the file ends there.
		if n := w.traces.rows - w.runRow; n > 0 {
			w.runs = append(w.runs, Run{Traces: n, MinStart: w.runMin, MaxStart: w.runMax})
		}
	}
	meta := w.meta
	if len(w.runs) > 1 {
		// One run is the layout every block had before runs: it needs no list.
		meta.Runs = slices.Clone(w.runs)
	}
	if !w.first {
		meta.MinTraceID = hex.EncodeToString(w.minID[:])
		meta.MaxTraceID = hex.EncodeToString(w.maxID[:])
	}
	if err := w.writeGroups(); err != nil {
		return Meta{}, err
	}
	// Pipelined, the attribute rows are all laid out once finishIndex returns; then the files
	// and the index complete on their goroutines while the bloom filter is encoded here.
	errs := []error{w.finishIndex()}
	for _, f := range w.fileWriters() {
		errs = append(errs, f.finish())
	}
	w.bloomBuf.Reset()
	if _, err := w.bf.WriteTo(&w.bloomBuf); err != nil {
		errs = append(errs, fmt.Errorf("bloom: %w", err))
	}
	w.waitIndex()
	for _, f := range w.fileWriters() {
		errs = append(errs, f.wait())
	}
	if err := errors.Join(errs...); err != nil {
		return Meta{}, err
	}
	meta.Traces = w.traces.rows
	meta.Spans = w.spans.rows
	meta.Attrs = w.attrs.rows
	meta.Events = w.events.rows
	meta.EventAttrs = w.eventAttrs.rows
	meta.Links = w.links.rows
	meta.LinkAttrs = w.linkAttrs.rows
	meta.Groups = w.groups.rows
	w.bf = nil
	return meta, nil
}

// group returns the index of g in the groups file, deduplicating first by pointer (the common,
// cheap case) and then by content.
func (w *writer) group(g *otlpwire.Group) int32 {
	if i, ok := w.groupByPtr[g]; ok {
		return i
	}
	k := w.keyBuf[:0]
	pres := byte(0)
	if g != nil {
		if g.Resource != nil {
			pres |= hasResource
		}
		if g.Scope != nil {
			pres |= hasScope
		}
		k = append(k, pres)
		for _, b := range [][]byte{g.Resource, g.ResourceSchemaURL, g.Scope, g.ScopeSchemaURL} {
			k = binary.AppendUvarint(k, uint64(len(b)))
			k = append(k, b...)
		}
	}
	w.keyBuf = k
	i, ok := w.groupByKey[string(k)]
	if !ok {
		i = int32(len(w.groupList))
		w.groupList = append(w.groupList, g)
		w.groupByKey[string(k)] = i
	}
	w.groupByPtr[g] = i
	return i
}

func (w *writer) writeGroups() error {
	f := w.groups
	for _, g := range w.groupList {
		if g == nil {
			g = &otlpwire.Group{}
		}
		pres := int32(0)
		if g.Resource != nil {
			pres |= hasResource
		}
		if g.Scope != nil {
			pres |= hasScope
		}
		scopeName, err := scopeNameOf(g.Scope)
		if err != nil {
			return fmt.Errorf("scope: %w", err)
		}
		f.set(gResource, parquet.ByteArrayValue(g.Resource))
		f.set(gResourceSchema, parquet.ByteArrayValue(g.ResourceSchemaURL))
		f.set(gScope, parquet.ByteArrayValue(g.Scope))
		f.set(gScopeSchema, parquet.ByteArrayValue(g.ScopeSchemaURL))
		f.set(gService, parquet.ByteArrayValue(g.ServiceName))
		f.set(gScopeName, parquet.ByteArrayValue(scopeName))
		f.set(gPresence, parquet.Int32Value(pres))
		if err := f.endRow(); err != nil {
			return err
		}
	}
	return nil
}

func scopeNameOf(scope []byte) ([]byte, error) {
	for b := scope; len(b) > 0; {
		num, typ, v, _, rest, err := next(b, "scope")
		if err != nil {
			return nil, err
		}
		b = rest
		if num == scopeName && typ == protowire.BytesType {
			return v, nil
		}
	}
	return nil, nil
}

// writeTrace decodes, orders and appends one trace (possibly several input entries with the
// same ID). It returns the number of spans and the trace's time range.
func (w *writer) writeTrace(traces []Trace, entries []int32) (n int, start, end int64, err error) {
	d := &w.dec
	d.reset()
	var lastG *otlpwire.Group
	var gi int32 = -1
	for _, e := range entries {
		for _, s := range traces[e].Spans {
			if s.Group != lastG || gi < 0 {
				lastG, gi = s.Group, w.group(s.Group)
			}
			if err := d.decodeSpan(s.Raw, gi); err != nil {
				return 0, 0, 0, err
			}
		}
	}
	spans := d.spans
	n = len(spans)
	if n == 0 {
		return 0, 0, 0, nil
	}
	w.perm = w.perm[:0]
	for i := range spans {
		w.perm = append(w.perm, int32(i))
	}
	slices.SortStableFunc(w.perm, func(a, b int32) int {
		sa, sb := spans[a].start, spans[b].start
		switch {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return 0
	})
	perm := w.perm

	// Resolve parents to positions within the trace.
	w.parentOf = slices.Grow(w.parentOf[:0], n)[:n]
	// Only 8-byte IDs take part: anything else cannot be a valid parent link and is kept raw.
	w.ids = slices.Grow(w.ids[:0], n)[:n]
	for pos, si := range perm {
		w.ids[pos] = noID
		if id := spans[si].spanID; len(id) == 8 {
			w.ids[pos] = binary.LittleEndian.Uint64(id)
		}
	}
	if n > 32 {
		clear(w.byID)
		for pos, id := range w.ids {
			if id != noID {
				w.byID[id] = int32(pos)
			}
		}
	}
	for pos, si := range perm {
		w.parentOf[pos] = -1
		p := spans[si].parentID
		if len(p) != 8 {
			continue
		}
		pid := binary.LittleEndian.Uint64(p)
		if pid == noID {
			continue
		}
		if n > 32 {
			if q, ok := w.byID[pid]; ok && q != int32(pos) {
				w.parentOf[pos] = q
			}
			continue
		}
		for q, id := range w.ids {
			if id == pid && q != pos {
				w.parentOf[pos] = int32(q)
				break
			}
		}
	}

	// Summary: the root is the earliest span without a parent in the trace, preferring one
	// that has no parent at all over one whose parent is elsewhere.
	trStart, trEnd := spans[perm[0]].start, spans[perm[0]].end
	root, rootRank := perm[0], 3
	nErr := int32(0)
	for pos, si := range perm {
		s := &spans[si]
		trEnd = max(trEnd, s.end)
		if s.hasStatus && s.statusCode == otlpwire.StatusError {
			nErr++
		}
		rank := 2
		switch {
		case w.parentOf[pos] >= 0:
			rank = 3
		case len(s.parentID) == 0:
			rank = 1
		}
		if rank < rootRank {
			root, rootRank = si, rank
		}
	}
	var rootService []byte
	if g := w.groupList[spans[root].group]; g != nil {
		rootService = g.ServiceName
	}

	// Point at the caller's array rather than a local copy, which would escape per trace.
	id := traces[entries[0]].ID[:]
	t := w.traces
	t.set(tID, parquet.FixedLenByteArrayValue(id))
	t.set(tStart, parquet.Int64Value(int64(trStart)))
	t.set(tDuration, parquet.Int64Value(int64(trEnd-trStart)))
	t.set(tRootService, parquet.ByteArrayValue(rootService))
	t.set(tRootName, parquet.ByteArrayValue(spans[root].name))
	t.set(tSpanCount, parquet.Int64Value(int64(n)))
	t.set(tErrorCount, parquet.Int32Value(nErr))
	t.set(tSpanRow, parquet.Int64Value(w.spans.rows))
	t.set(tAttrRow, parquet.Int64Value(w.attrRowCount))
	t.set(tEventRow, parquet.Int64Value(w.events.rows))
	t.set(tEventAttrRow, parquet.Int64Value(w.eventAttrs.rows))
	t.set(tLinkRow, parquet.Int64Value(w.links.rows))
	t.set(tLinkAttrRow, parquet.Int64Value(w.linkAttrs.rows))
	ratio, truncated := 1.0, false
	for _, e := range entries {
		if r := traces[e].SampleRatio; r > 0 && r < ratio {
			ratio = r
		}
		truncated = truncated || traces[e].Truncated
	}
	t.set(tSampleRatio, parquet.DoubleValue(ratio).Level(0, 1, 0))
	t.set(tTruncated, parquet.BooleanValue(truncated))
	if err := t.endRow(); err != nil {
		return 0, 0, 0, err
	}

	for pos, si := range perm {
		s := &spans[si]
		spanRow := w.spans.rows
		code := int32(0)
		if s.hasStatus {
			code = s.statusCode
		}
		if err := w.spanAttrs(s, spanRow, code, d.attrs[s.attr0:s.attr1]); err != nil {
			return 0, 0, 0, err
		}
		for _, e := range d.events[s.event0:s.event1] {
			ev := w.events
			for _, a := range d.eventAttrs[e.attr0:e.attr1] {
				if err := appendAttrRow(w.eventAttrs, ev.rows, &a, false); err != nil {
					return 0, 0, 0, err
				}
			}
			ev.set(eSpan, parquet.Int64Value(spanRow))
			ev.set(eTime, parquet.Int64Value(int64(e.time-s.start)))
			ev.set(eName, parquet.ByteArrayValue(e.name))
			ev.set(eDropped, parquet.Int32Value(int32(e.dropped)))
			if err := ev.endRow(); err != nil {
				return 0, 0, 0, err
			}
		}
		for _, l := range d.links[s.link0:s.link1] {
			lw := w.links
			for _, a := range d.linkAttrs[l.attr0:l.attr1] {
				if err := appendAttrRow(w.linkAttrs, lw.rows, &a, false); err != nil {
					return 0, 0, 0, err
				}
			}
			lw.set(lSpan, parquet.Int64Value(spanRow))
			lw.set(lTraceID, parquet.ByteArrayValue(l.traceID))
			lw.set(lSpanID, parquet.ByteArrayValue(l.spanID))
			lw.set(lTraceState, parquet.ByteArrayValue(l.traceState))
			lw.set(lFlags, parquet.Int32Value(int32(l.flags)))
			lw.set(lDropped, parquet.Int32Value(int32(l.dropped)))
			if err := lw.endRow(); err != nil {
				return 0, 0, 0, err
			}
		}

		sw := w.spans
		var parentID []byte
		if w.parentOf[pos] < 0 {
			parentID = s.parentID
		}
		sw.set(sSpanID, parquet.ByteArrayValue(s.spanID))
		sw.set(sParent, parquet.Int32Value(w.parentOf[pos]+1))
		sw.set(sParentID, parquet.ByteArrayValue(parentID))
		sw.set(sStart, parquet.Int64Value(int64(s.start-trStart)))
		sw.set(sDuration, parquet.Int64Value(int64(s.end-s.start)))
		sw.set(sName, parquet.ByteArrayValue(s.name))
		sw.set(sKind, parquet.Int32Value(s.kind))
		sw.set(sStatus, parquet.Int64Value(statusValue(s.hasStatus, s.statusCode)))
		sw.set(sStatusMsg, parquet.ByteArrayValue(s.statusMsg))
		sw.set(sTraceState, parquet.ByteArrayValue(s.traceState))
		sw.set(sFlags, parquet.Int32Value(int32(s.flags)))
		sw.set(sDroppedAttrs, parquet.Int32Value(int32(s.droppedAttrs)))
		sw.set(sDroppedEvents, parquet.Int32Value(int32(s.droppedEvents)))
		sw.set(sDroppedLinks, parquet.Int32Value(int32(s.droppedLinks)))
		sw.set(sGroup, parquet.Int32Value(s.group))
		if err := sw.endRow(); err != nil {
			return 0, 0, 0, err
		}
	}
	// Past 2262 nanoseconds overflow int64: a block's time range saturates there rather than
	// going negative and hiding the block from every query by time.
	return n, saturate(trStart), saturate(trEnd), nil
}

// appendAttrRow writes one attribute row; plain puts a string value in the raw column (see
// attrsSchema).
func appendAttrRow(f *fileWriter, owner int64, a *attrRec, plain bool) error {
	typ, str, raw := int32(a.typ), a.str, a.raw
	if plain {
		if f.rgRows == 0 || f.seen.bits == nil {
			f.seen.reset(f.rgLimit) // a row group's first row: every value is new again
		}
		typ, str, raw = ValueStringPlainNew, nil, a.str
		if f.seen.seen(a.str) {
			typ = ValueStringPlain
		}
	} else if f.rgRows == 0 && f.seen.used {
		f.seen.reset(f.rgLimit)
	}
	f.set(aOwner, parquet.Int64Value(owner))
	f.set(aKey, parquet.ByteArrayValue(a.key))
	f.set(aType, parquet.Int32Value(typ))
	f.set(aStr, parquet.ByteArrayValue(str))
	i, d := parquet.Int64Value(0), parquet.NullValue()
	switch a.typ {
	case ValueInt:
		i = parquet.Int64Value(int64(a.num))
	case ValueDouble:
		d = parquet.DoubleValue(math.Float64frombits(a.num)).Level(0, 1, 0)
	}
	f.set(aInt, i)
	f.set(aDouble, d)
	f.set(aBool, parquet.BooleanValue(a.bool))
	f.set(aRaw, parquet.ByteArrayValue(raw))
	return f.endRow()
}

// seenFilter answers whether a plain string may have appeared earlier in the row group: a
// bitset indexed by two halves of the value's hash, sized to eight bits per row of the row
// group and cleared at its start. A false "seen" only weakens the mark (a reader will read the
// values to count them); a false "new" cannot happen. It costs a hash and two bit tests a
// value, where numbering the values exactly cost a map of them.
type seenFilter struct {
	bits []uint64
	mask uint64
	used bool
}

var seenSeed = maphash.MakeSeed()

func (f *seenFilter) reset(rgLimit int64) {
	n := uint64(64)
	for n < 8*uint64(min(rgLimit, 1<<20)) {
		n <<= 1
	}
	if uint64(len(f.bits))*64 != n {
		f.bits, f.used = make([]uint64, n/64), false
	}
	if f.used {
		clear(f.bits)
		f.used = false
	}
	f.mask = n - 1
}

// seen marks v and reports whether it may have been marked before.
func (f *seenFilter) seen(v []byte) bool {
	f.used = true
	h := maphash.Bytes(seenSeed, v)
	a, b := h&f.mask, (h>>32)&f.mask
	wa, ba, wb, bb := a/64, uint64(1)<<(a%64), b/64, uint64(1)<<(b%64)
	old := f.bits[wa]&ba != 0 && f.bits[wb]&bb != 0
	f.bits[wa] |= ba
	f.bits[wb] |= bb
	return old
}
