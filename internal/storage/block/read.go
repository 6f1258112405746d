package block

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/parquet-go/parquet-go"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Reader reads one block. It keeps the Parquet footers, the bloom filter, the groups and the
// first trace ID of every trace_id page in memory; everything else is read on demand. Its
// methods are safe for concurrent use.
type Reader struct {
	meta         Meta
	minID, maxID [16]byte
	bloom        *bloom.BloomFilter

	traces, spans, attrs, events, eventAttrs, links, linkAttrs *pfile

	groups []groupRow

	// First trace ID and first row of each page of traces.parquet's trace_id column.
	pageID    [][16]byte
	pageIDLen []uint8 // bytes of pageID that are real, 16 unless the writer truncated
	pageRow   []int64

	// runs are the block's runs (Meta.Runs, or one run of every trace), each with its pages of
	// the trace_id column.
	runs []runRows

	// idPrefix holds the first four bytes of every trace ID, in order, built on the first
	// HasTrace: it answers the bloom filter's false positives (1% per block) from memory, at
	// four bytes per trace, instead of reading a trace_id page for each.
	idPrefixOnce sync.Once
	idPrefix     []uint32
	idPrefixErr  error

	// refs counts the holders of the reader: Open's caller and each Retain. The files close
	// when the last one releases, so a block retired while a query reads it stays readable
	// until that query ends.
	refs     atomic.Int64
	onDamage func(error)
	degraded error

	store  objstore.Store
	index  indexState // see Index
	starts startOrder // see StartOrder
}

type groupRow struct {
	resource, resourceSchema, scope, scopeSchema []byte
	presence                                     int32
	service, scopeName                           string
}

// pfile is one open Parquet file of the block.
type pfile struct {
	name    string
	fs      *fileSchema
	rc      objstore.ReaderAtCloser
	f       *parquet.File
	rgFirst []int64 // global first row of each row group
	rows    int64
}

func openFile(ctx context.Context, store objstore.Store, dir, name string, fs *fileSchema, want map[string]int64) (*pfile, error) {
	rc, size, err := store.ReaderAt(ctx, dir+name)
	if err != nil {
		return nil, err
	}
	if n, ok := want[name]; ok && n != size {
		rc.Close()
		return nil, fmt.Errorf("%s: %d bytes, meta.json says %d", name, size, n)
	}
	f, err := parquet.OpenFile(rc, size, parquet.SkipBloomFilters(true), parquet.ReadBufferSize(16<<10))
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if !parquet.EqualNodes(f.Schema(), fs.schema) {
		rc.Close()
		return nil, fmt.Errorf("%s: unexpected schema %s", name, f.Schema())
	}
	p := &pfile{name: name, fs: fs, rc: rc, f: f}
	for _, rg := range f.RowGroups() {
		p.rgFirst = append(p.rgFirst, p.rows)
		p.rows += rg.NumRows()
	}
	return p, nil
}

// readColumn calls fn with the values of column col (a position in the file's schema) for rows
// [row, row+n). Byte-array values point into page buffers that are recycled after fn returns.
func (p *pfile) readColumn(col int, row, n int64, fn func(i int64, v parquet.Value)) error {
	if n <= 0 {
		return nil
	}
	if row < 0 || row+n > p.rows {
		return fmt.Errorf("%s: rows [%d,%d) out of range [0,%d)", p.name, row, row+n, p.rows)
	}
	var buf [256]parquet.Value
	rgs := p.f.RowGroups()
	rg := sort.Search(len(p.rgFirst), func(i int) bool { return p.rgFirst[i] > row }) - 1
	var done int64
	for ; done < n; rg++ {
		local := row + done - p.rgFirst[rg]
		take := min(n-done, rgs[rg].NumRows()-local)
		if err := readChunk(rgs[rg].ColumnChunks()[p.fs.leaf[col]], local, take, buf[:], func(v parquet.Value) {
			fn(done, v)
			done++
		}); err != nil {
			return fmt.Errorf("%s: column %s: %w", p.name, p.fs.cols[col].name, err)
		}
	}
	return nil
}

func readChunk(chunk parquet.ColumnChunk, row, n int64, buf []parquet.Value, fn func(parquet.Value)) error {
	pages := chunk.Pages()
	defer pages.Close()
	if err := pages.SeekToRow(row); err != nil {
		return fmt.Errorf("seek to row %d: %w", row, err)
	}
	for n > 0 {
		page, err := pages.ReadPage()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		vr := page.Values()
		for n > 0 {
			m, err := vr.ReadValues(buf[:min(int64(len(buf)), n)])
			for _, v := range buf[:m] {
				fn(v)
			}
			n -= int64(m)
			if errors.Is(err, io.EOF) || (err == nil && m == 0) {
				break
			}
			if err != nil {
				parquet.Release(page)
				return err
			}
		}
		parquet.Release(page)
	}
	return nil
}

