// Package block writes and reads immutable trace blocks: the columnar, compressed form that
// complete traces take once they leave the head.
//
// A block is one folder, blocks/<id>/, of flat Parquet files that share row order, so that a
// trace is one contiguous row range in every file. Rows are sorted by trace ID, within each
// run when the block has runs (format 5, see Run: time-ordered row ranges, which compaction
// writes so that a search for the newest traces reads only the newest runs):
//
//	traces.parquet       one row per trace, sorted by trace ID: the search summary (start,
//	                     duration, root service and name, span and error counts) and the first
//	                     row of the trace in each other file.
//	spans.parquet        one row per span, by trace and then start time. The parent is an index
//	                     within the trace when the parent is in the block's copy of the trace, and
//	                     the raw parent ID otherwise; start is an offset from the trace start.
//	attrs.parquet        span attributes, one row per key/value: owner span row, key, type and a
//	                     column per scalar type; other values keep their AnyValue bytes.
//	event_attrs.parquet  event attributes, same shape, owner is the event row.
//	link_attrs.parquet   link attributes, same shape, owner is the link row.
//	events.parquet       span row, time offset from the span start, name, dropped count.
//	links.parquet        span row, trace and span IDs, trace state, flags, dropped count.
//	groups.parquet       distinct resource+scope pairs as message bytes, with the service and
//	                     scope names beside them for search.
//	bloom                bloom filter of the trace IDs, loaded whole at Open.
//	index                (format 3 on) span aggregates and attribute value lists, read on
//	                     first use; see index.go.
//	meta.json            written last: a folder without it is an unfinished write.
//
// Why this shape:
//   - Flat files with required columns keep the writer on parquet-go's column-at-a-time path,
//     with no reflection and no repetition levels; nesting spans inside traces would make every
//     span column carry levels and force the row-by-row writer.
//   - Span attributes live in their own file so a TraceQL condition such as
//     span.http.method = "GET" reads only the key and str columns of that file, not the event
//     and link attributes that would dilute them in a shared file.
//   - Resources and scopes are few per block, so they are stored whole as message bytes: that
//     round-trips every field, including ones newer than this code, and search decodes the
//     handful of rows at open.
//   - Offsets (span start from trace start, event time from span start) and small parent
//     indexes turn 8-byte timestamps and IDs into values that DELTA_BINARY_PACKED shrinks to a
//     few bytes. Every integer column is delta-encoded: enums and counts that are nearly always
//     one value cost nothing, and, unlike PLAIN, they do not push 4 or 8 bytes per row through
//     zstd, which was a third of the writer's time when they were PLAIN.
//   - Random IDs (span, link) are DELTA_LENGTH_BYTE_ARRAY and trace IDs FIXED_LEN, all without
//     compression: they cost their 8 or 16 bytes either way, and zstd over them only burns CPU.
//   - In attribute files the double column is optional, so only doubles are stored; the int
//     column is required and delta-encoded (zeros for other types). Measured against a
//     dictionary-encoded optional int column it is 0.16 bytes per span larger and 25% faster
//     to write.
//   - Low-cardinality strings that search compares (names, keys, string values, services) are
//     dictionary-encoded, with dictionaries capped so a high-cardinality column falls back to
//     plain instead of making every lookup read a huge dictionary page. Rare strings (status
//     message, trace state) skip the dictionary. From format 6, string attribute values of
//     high-cardinality keys (IDs) are kept out of the shared str dictionary altogether, in the
//     raw column (see attrsSchema), so that they cannot fill it and push "GET" out of it.
//   - Pages are cut at 32 KiB uncompressed (WriteOptions.PageSize). On the benchmark shape,
//     4/8/16/32 KiB pages gave 25.1/23.1/22.1/21.6 bytes per span, and FindTrace stays well
//     under a millisecond at 32 KiB, so size won.
//   - Trace lookup tests the in-memory bloom filter, binary-searches the first trace ID of each
//     trace_id page (from the Parquet column index, loaded at open) of each run, and
//     binary-searches that one page in its encoded form; the trace's rows are then read from
//     the one or two pages that hold them in each column.
//
// Measured on the benchmark shape (10-span traces, two short attributes per span, random IDs,
// log-normal durations) on 2 vCPUs: about 21.6 bytes per span on disk, 1.3 to 1.6 million spans
// per CPU-second written, FindTrace about 0.6 ms for a present trace with 10M spans in 50
// blocks and a few microseconds for an absent one. See BenchmarkWrite and BenchmarkFindTrace.
package block

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/storage/partial"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// FormatVersion is written to meta.json; readers refuse versions they do not know.
//   - 2: the Parquet files, bloom filter and meta.json described above.
//   - 3: adds the index file (see index.go): span aggregates for TraceQL metrics and the
//     distinct values of span attributes, so neither is computed from the columns.
//   - 5: rows may be in time-ordered runs (Meta.Runs, see Run). A block without the list is
//     one run sorted by trace ID, as every block of formats 2 and 3.
//   - 6: format 5, with string values of high-cardinality keys kept out of the str column's
//     dictionary, in the raw column with types ValueStringPlain and ValueStringPlainNew (see
//     attrsSchema), so that the dictionary holds the low-cardinality values and a reader can
//     count them from dictionary indexes alone. The files' schemas are those of format 3.
//     (4 was claimed for this change and never written.)
const FormatVersion = 6

