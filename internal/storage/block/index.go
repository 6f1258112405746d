package block

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/ariadne-tracing/ariadne/internal/storage/quantilesketch"
)

// The index file (format 3 on) holds what search and metrics would otherwise compute from the
// columns on first use, and what a restart would have to compute again for every block:
//
//   - span aggregates: for each (resource+scope group, span name, status code, kind) and each
//     time bucket (AggBucket), the count of spans that started in it and their durations (sum,
//     min, max and a quantile sketch). TraceQL metrics such as { } | rate() by (name) add these
//     up instead of reading any span.
//   - span attribute values: the distinct value keys of each span attribute key (up to
//     MaxIndexValues), which answer tag values and rule blocks out for "=" conditions.
//
// It is small (a few kilobytes per minute of data), zstd-compressed and read whole on first use.
// Blocks of format 2 have none; readers compute the values from the columns then, as before,
// and metrics read spans.

const fileIndex = "index"

// indexEncoding is the version of the index file's layout, inside the compressed bytes.
const indexEncoding = 1

// SketchAccuracy is the relative accuracy of the duration sketches in the index; TraceQL
// metrics must use the same so that merged sketches answer as a sketch of the spans would.
const SketchAccuracy = 0.01

// MaxIndexValues caps the values listed per span attribute key; past it the key's list is
// marked incomplete (a request ID has as many values as spans, and listing those is no help).
const MaxIndexValues = 1000

// maxAggBuckets bounds the writer's aggregates: past it the bucket width grows to the next of
// aggWidths and buckets merge, so a compacted day-long block stays a few megabytes.
const maxAggBuckets = 1 << 14

// aggWidths are the bucket widths in seconds, each a multiple of the one before, so that
// buckets of one width merge exactly into the next.
var aggWidths = []int64{1, 5, 10, 30, 60, 300, 600, 1800, 3600, 21600, 86400}

// AggCombo is what an aggregate row is keyed by besides time.
type AggCombo struct {
	Group  int32 // index into Reader.Groups
	Name   string
	Status int32 // OTLP status code; 0 also when the span has no status
	Kind   int32
}

// AggBucket is the spans of one combo that started in (Bucket·Width, (Bucket+1)·Width]
// nanoseconds: the same half-open step TraceQL metrics count a span in, so that steps made of
// whole buckets count exactly the spans a scan would.
type AggBucket struct {
	Combo    int32 // index into Index.Combos
	Bucket   int64
	Count    uint64
	Sum      float64 // durations in seconds
	Min, Max float64
	sketch   []byte
}

// Sketch decodes the bucket's quantile sketch of durations in seconds.
func (b *AggBucket) Sketch() (*quantilesketch.Sketch, error) {
	s, _, err := quantilesketch.Decode(b.sketch, SketchAccuracy)
	return s, err
}

// AttrValues is the distinct values of one span attribute key, as value keys (ValueKey*).
type AttrValues struct {
	Values []string // sorted
	// Complete is false past MaxIndexValues, or when some value is an array, map or bytes
	// (Raw), whose elements the writer does not list: the caller must read the column then.
	Complete bool
	Raw      bool
}

// Index is a block's index file, decoded.
type Index struct {
	Width   int64 // bucket width, nanoseconds
	Combos  []AggCombo
	Buckets []AggBucket // by combo, then bucket
	Values  map[string]*AttrValues
}

// Value keys: a type byte, then the value. They match the head's (head.IntKey and friends), so
// one set of code compares both.
const (
	ValueKeyString = 's'
	ValueKeyInt    = 'i'
	ValueKeyDouble = 'd'
	ValueKeyBool   = 'b'
)

// indexBuilder accumulates a block's index as traces are written.
type indexBuilder struct {
	width  int64 // seconds
	names  map[string]int32
	nameOf []string
	combos map[comboKey]int32
	list   []AggCombo
	// last is, per combo, the bucket its latest span fell in: spans of one combo mostly share
	// a bucket, and this saves the buckets map a lookup per span.
	last    []lastBucket
	buckets map[bucketKey]*aggAcc
	values  map[string]*valueAcc
	scratch []byte
}