func (p *pfile) int64s(col int, row, n int64, dst []int64) ([]int64, error) {
	dst = slices.Grow(dst[:0], int(n))[:n]
	err := p.readColumn(col, row, n, func(i int64, v parquet.Value) { dst[i] = v.Int64() })
	return dst, err
}

func (p *pfile) int32s(col int, row, n int64) ([]int32, error) {
	dst := make([]int32, n)
	err := p.readColumn(col, row, n, func(i int64, v parquet.Value) { dst[i] = v.Int32() })
	return dst, err
}

// copies reads a byte-array column into one shared allocation.
func (p *pfile) copies(col int, row, n int64) ([][]byte, error) {
	dst := make([][]byte, n)
	// Most byte-array columns read this way are 8-byte span IDs: sized for those, the arena is
	// allocated once instead of doubling through garbage.
	arena := make([]byte, 0, 8*n)
	ends := make([]int, 0, n)
	err := p.readColumn(col, row, n, func(i int64, v parquet.Value) {
		arena = append(arena, v.ByteArray()...)
		ends = append(ends, len(arena))
	})
	start := 0
	for i, e := range ends {
		dst[i] = arena[start:e:e]
		start = e
	}
	return dst, err
}

// validString is string(b), with invalid UTF-8 replaced by U+FFFD: blocks written before ingest
// replaced it hold some, and protobuf refuses to encode such strings in answers.
func validString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// strs reads a dictionary string column, sharing one string per distinct value.
func (p *pfile) strs(col int, row, n int64) ([]string, error) {
	dst := make([]string, n)
	var last []byte
	var lastS string
	err := p.readColumn(col, row, n, func(i int64, v parquet.Value) {
		b := v.ByteArray()
		if i == 0 || !bytes.Equal(b, last) {
			lastS = validString(b)
			last = append(last[:0], b...)
		}
		dst[i] = lastS
	})
	return dst, err
}

func (p *pfile) close() error {
	if p == nil {
		return nil
	}
	pages.forget(p)
	return p.rc.Close()
}

// Open opens a complete block. It checks what it can without reading the block whole: the
// meta, every file's size, the Parquet footers and the bloom filter's checksum. An error that
// comes from the block's content wraps ErrDamaged.
func Open(ctx context.Context, store objstore.Store, id string) (_ *Reader, err error) {
	meta, err := readMeta(ctx, store, id)
	if err != nil {
		return nil, err
	}
	r := &Reader{meta: meta, store: store}
	r.refs.Store(1)
	defer func() {
		if err != nil {
			r.Close()
			err = damaged(err)
		}
	}()
	if err := decodeID(meta.MinTraceID, &r.minID); err != nil {
		return nil, fmt.Errorf("block %s: meta: %w", id, err)
	}
	if err := decodeID(meta.MaxTraceID, &r.maxID); err != nil {
		return nil, fmt.Errorf("block %s: meta: %w", id, err)
	}
	dir := blockDir(id)
	// The bloom filter only speeds lookups up; without a sound one the block is still served,
	// from its trace-ID index, and Degraded says why.
	if r.bloom, err = loadBloom(ctx, store, meta); err != nil {
		if !errors.Is(damaged(err), ErrDamaged) {
			return nil, fmt.Errorf("block %s: %w", id, err)
		}
		r.bloom, r.degraded = nil, fmt.Errorf("block %s: %w", id, damaged(err))
	}
	for _, f := range []struct {
		dst  **pfile
		name string
		fs   *fileSchema
	}{
		{&r.traces, fileTraces, tracesSchema},
		{&r.spans, fileSpans, spansSchema},
		{&r.attrs, fileAttrs, attrsSchema},
		{&r.events, fileEvents, eventsSchema},
		{&r.eventAttrs, fileEventAttrs, attrsSchema},
		{&r.links, fileLinks, linksSchema},
		{&r.linkAttrs, fileLinkAttrs, attrsSchema},
	} {
		if *f.dst, err = openFile(ctx, store, dir, f.name, f.fs, meta.Files); err != nil {
			return nil, fmt.Errorf("block %s: %w", id, err)
		}
	}
	if err := r.loadGroups(ctx, store, dir); err != nil {
		return nil, fmt.Errorf("block %s: %w", id, err)
	}
	if err := r.loadPageIndex(); err != nil {
		return nil, fmt.Errorf("block %s: %w", id, err)
	}
	if err := r.loadRuns(); err != nil {
		return nil, fmt.Errorf("block %s: %w", id, err)
	}
	return r, nil
}