// knownFormat reports whether this code reads blocks of format v: version 2 blocks are read
// as they always were, without an index; 3 adds the index; 5 the runs; 6 the plain strings,
// whose types no older block has, so that no reader needs to ask the version.
func knownFormat(v int) bool { return v == 2 || v == 3 || v == 5 || v == FormatVersion }

// Prefix is the folder holding all blocks in a store.
const Prefix = "blocks/"

// Trace is one complete trace handed over by the head.
type Trace struct {
	ID    [16]byte
	Spans []Span // any order
	// SampleRatio is the probability with which tail sampling kept the trace, so that counts
	// over stored traces can be scaled back (a trace kept at 0.1 stands for ten). 0 means 1:
	// kept unconditionally.
	SampleRatio float64
	// Truncated marks a trace that hit the spans-per-trace limit: spans past it were refused.
	Truncated bool
	// Split marks a trace known to have other parts outside this block (an earlier part cut
	// from the head before these spans arrived). The block lists such traces in Meta.Split.
	Split bool
	// Start is the earliest start of the spans (unix nanoseconds) when the caller knows it, as
	// the head does; 0 has Write read it from the spans when it puts a block in runs.
	Start uint64
}

// Span is one span in wire form.
type Span struct {
	// Group is the span's resource and scope. Spans from the same request share the pointer;
	// distinct pointers with equal bytes are stored once too.
	Group *otlpwire.Group
	// Raw is one opentelemetry.proto.trace.v1.Span message. Its trace_id field is ignored:
	// the trace's ID is authoritative.
	Raw []byte
}

// Meta describes a complete block. It is what List returns, so it holds what a querier needs
// to decide whether to open a block at all.
type Meta struct {
	ID         string           `json:"id"`
	Version    int              `json:"version"`
	Created    time.Time        `json:"created"`
	MinTraceID string           `json:"minTraceID"` // hex
	MaxTraceID string           `json:"maxTraceID"`
	MinStart   int64            `json:"minStartUnixNano"`
	MaxEnd     int64            `json:"maxEndUnixNano"`
	Traces     int64            `json:"traces"`
	Spans      int64            `json:"spans"`
	Events     int64            `json:"events"`
	Links      int64            `json:"links"`
	Attrs      int64            `json:"attrs"`
	EventAttrs int64            `json:"eventAttrs"`
	LinkAttrs  int64            `json:"linkAttrs"`
	Groups     int64            `json:"groups"`
	Bytes      int64            `json:"bytes"` // all files, meta.json excluded
	Files      map[string]int64 `json:"files"` // size of each file
	// CRC32C (Castagnoli) of each file. Open checks every file's size against Files and the
	// bloom filter's checksum, which it reads whole anyway: a bloom filter with cleared bits
	// would answer "not here" for traces that are. Blocks written before checksums have none.
	Checksums map[string]uint32 `json:"crc32c,omitempty"`
	// Split lists the traces of this block known to have parts elsewhere (other blocks or the
	// head), so a search can judge them whole without looking for parts of every trace.
	Split []SplitTrace `json:"split,omitempty"`
	// Level is the block's compaction level: 0 from the head, one more than its inputs'
	// highest once merged.
	Level int `json:"level,omitempty"`
	// Runs (format 5) splits the rows into runs, in this order; empty means one run of every
	// trace. See Run.
	Runs []Run `json:"runs,omitempty"`
}