type comboKey struct{ group, name, status, kind int32 }

type bucketKey struct {
	combo  int32
	bucket int64
}

type lastBucket struct {
	bucket int64
	acc    *aggAcc
}

type aggAcc struct {
	count    uint64
	sum      float64
	min, max float64
	sketch   *quantilesketch.Sketch
}

type valueAcc struct {
	// last is the latest value key listed: a span attribute often repeats its value from
	// span to span, and this saves the value map a lookup.
	last     []byte
	vals     map[string]struct{}
	complete bool
	raw      bool
	// plain is set once the key has had more than MaxIndexValues distinct values, or its
	// first plainRows rows nearly all had distinct values (an ID): its string values go to the
	// raw column from then on (see attrsSchema). rows counts the key's rows until then.
	plain bool
	rows  int
}

// A key whose first plainRows rows had at most plainRows/64 repeated values is taken for an
// identifier before MaxIndexValues: its values are kept out of the str dictionary from there,
// which keeps a thousand IDs per key out of every block's dictionary and its indexes a few bits
// narrower. A low-cardinality key cannot pass (300 routes drawn 128 times repeat about 27
// times); a key it wrongly takes costs only reading its values as plain strings.
const plainRows = 128

func (x *indexBuilder) reset() {
	x.width = aggWidths[0]
	x.names = map[string]int32{}
	x.nameOf = x.nameOf[:0]
	x.combos = map[comboKey]int32{}
	x.list = x.list[:0]
	clear(x.last)
	x.last = x.last[:0]
	x.buckets = map[bucketKey]*aggAcc{}
	x.values = map[string]*valueAcc{}
}

// bucketOf is the bucket of a span that started at ns: (k·w, (k+1)·w] holds it.
func bucketOf(ns int64, width int64) int64 {
	if ns <= 0 {
		return -1
	}
	return (ns - 1) / (width * 1e9)
}

// addSpan counts one span.
func (x *indexBuilder) addSpan(group int32, name []byte, status, kind int32, start, end uint64) {
	ni, ok := x.names[string(name)]
	if !ok {
		ni = int32(len(x.nameOf))
		s := string(name)
		x.names[s] = ni
		x.nameOf = append(x.nameOf, s)
	}
	ck := comboKey{group, ni, status, kind}
	ci, ok := x.combos[ck]
	if !ok {
		ci = int32(len(x.list))
		x.combos[ck] = ci
		x.list = append(x.list, AggCombo{Group: group, Name: x.nameOf[ni], Status: status, Kind: kind})
		x.last = append(x.last, lastBucket{})
	}
	// As search reads them: a start past 2262 saturates, and the duration is end−start as int64.
	st := saturate(start)
	d := float64(int64(end-start)) / 1e9
	bk := bucketKey{ci, bucketOf(st, x.width)}
	a := x.last[ci].acc
	if a == nil || x.last[ci].bucket != bk.bucket {
		a = x.buckets[bk]
		if a == nil {
			if len(x.buckets) >= maxAggBuckets && x.coarsen() {
				bk.bucket = bucketOf(st, x.width)
				a = x.buckets[bk]
			}
			if a == nil {
				a = &aggAcc{min: d, max: d, sketch: quantilesketch.New(SketchAccuracy)}
				x.buckets[bk] = a
			}
		}
		x.last[ci] = lastBucket{bk.bucket, a}
	}
	a.count++
	a.sum += d
	a.min, a.max = min(a.min, d), max(a.max, d)
	a.sketch.Add(d)
}

// coarsen moves the buckets to the next width, merging those that fall together. It reports
// false at the widest.
func (x *indexBuilder) coarsen() bool {
	i := slices.Index(aggWidths, x.width)
	if i < 0 || i+1 == len(aggWidths) {
		return false
	}
	m := aggWidths[i+1] / x.width
	x.width = aggWidths[i+1]
	// Merged buckets leave the accumulators the cache points to.
	clear(x.last)
	old := x.buckets
	x.buckets = make(map[bucketKey]*aggAcc, len(old)/2)
	for k, a := range old {
		// Floor division keeps (k·w, (k+1)·w] inside (j·mw, (j+1)·mw].
		j := k.bucket / m
		if k.bucket < 0 && k.bucket%m != 0 {
			j--
		}
		nk := bucketKey{k.combo, j}
		if b := x.buckets[nk]; b != nil {
			b.count += a.count
			b.sum += a.sum
			b.min, b.max = min(b.min, a.min), max(b.max, a.max)
			b.sketch.Merge(a.sketch)
		} else {
			x.buckets[nk] = a
		}
	}
	return true
}