// runRows is one run: traces.parquet rows [row0, row1) and trace_id pages [page0, page1).
type runRows struct {
	row0, row1         int64
	page0, page1       int
	minStart, maxStart int64
}

// loadRuns lays the meta's runs over the rows and checks that each starts a trace_id page,
// which the lookup by trace ID needs.
func (r *Reader) loadRuns() error {
	if len(r.meta.Runs) == 0 {
		r.runs = []runRows{{row1: r.traces.rows, page1: len(r.pageID), minStart: r.meta.MinStart, maxStart: r.meta.MaxEnd}}
		return nil
	}
	var row int64
	for i, run := range r.meta.Runs {
		if run.Traces <= 0 || row+run.Traces > r.traces.rows {
			return fmt.Errorf("meta: run %d of %d traces past the %d traces", i, run.Traces, r.traces.rows)
		}
		p0, ok := slices.BinarySearch(r.pageRow, row)
		if !ok {
			return fmt.Errorf("meta: run %d starts at row %d, inside a trace_id page", i, row)
		}
		r.runs = append(r.runs, runRows{row0: row, row1: row + run.Traces, page0: p0, minStart: run.MinStart, maxStart: run.MaxStart})
		row += run.Traces
	}
	if row != r.traces.rows {
		return fmt.Errorf("meta: runs hold %d traces, the block %d", row, r.traces.rows)
	}
	for i := range r.runs {
		r.runs[i].page1 = len(r.pageID)
		if i+1 < len(r.runs) {
			r.runs[i].page1 = r.runs[i+1].page0
		}
	}
	return nil
}

// RunRange is a run of a block (see Run) as rows of its traces.parquet, for ScanOptions.
type RunRange struct {
	From, To           int64 // rows [From, To)
	MinStart, MaxStart int64 // the traces' starts, unix nanoseconds
}

// Runs returns the block's runs in row order; a block written without runs is one, from its
// meta's time range.
func (r *Reader) Runs() []RunRange {
	out := make([]RunRange, len(r.runs))
	for i, run := range r.runs {
		out[i] = RunRange{From: run.row0, To: run.row1, MinStart: run.minStart, MaxStart: run.maxStart}
	}
	return out
}

func loadBloom(ctx context.Context, store objstore.Store, meta Meta) (*bloom.BloomFilter, error) {
	rc, err := store.Get(ctx, blockDir(meta.ID)+fileBloom)
	if err != nil {
		return nil, fmt.Errorf("bloom: %w", err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("bloom: %w", err)
	}
	if n, ok := meta.Files[fileBloom]; ok && n != int64(len(raw)) {
		return nil, fmt.Errorf("bloom: %d bytes, meta.json says %d", len(raw), n)
	}
	// Cleared bits would make lookups answer "not here" for traces that are.
	if sum, ok := meta.Checksums[fileBloom]; ok && sum != crc32.Checksum(raw, castagnoli) {
		return nil, errors.New("bloom: checksum mismatch")
	}
	bf := &bloom.BloomFilter{}
	if _, err = bf.ReadFrom(bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("bloom: %w", err)
	}
	return bf, nil
}

// Degraded returns why the block is served in a slower way than it was written for (its bloom
// filter is missing or damaged, so every lookup in its ID range reads the index), or nil.
func (r *Reader) Degraded() error { return r.degraded }

func decodeID(s string, dst *[16]byte) error {
	if s == "" {
		return nil // empty block
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return fmt.Errorf("bad trace ID %q", s)
	}
	copy(dst[:], b)
	return nil
}

func (r *Reader) loadGroups(ctx context.Context, store objstore.Store, dir string) error {
	g, err := openFile(ctx, store, dir, fileGroups, groupsSchema, r.meta.Files)
	if err != nil {
		return err
	}
	defer g.close()
	n := g.rows
	res, err1 := g.copies(gResource, 0, n)
	resSchema, err2 := g.copies(gResourceSchema, 0, n)
	scope, err3 := g.copies(gScope, 0, n)
	scopeSchema, err4 := g.copies(gScopeSchema, 0, n)
	service, err5 := g.strs(gService, 0, n)
	scopeName, err6 := g.strs(gScopeName, 0, n)
	pres, err7 := g.int32s(gPresence, 0, n)
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		return err
	}
	r.groups = make([]groupRow, n)
	for i := range r.groups {
		r.groups[i] = groupRow{res[i], resSchema[i], scope[i], scopeSchema[i], pres[i], service[i], scopeName[i]}
	}
	return nil
}