// Run is a contiguous range of a block's rows (the next Traces rows of traces.parquet, and
// their rows in every other file), sorted by trace ID within it, whose traces started between
// MinStart and MaxStart (unix nanoseconds). A block sorted by trace ID alone puts its newest
// few thousand traces on every page, so a search for the newest traces would decode the whole
// block; compaction instead writes its inputs' runs grouped by start time (MergeRuns), so that
// such a search reads only the newest runs, and a search of a time range only the runs in it.
// Each run after the first starts a row group of traces.parquet, so that the trace-ID page
// index is sorted within each run, and a trace lookup searches each run (a handful).
//
// A trace's parts can sit in two runs of one block (a split trace whose parts compaction put in
// different runs); readers treat them as they treat parts in two blocks, and the block's Split
// list names such traces as it names any split trace.
type Run struct {
	Traces   int64 `json:"traces"`
	MinStart int64 `json:"minStartUnixNano"`
	MaxStart int64 `json:"maxStartUnixNano"`
}

// ErrDamaged is wrapped by errors that come from a block's content: a missing, truncated or
// undecodable file, a checksum that does not match, an unknown format version. A caller that
// gets one can skip the block and say its answer is partial; the store quarantines it.
var ErrDamaged = errors.New("block damaged")

// damaged wraps err as ErrDamaged unless it is the caller's cancellation or a resource limit
// of this process, which say nothing about the block.
func damaged(err error) error {
	if err == nil || errors.Is(err, ErrDamaged) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.EMFILE) ||
		errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, fs.ErrClosed) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrDamaged, err)
}

// SplitTrace is a trace of a block that has parts elsewhere, with the start of this block's
// part: the whole trace starts no later.
type SplitTrace struct {
	ID    string `json:"id"` // hex
	Start int64  `json:"startUnixNano"`
}

func blockDir(id string) string { return Prefix + id + "/" }

// List returns the metas of the complete blocks in store, sorted by ID (and so by creation
// time). Folders without meta.json are skipped: they are writes in progress or left by a crash.
func List(ctx context.Context, store objstore.Store) ([]Meta, error) {
	names, err := store.List(ctx, Prefix)
	if err != nil {
		return nil, fmt.Errorf("block: list: %w", err)
	}
	var metas []Meta
	for _, n := range names {
		id, file, ok := strings.Cut(strings.TrimPrefix(n, Prefix), "/")
		if !ok || file != fileMeta {
			continue
		}
		m, err := readMeta(ctx, store, id)
		if errors.Is(err, objstore.ErrNotFound) {
			continue // deleted since List
		}
		if err != nil {
			return nil, err
		}
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b Meta) int { return strings.Compare(a.ID, b.ID) })
	return metas, nil
}

// Inventory is what a store's block folder holds, as Survey finds it.
type Inventory struct {
	Complete []Meta // sorted by ID
	// Damaged are blocks whose meta.json cannot be read or names a format this code does not
	// know; each error wraps ErrDamaged.
	Damaged map[string]error
	// Incomplete are folders without meta.json: a write in progress, one a crash interrupted
	// on a store without atomic publish, or a block whose meta.json was lost.
	Incomplete []string
}

// Survey lists every block folder in store and sorts them into complete, damaged and
// incomplete, so that one bad block never stops a store from opening the others.
func Survey(ctx context.Context, store objstore.Store) (Inventory, error) {
	names, err := store.List(ctx, Prefix)
	if err != nil {
		return Inventory{}, fmt.Errorf("block: list: %w", err)
	}
	inv := Inventory{Damaged: map[string]error{}}
	hasMeta := map[string]bool{}
	var ids []string
	for _, n := range names {
		id, file, ok := strings.Cut(strings.TrimPrefix(n, Prefix), "/")
		if !ok {
			continue
		}
		if _, seen := hasMeta[id]; !seen {
			ids = append(ids, id)
			hasMeta[id] = false
		}
		if file == fileMeta {
			hasMeta[id] = true
		}
	}
	for _, id := range ids {
		if !hasMeta[id] {
			inv.Incomplete = append(inv.Incomplete, id)
			continue
		}
		m, err := readMeta(ctx, store, id)
		switch {
		case errors.Is(err, objstore.ErrNotFound):
			continue // deleted since List
		case errors.Is(err, ErrDamaged):
			inv.Damaged[id] = err
		case err != nil:
			return Inventory{}, err
		default:
			inv.Complete = append(inv.Complete, m)
		}
	}
	slices.SortFunc(inv.Complete, func(a, b Meta) int { return strings.Compare(a.ID, b.ID) })
	return inv, nil
}