// addAttr lists one span attribute's value, and reports whether it is a non-empty string of
// a key of high cardinality (valueAcc.plain), which the writer keeps out of the str column's
// dictionary (ValueStringPlain). The writer asks before it writes the row, so the value that
// passes the count is the first one kept out.
func (x *indexBuilder) addAttr(a *attrRec) (plain bool) {
	v := x.values[string(a.key)]
	if v == nil {
		v = &valueAcc{vals: map[string]struct{}{}, complete: true}
		x.values[string(a.key)] = v
	}
	x.listAttr(v, a)
	return v.plain && a.typ == ValueString && len(a.str) > 0
}

func (x *indexBuilder) listAttr(v *valueAcc, a *attrRec) {
	if !v.complete {
		return
	}
	k := x.scratch[:0]
	switch a.typ {
	case ValueString:
		k = append(append(k, ValueKeyString), a.str...)
	case ValueInt:
		k = binary.LittleEndian.AppendUint64(append(k, ValueKeyInt), a.num)
	case ValueDouble:
		k = binary.LittleEndian.AppendUint64(append(k, ValueKeyDouble), a.num)
	case ValueBool:
		b := byte(0)
		if a.bool {
			b = 1
		}
		k = append(k, ValueKeyBool, b)
	case ValueRaw:
		v.complete, v.raw, v.vals = false, true, nil
		return
	default:
		return
	}
	x.scratch = k
	if !v.plain {
		v.rows++
	}
	if bytes.Equal(k, v.last) && v.last != nil {
		return
	}
	v.last = append(v.last[:0], k...)
	if _, ok := v.vals[string(k)]; ok {
		return
	}
	if len(v.vals) >= MaxIndexValues {
		v.complete, v.vals, v.plain = false, nil, true
		return
	}
	v.vals[string(k)] = struct{}{}
	if !v.plain && v.rows >= plainRows && len(v.vals) >= v.rows-v.rows/64 {
		v.plain = true
	}
}

var (
	indexEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	indexDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
)

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendFloat(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

// encode writes the index file's bytes.
func (x *indexBuilder) encode(dst *bytes.Buffer) {
	b := []byte{indexEncoding}
	b = binary.AppendUvarint(b, uint64(x.width*1e9))
	b = binary.AppendUvarint(b, uint64(len(x.list)))
	for _, c := range x.list {
		b = binary.AppendVarint(b, int64(c.Group))
		b = appendString(b, c.Name)
		b = binary.AppendVarint(b, int64(c.Status))
		b = binary.AppendVarint(b, int64(c.Kind))
	}
	keys := make([]bucketKey, 0, len(x.buckets))
	for k := range x.buckets {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b bucketKey) int {
		return cmp.Or(cmp.Compare(a.combo, b.combo), cmp.Compare(a.bucket, b.bucket))
	})
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		a := x.buckets[k]
		b = binary.AppendUvarint(b, uint64(k.combo))
		b = binary.AppendVarint(b, k.bucket)
		b = binary.AppendUvarint(b, a.count)
		b = appendFloat(appendFloat(appendFloat(b, a.sum), a.min), a.max)
		sk := a.sketch.AppendBinary(nil)
		b = append(binary.AppendUvarint(b, uint64(len(sk))), sk...)
	}
	names := make([]string, 0, len(x.values))
	for k := range x.values {
		names = append(names, k)
	}
	slices.Sort(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		v := x.values[k]
		flags := byte(0)
		if v.complete {
			flags |= 1
		}
		if v.raw {
			flags |= 2
		}
		b = append(appendString(b, k), flags)
		vals := make([]string, 0, len(v.vals))
		for s := range v.vals {
			vals = append(vals, s)
		}
		slices.Sort(vals)
		b = binary.AppendUvarint(b, uint64(len(vals)))
		for _, s := range vals {
			b = appendString(b, s)
		}
	}
	dst.Reset()
	dst.Write(indexEncoder.EncodeAll(b, nil))
}