func (r *Reader) loadPageIndex() error {
	leaf := tracesSchema.leaf[tID]
	for i, rg := range r.traces.f.RowGroups() {
		chunk := rg.ColumnChunks()[leaf]
		ci, err := chunk.ColumnIndex()
		if err != nil {
			return fmt.Errorf("%s: column index: %w", fileTraces, err)
		}
		oi, err := chunk.OffsetIndex()
		if err != nil {
			return fmt.Errorf("%s: offset index: %w", fileTraces, err)
		}
		for p := range oi.NumPages() {
			var id [16]byte
			// A truncated minimum is a prefix of the first ID, still a valid lower bound.
			n := copy(id[:], ci.MinValue(p).ByteArray())
			r.pageID = append(r.pageID, id)
			r.pageIDLen = append(r.pageIDLen, uint8(n))
			r.pageRow = append(r.pageRow, r.traces.rgFirst[i]+oi.FirstRowIndex(p))
		}
	}
	return nil
}

// Meta returns the block's meta.
func (r *Reader) Meta() Meta { return r.meta }

// Retain adds a holder: the reader stays open until Release is called once more than Retain.
// Only a holder may call it, so the count never comes back from zero.
func (r *Reader) Retain() { r.refs.Add(1) }

// Release drops a holder's claim; the last one closes the files.
func (r *Reader) Release() {
	switch n := r.refs.Add(-1); {
	case n == 0:
		r.Close()
	case n < 0:
		panic(fmt.Sprintf("block %s: released more often than retained", r.meta.ID))
	}
}

// OnDamage sets fn to be called with each error that shows the block is damaged, as it is
// found by a read. Set it before the reader is shared; fn must not block.
func (r *Reader) OnDamage(fn func(error)) { r.onDamage = fn }

// Close releases the block's files at once, whatever the holders; see Release.
func (r *Reader) Close() error {
	var errs []error
	for _, p := range []*pfile{r.traces, r.spans, r.attrs, r.events, r.eventAttrs, r.links, r.linkAttrs} {
		errs = append(errs, p.close())
	}
	return errors.Join(errs...)
}

// MayContain reports whether the block may hold trace id, from memory only.
func (r *Reader) MayContain(id [16]byte) bool {
	if r.meta.Traces == 0 || bytes.Compare(id[:], r.minID[:]) < 0 || bytes.Compare(id[:], r.maxID[:]) > 0 {
		return false
	}
	return r.bloom == nil || r.bloom.Test(id[:])
}

// A Probe is a trace ID with its bloom filter locations hashed once, for asking many blocks
// whether they may hold it: the store asks every block about every new trace (split checks),
// and hashing the ID again for each block made that cost grow with the block count.
type Probe struct {
	id   [16]byte
	locs []uint64
}

// probeLocs covers the filters' k: 7 at the 1% false positive rate blocks are written with.
const probeLocs = 16

// NewProbe hashes id for MayContainProbe.
func NewProbe(id [16]byte) *Probe {
	return &Probe{id: id, locs: bloom.Locations(id[:], probeLocs)}
}

// MayContainProbe is MayContain(p's ID), without hashing it again: a filter's i-th location is
// the same hash modulo its size, whatever the size.
func (r *Reader) MayContainProbe(p *Probe) bool {
	if r.meta.Traces == 0 || bytes.Compare(p.id[:], r.minID[:]) < 0 || bytes.Compare(p.id[:], r.maxID[:]) > 0 {
		return false
	}
	if r.bloom == nil {
		return true
	}
	if k := r.bloom.K(); k <= uint(len(p.locs)) {
		return r.bloom.TestLocations(p.locs[:k])
	}
	return r.bloom.Test(p.id[:])
}

// HasTrace reports whether the block holds part of trace id, from memory unless the trace may
// really be here: the bloom filter, then the trace IDs' first four bytes, then one trace_id page.
func (r *Reader) HasTrace(id [16]byte) (bool, error) {
	if !r.MayContain(id) {
		return false, nil
	}
	r.idPrefixOnce.Do(r.loadIDPrefixes)
	if r.idPrefixErr == nil && len(r.idPrefix) == int(r.traces.rows) {
		p := binary.BigEndian.Uint32(id[:4])
		in := false
		for _, run := range r.runs {
			if _, found := slices.BinarySearch(r.idPrefix[run.row0:run.row1], p); found {
				in = true
				break
			}
		}
		if !in {
			return false, nil
		}
	}
	rows, err := r.findRows(id)
	return len(rows) > 0, r.wrap(err)
}