// QuarantinePrefix is where Quarantine moves damaged blocks, each to a folder of its ID.
const QuarantinePrefix = "quarantine/blocks/"

// Quarantine moves block id out of the store's blocks, with a note of why, so that it is
// neither read nor compacted nor deleted by retention, and stays for an operator to inspect.
// A second damaged copy of one ID gets a suffix rather than replacing the first.
func Quarantine(ctx context.Context, store objstore.Store, id string, reason error) (string, error) {
	dest := QuarantinePrefix + id + "/"
	if existing, err := store.List(ctx, dest); err == nil && len(existing) > 0 {
		dest = QuarantinePrefix + id + "-" + NewID(time.Now()) + "/"
	}
	if err := objstore.MovePrefix(ctx, store, blockDir(id), dest); err != nil {
		return "", fmt.Errorf("block %s: quarantine: %w", id, err)
	}
	note := fmt.Sprintf("quarantined %s\n%v\n", time.Now().UTC().Format(time.RFC3339), reason)
	// The note is for people; the block is already out of the way if it cannot be written.
	_ = store.Put(ctx, dest+"QUARANTINED.txt", strings.NewReader(note))
	return dest, nil
}

// Incomplete returns the IDs of block folders without meta.json, for a compactor or startup
// sweep to Delete once it knows no writer is still filling them.
func Incomplete(ctx context.Context, store objstore.Store) ([]string, error) {
	names, err := store.List(ctx, Prefix)
	if err != nil {
		return nil, fmt.Errorf("block: list: %w", err)
	}
	seen := map[string]bool{}
	var ids []string
	for _, n := range names {
		id, file, ok := strings.Cut(strings.TrimPrefix(n, Prefix), "/")
		if !ok {
			continue
		}
		if _, known := seen[id]; !known {
			seen[id] = false
			ids = append(ids, id)
		}
		if file == fileMeta {
			seen[id] = true
		}
	}
	return slices.DeleteFunc(ids, func(id string) bool { return seen[id] }), nil
}

func readMeta(ctx context.Context, store objstore.Store, id string) (Meta, error) {
	rc, err := store.Get(ctx, blockDir(id)+fileMeta)
	if err != nil {
		return Meta{}, fmt.Errorf("block %s: meta: %w", id, err)
	}
	defer rc.Close()
	var m Meta
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return Meta{}, fmt.Errorf("block %s: decode meta: %w", id, damaged(err))
	}
	if !knownFormat(m.Version) {
		return Meta{}, fmt.Errorf("block %s: %w: format version %d, want 2, 3 or %d", id, ErrDamaged, m.Version, FormatVersion)
	}
	if m.ID != id {
		return Meta{}, fmt.Errorf("block %s: %w: meta.json names block %q", id, ErrDamaged, m.ID)
	}
	return m, nil
}

// Delete removes a block. meta.json goes first so that a crash part-way leaves an incomplete
// block, which List ignores, rather than a complete-looking one with missing files.
func Delete(ctx context.Context, store objstore.Store, id string) error {
	if err := store.Delete(ctx, blockDir(id)+fileMeta); err != nil {
		return fmt.Errorf("block %s: delete: %w", id, err)
	}
	names, err := store.List(ctx, blockDir(id))
	if err != nil {
		return fmt.Errorf("block %s: delete: %w", id, err)
	}
	for _, n := range names {
		if err := store.Delete(ctx, n); err != nil {
			return fmt.Errorf("block %s: delete: %w", id, err)
		}
	}
	return nil
}

// crockford is the ULID alphabet: sortable as text, no ambiguous letters.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns a 26-character ID that sorts by t (millisecond precision) and is unique by 80
// random bits, in the ULID layout.
func NewID(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	if _, err := io.ReadFull(rand.Reader, b[6:]); err != nil {
		panic(fmt.Sprintf("block: crypto/rand: %v", err))
	}
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	// 128 bits as 26 base-32 digits, the first carrying the top 3 bits.
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// SkipDamaged reports whether err says a block is damaged. If it does, it notes in ctx's
// partial report (see package partial) that the answer lacks what the block holds, so that the
// caller can go on without the block and the user still learns the answer is incomplete.
func SkipDamaged(ctx context.Context, err error) bool {
	if !errors.Is(err, ErrDamaged) {
		return false
	}
	partial.Note(ctx, "a damaged block was skipped: "+err.Error())
	return true
}