var errIndexCorrupt = errors.New("index: corrupt encoding")

// indexReader decodes the index file's fields; the first error sticks.
type indexReader struct {
	b   []byte
	err error
}

func (r *indexReader) fail() {
	if r.err == nil {
		r.err = errIndexCorrupt
	}
	r.b = nil
}

func (r *indexReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *indexReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *indexReader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *indexReader) float() float64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

// count reads a length and checks it against what is left, at least min bytes per item, so
// that a damaged length cannot ask for a huge allocation.
func (r *indexReader) count(min int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/min) {
		r.fail()
		return 0
	}
	return int(n)
}

func decodeIndex(raw []byte) (*Index, error) {
	b, err := indexDecoder.DecodeAll(raw, nil)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if len(b) == 0 || b[0] != indexEncoding {
		return nil, fmt.Errorf("index: unknown encoding")
	}
	r := &indexReader{b: b[1:]}
	x := &Index{Width: int64(r.uvarint()), Values: map[string]*AttrValues{}}
	x.Combos = make([]AggCombo, r.count(4))
	for i := range x.Combos {
		x.Combos[i] = AggCombo{Group: int32(r.varint()), Name: string(r.bytes()), Status: int32(r.varint()), Kind: int32(r.varint())}
	}
	x.Buckets = make([]AggBucket, r.count(28))
	for i := range x.Buckets {
		c := r.uvarint()
		if c >= uint64(len(x.Combos)) {
			r.fail()
		}
		x.Buckets[i] = AggBucket{Combo: int32(c), Bucket: r.varint(), Count: r.uvarint(), Sum: r.float(), Min: r.float(), Max: r.float(), sketch: r.bytes()}
	}
	for range r.count(3) {
		k := string(r.bytes())
		if len(r.b) == 0 {
			r.fail()
			break
		}
		flags := r.b[0]
		r.b = r.b[1:]
		v := &AttrValues{Complete: flags&1 != 0, Raw: flags&2 != 0}
		v.Values = make([]string, r.count(1))
		for i := range v.Values {
			v.Values[i] = string(r.bytes())
		}
		x.Values[k] = v
	}
	if r.err == nil && x.Width <= 0 {
		r.fail()
	}
	if r.err != nil {
		return nil, r.err
	}
	return x, nil
}

// indexState is a reader's lazily loaded index.
type indexState struct {
	mu   sync.Mutex
	done bool
	idx  *Index
	err  error
}

// Index returns the block's index, read on first use and kept while the reader lives; nil
// without error when the block was written before format 3 and has none. A damaged index
// file is an error wrapping ErrDamaged; the block's columns are still sound, so a caller can
// go on by reading them.
func (r *Reader) Index(ctx context.Context) (*Index, error) {
	if _, ok := r.meta.Files[fileIndex]; !ok {
		return nil, nil
	}
	x := &r.index
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done {
		return x.idx, x.err
	}
	idx, err := r.loadIndex(ctx)
	if err != nil && ctx.Err() != nil {
		return nil, err // the caller's cancellation says nothing about the block: try again next time
	}
	if err != nil {
		err = fmt.Errorf("block %s: %w", r.meta.ID, damaged(err))
	}
	x.idx, x.err, x.done = idx, err, true
	return idx, err
}

func (r *Reader) loadIndex(ctx context.Context) (*Index, error) {
	rc, err := r.store.Get(ctx, blockDir(r.meta.ID)+fileIndex)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if n := r.meta.Files[fileIndex]; n != int64(len(raw)) {
		return nil, fmt.Errorf("index: %d bytes, meta.json says %d", len(raw), n)
	}
	if sum, ok := r.meta.Checksums[fileIndex]; ok && sum != crc32.Checksum(raw, castagnoli) {
		return nil, errors.New("index: checksum mismatch")
	}
	return decodeIndex(raw)
}