// loadIDPrefixes reads the trace_id column once. Trace IDs are sorted within each run, so
// their prefixes are.
func (r *Reader) loadIDPrefixes() {
	out := make([]uint32, 0, r.traces.rows)
	err := r.traces.readColumn(tID, 0, r.traces.rows, func(_ int64, v parquet.Value) {
		b := v.ByteArray()
		if len(b) >= 4 {
			out = append(out, binary.BigEndian.Uint32(b))
		}
	})
	r.idPrefix, r.idPrefixErr = out, err
}

// findRows returns the traces.parquet rows of id, one per run that holds a part of it
// (mostly none or one).
func (r *Reader) findRows(id [16]byte) ([]int64, error) {
	if !r.MayContain(id) {
		return nil, nil
	}
	// With many runs, the ID prefixes (read once, four bytes a trace) rule out in memory the
	// runs that cannot hold the trace, so a lookup reads about one page whatever the runs.
	if len(r.runs) > prefixRuns {
		r.idPrefixOnce.Do(r.loadIDPrefixes)
	}
	prefixes := r.idPrefixErr == nil && len(r.idPrefix) == int(r.traces.rows)
	var rows []int64
	for _, run := range r.runs {
		if prefixes {
			if _, found := slices.BinarySearch(r.idPrefix[run.row0:run.row1], binary.BigEndian.Uint32(id[:4])); !found {
				continue
			}
		}
		row, err := r.findInRun(run, id)
		if err != nil {
			return nil, err
		}
		if row >= 0 {
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// prefixRuns is how many runs a block may have before a lookup by ID reads the ID prefixes
// rather than a trace_id page per run.
const prefixRuns = 8

// findInRun returns the traces.parquet row of id within run, or -1.
func (r *Reader) findInRun(run runRows, id [16]byte) (int64, error) {
	pageID, pageIDLen := r.pageID[run.page0:run.page1], r.pageIDLen[run.page0:run.page1]
	p := sort.Search(len(pageID), func(i int) bool { return bytes.Compare(pageID[i][:], id[:]) > 0 }) - 1
	if p < 0 {
		return -1, nil
	}
	// A truncated minimum is only a prefix of the page's first ID, so IDs sharing that prefix
	// may still sit at the end of the page before.
	for p > 0 && pageIDLen[p] < 16 && bytes.Equal(pageID[p][:pageIDLen[p]], id[:pageIDLen[p]]) {
		p--
	}
	found, err := r.searchPage(run.page0+p, id)
	if err != nil {
		return -1, fmt.Errorf("%s: trace_id page %d: %w", fileTraces, run.page0+p, err)
	}
	return found, nil
}

// searchPage binary-searches the trace IDs of page p (a global page number) in their encoded
// form, without materializing a Value per row.
func (r *Reader) searchPage(p int, id [16]byte) (int64, error) {
	first := r.pageRow[p]
	pf := r.traces
	rg := sort.Search(len(pf.rgFirst), func(i int) bool { return pf.rgFirst[i] > first }) - 1
	pages := pf.f.RowGroups()[rg].ColumnChunks()[tracesSchema.leaf[tID]].Pages()
	defer pages.Close()
	if err := pages.SeekToRow(first - pf.rgFirst[rg]); err != nil {
		return -1, err
	}
	page, err := pages.ReadPage()
	if err != nil {
		return -1, err
	}
	defer parquet.Release(page)
	vals := page.Data()
	data, size := vals.FixedLenByteArray()
	if size != 16 {
		return -1, fmt.Errorf("trace IDs of %d bytes", size)
	}
	n := len(data) / 16
	i := sort.Search(n, func(i int) bool { return bytes.Compare(data[i*16:i*16+16], id[:]) >= 0 })
	if i < n && bytes.Equal(data[i*16:i*16+16], id[:]) {
		return first + int64(i), nil
	}
	return -1, nil
}

// FindTrace returns the part of trace id stored in this block, as OTLP ResourceSpans, or nil
// when the block does not hold it. Spans keep every field they were written with; resources and
// scopes are grouped as they were, in order of each group's first span by start time.
//
// Parts of the trace in several runs come one after the other, as parts in several blocks do;
// the caller merges them.
func (r *Reader) FindTrace(ctx context.Context, id [16]byte) ([]*tracepb.ResourceSpans, error) {
	rows, err := r.findRows(id)
	if err != nil || len(rows) == 0 {
		return nil, r.wrap(err)
	}
	var out []*tracepb.ResourceSpans
	for _, row := range rows {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t, err := r.traceRows(row)
		if err != nil {
			return nil, r.wrap(err)
		}
		rs, err := r.rebuild(id, t)
		if err != nil {
			return nil, r.wrap(err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// wrap names the block in a read error and, when the error is the block's fault, marks it
// ErrDamaged and tells the damage hook.
func (r *Reader) wrap(err error) error {
	if err == nil {
		return nil
	}
	err = damaged(err)
	if errors.Is(err, ErrDamaged) && r.onDamage != nil {
		r.onDamage(err)
	}
	return fmt.Errorf("block %s: %w", r.meta.ID, err)
}

// rowRanges is where one trace lives in each file.
type rowRanges struct {
	start                                              int64
	spans, attrs, events, eventAttrs, links, linkAttrs [2]int64
}

var rangeCols = []int{tSpanRow, tAttrRow, tEventRow, tEventAttrRow, tLinkRow, tLinkAttrRow}

func (r *Reader) traceRows(row int64) (rowRanges, error) {
	n := int64(2)
	if row+1 == r.traces.rows {
		n = 1
	}
	var starts [6][2]int64
	ends := [6]int64{r.meta.Spans, r.meta.Attrs, r.meta.Events, r.meta.EventAttrs, r.meta.Links, r.meta.LinkAttrs}
	for k, col := range rangeCols {
		starts[k][1] = ends[k]
		if err := r.traces.readColumn(col, row, n, func(i int64, v parquet.Value) { starts[k][i] = v.Int64() }); err != nil {
			return rowRanges{}, err
		}
	}
	var t rowRanges
	if err := r.traces.readColumn(tStart, row, 1, func(_ int64, v parquet.Value) { t.start = v.Int64() }); err != nil {
		return rowRanges{}, err
	}
	t.spans, t.attrs, t.events, t.eventAttrs, t.links, t.linkAttrs = starts[0], starts[1], starts[2], starts[3], starts[4], starts[5]
	return t, nil
}

// attrCols is the content of an attributes file for a row range.
type attrCols struct {
	owner []int64
	key   []string
	typ   []int32
	str   []string
	num   []int64
	dbl   []float64
	bools []bool
	raw   [][]byte
}

func readAttrs(p *pfile, rng [2]int64) (*attrCols, error) {
	row, n := rng[0], rng[1]-rng[0]
	a := &attrCols{dbl: make([]float64, n), bools: make([]bool, n)}
	var errs [8]error
	a.owner, errs[0] = p.int64s(aOwner, row, n, nil)
	a.key, errs[1] = p.strs(aKey, row, n)
	a.typ, errs[2] = p.int32s(aType, row, n)
	a.str, errs[3] = p.strs(aStr, row, n)
	a.num, errs[4] = p.int64s(aInt, row, n, nil)
	errs[5] = p.readColumn(aDouble, row, n, func(i int64, v parquet.Value) { a.dbl[i] = v.Double() })
	errs[6] = p.readColumn(aBool, row, n, func(i int64, v parquet.Value) { a.bools[i] = v.Boolean() })
	a.raw, errs[7] = p.copies(aRaw, row, n)
	if err := errors.Join(errs[:]...); err != nil {
		return a, err
	}
	// Strings kept out of the dictionary are strings like any other to every caller.
	for i, t := range a.typ {
		if plainString(t) {
			a.typ[i], a.str[i], a.raw[i] = ValueString, validString(a.raw[i]), nil
		}
	}
	return a, nil
}

// keyValues rebuilds the attributes whose owner column, from index *pos on, equals owner.
func (a *attrCols) keyValues(pos *int, owner int64) ([]*commonpb.KeyValue, error) {
	var out []*commonpb.KeyValue
	for ; *pos < len(a.owner) && a.owner[*pos] == owner; *pos++ {
		i := *pos
		kv := &commonpb.KeyValue{Key: a.key[i]}
		switch a.typ[i] {
		case ValueNone:
		case ValueString:
			kv.Value = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: a.str[i]}}
		case ValueBool:
			kv.Value = &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: a.bools[i]}}
		case ValueInt:
			kv.Value = &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: a.num[i]}}
		case ValueDouble:
			kv.Value = &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: a.dbl[i]}}
		case ValueRaw:
			kv.Value = &commonpb.AnyValue{}
			if err := otlpwire.Unmarshal(a.raw[i], kv.Value); err != nil {
				return nil, fmt.Errorf("attribute %q: %w", a.key[i], err)
			}
		default:
			return nil, fmt.Errorf("attribute %q: unknown value type %d", a.key[i], a.typ[i])
		}
		out = append(out, kv)
	}
	return out, nil
}

func (r *Reader) rebuild(id [16]byte, t rowRanges) ([]*tracepb.ResourceSpans, error) {
	sp := r.spans
	row, n := t.spans[0], t.spans[1]-t.spans[0]
	var errs []error
	collect := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	spanID, err := sp.copies(sSpanID, row, n)
	collect(err)
	parent, err := sp.int32s(sParent, row, n)
	collect(err)
	parentID, err := sp.copies(sParentID, row, n)
	collect(err)
	startOff, err := sp.int64s(sStart, row, n, nil)
	collect(err)
	dur, err := sp.int64s(sDuration, row, n, nil)
	collect(err)
	name, err := sp.strs(sName, row, n)
	collect(err)
	kind, err := sp.int32s(sKind, row, n)
	collect(err)
	status, err := sp.int64s(sStatus, row, n, nil)
	collect(err)
	statusMsg, err := sp.strs(sStatusMsg, row, n)
	collect(err)
	traceState, err := sp.strs(sTraceState, row, n)
	collect(err)
	flags, err := sp.int32s(sFlags, row, n)
	collect(err)
	dAttrs, err := sp.int32s(sDroppedAttrs, row, n)
	collect(err)
	dEvents, err := sp.int32s(sDroppedEvents, row, n)
	collect(err)
	dLinks, err := sp.int32s(sDroppedLinks, row, n)
	collect(err)
	group, err := sp.int32s(sGroup, row, n)
	collect(err)
	attrs, err := readAttrs(r.attrs, t.attrs)
	collect(err)
	eventAttrs, err := readAttrs(r.eventAttrs, t.eventAttrs)
	collect(err)
	linkAttrs, err := readAttrs(r.linkAttrs, t.linkAttrs)
	collect(err)

	ev := r.events
	eRow, eN := t.events[0], t.events[1]-t.events[0]
	evSpan, err := ev.int64s(eSpan, eRow, eN, nil)
	collect(err)
	evTime, err := ev.int64s(eTime, eRow, eN, nil)
	collect(err)
	evName, err := ev.strs(eName, eRow, eN)
	collect(err)
	evDropped, err := ev.int32s(eDropped, eRow, eN)
	collect(err)

	lk := r.links
	lRow, lN := t.links[0], t.links[1]-t.links[0]
	lkSpan, err := lk.int64s(lSpan, lRow, lN, nil)
	collect(err)
	lkTrace, err := lk.copies(lTraceID, lRow, lN)
	collect(err)
	lkSpanID, err := lk.copies(lSpanID, lRow, lN)
	collect(err)
	lkState, err := lk.strs(lTraceState, lRow, lN)
	collect(err)
	lkFlags, err := lk.int32s(lFlags, lRow, lN)
	collect(err)
	lkDropped, err := lk.int32s(lDropped, lRow, lN)
	collect(err)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	var out []*tracepb.ResourceSpans
	byResource := map[string]*tracepb.ResourceSpans{}
	byGroup := map[int32]*tracepb.ScopeSpans{}
	spans := make([]*tracepb.Span, n)
	traceID := slices.Clone(id[:])
	var ai, ei, eai, li, lai int
	for i := range spans {
		spanRow := row + int64(i)
		start := uint64(t.start) + uint64(startOff[i])
		s := &tracepb.Span{
			TraceId:                traceID,
			SpanId:                 spanID[i],
			TraceState:             traceState[i],
			Flags:                  uint32(flags[i]),
			Name:                   name[i],
			Kind:                   tracepb.Span_SpanKind(kind[i]),
			StartTimeUnixNano:      start,
			EndTimeUnixNano:        start + uint64(dur[i]),
			DroppedAttributesCount: uint32(dAttrs[i]),
			DroppedEventsCount:     uint32(dEvents[i]),
			DroppedLinksCount:      uint32(dLinks[i]),
		}
		switch p := parent[i]; {
		case p > 0 && int(p) <= len(spanID):
			s.ParentSpanId = spanID[p-1]
		case p > 0:
			return nil, fmt.Errorf("span row %d: parent index %d out of range", spanRow, p)
		case len(parentID[i]) > 0:
			s.ParentSpanId = parentID[i]
		}
		if has, code := statusFromValue(status[i]); has {
			s.Status = &tracepb.Status{Code: tracepb.Status_StatusCode(code), Message: statusMsg[i]}
		}
		if s.Attributes, err = attrs.keyValues(&ai, spanRow); err != nil {
			return nil, err
		}
		for ; ei < len(evSpan) && evSpan[ei] == spanRow; ei++ {
			e := &tracepb.Span_Event{
				TimeUnixNano:           start + uint64(evTime[ei]),
				Name:                   evName[ei],
				DroppedAttributesCount: uint32(evDropped[ei]),
			}
			if e.Attributes, err = eventAttrs.keyValues(&eai, eRow+int64(ei)); err != nil {
				return nil, err
			}
			s.Events = append(s.Events, e)
		}
		for ; li < len(lkSpan) && lkSpan[li] == spanRow; li++ {
			l := &tracepb.Span_Link{
				TraceId:                lkTrace[li],
				SpanId:                 lkSpanID[li],
				TraceState:             lkState[li],
				Flags:                  uint32(lkFlags[li]),
				DroppedAttributesCount: uint32(lkDropped[li]),
			}
			if l.Attributes, err = linkAttrs.keyValues(&lai, lRow+int64(li)); err != nil {
				return nil, err
			}
			s.Links = append(s.Links, l)
		}
		spans[i] = s

		gi := group[i]
		ss := byGroup[gi]
		if ss == nil {
			if gi < 0 || int(gi) >= len(r.groups) {
				return nil, fmt.Errorf("span row %d: group %d out of range", spanRow, gi)
			}
			g := &r.groups[gi]
			key := string(rune('0'+g.presence&hasResource)) + string(g.resourceSchema) + "\x00" + string(g.resource)
			rs := byResource[key]
			if rs == nil {
				rs = &tracepb.ResourceSpans{SchemaUrl: validString(g.resourceSchema)}
				if g.presence&hasResource != 0 {
					rs.Resource = &resourcepb.Resource{}
					if err := otlpwire.Unmarshal(g.resource, rs.Resource); err != nil {
						return nil, fmt.Errorf("group %d: resource: %w", gi, err)
					}
				}
				byResource[key] = rs
				out = append(out, rs)
			}
			ss = &tracepb.ScopeSpans{SchemaUrl: validString(g.scopeSchema)}
			if g.presence&hasScope != 0 {
				ss.Scope = &commonpb.InstrumentationScope{}
				if err := otlpwire.Unmarshal(g.scope, ss.Scope); err != nil {
					return nil, fmt.Errorf("group %d: scope: %w", gi, err)
				}
			}
			byGroup[gi] = ss
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		ss.Spans = append(ss.Spans, s)
	}
	if ai != len(attrs.owner) || ei != len(evSpan) || eai != len(eventAttrs.owner) || li != len(lkSpan) || lai != len(linkAttrs.owner) {
		return nil, fmt.Errorf("trace %x: child rows do not line up with spans", id)
	}
	return out, nil
}

// TraceSummary is one row of traces.parquet: what search filters and lists on.
type TraceSummary struct {
	ID            [16]byte
	StartUnixNano int64
	DurationNano  int64
	RootService   string
	RootName      string
	SpanCount     int64
	ErrorCount    int32
	SampleRatio   float64 // see Trace.SampleRatio; 1 when kept unconditionally
	Truncated     bool
}

// Traces calls fn with the summary of every trace in the block, in trace ID order, reading
// only traces.parquet. It stops early when fn returns false. fn must not keep the pointer.
func (r *Reader) Traces(ctx context.Context, fn func(*TraceSummary) bool) error {
	const chunk = 8192
	p := r.traces
	var ids [][16]byte
	var start, dur, count []int64
	var errs []int32
	var ratios []float64
	var truncs []bool
	for row := int64(0); row < p.rows; row += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(chunk, p.rows-row)
		ids = slices.Grow(ids[:0], int(n))[:n]
		var e [7]error
		e[0] = p.readColumn(tID, row, n, func(i int64, v parquet.Value) { copy(ids[i][:], v.ByteArray()) })
		start, e[1] = p.int64s(tStart, row, n, start)
		dur, e[2] = p.int64s(tDuration, row, n, dur)
		count, e[3] = p.int64s(tSpanCount, row, n, count)
		svc, err4 := p.strs(tRootService, row, n)
		name, err5 := p.strs(tRootName, row, n)
		errs = slices.Grow(errs[:0], int(n))[:n]
		e[4], e[5] = err4, err5
		e[6] = p.readColumn(tErrorCount, row, n, func(i int64, v parquet.Value) { errs[i] = v.Int32() })
		ratios = slices.Grow(ratios[:0], int(n))[:n]
		truncs = slices.Grow(truncs[:0], int(n))[:n]
		e7 := p.readColumn(tSampleRatio, row, n, func(i int64, v parquet.Value) { ratios[i] = v.Double() })
		e8 := p.readColumn(tTruncated, row, n, func(i int64, v parquet.Value) { truncs[i] = v.Boolean() })
		if err := errors.Join(append(e[:], e7, e8)...); err != nil {
			return r.wrap(err)
		}
		var s TraceSummary
		for i := range n {
			s = TraceSummary{ids[i], start[i], dur[i], svc[i], name[i], count[i], errs[i], ratios[i], truncs[i]}
			if !fn(&s) {
				return nil
			}
		}
	}
	return nil
}
