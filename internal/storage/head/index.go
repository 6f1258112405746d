package head

import (
	"encoding/binary"
	"math"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// The head's search index is kept up to date as spans arrive, under the shard lock the append
// already holds, so that a search reads a few words per trace instead of decoding every span:
//
//   - each trace has a Signature: a 256-bit Bloom filter of its span names and of the key=value
//     pairs of its span attributes. A search for name = "x" && span.k = 7 decodes only the traces
//     whose signature has both; the filter never misses, it only lets a few extra through.
//   - each shard keeps, per span attribute key, the distinct values its traces have had (up to
//     maxIndexedValues, past which the key is marked as too varied). That answers tag names and
//     values without decoding, and rules the whole head out for a value no trace has.
//
// Values are keyed by their exact type (ValueKey), because tag values are typed; the signature
// hashes numbers as float64 so that an int attribute 7 and the TraceQL literal 7.0 meet, as the
// query language compares them.

// noIndex turns index upkeep off, for BenchmarkAppend's comparison only.
var noIndex bool

// maxIndexedValues caps the distinct values remembered per key and shard: a key such as a request
// ID has as many values as spans, and listing or pruning by those is not worth the memory.
const maxIndexedValues = 256

// Signature is a trace's Bloom filter; see MayContain.
type Signature [4]uint64

// signatureHashes is how many bits each item sets: with about twenty items per trace (ten spans,
// a few distinct attribute values each) two bits give a false-positive rate near 2%.
const signatureHashes = 2

func (s *Signature) add(h uint64) {
	for range signatureHashes {
		s[h>>6&3] |= 1 << (h & 63)
		h = h>>8 | h<<56
	}
}

// Has reports whether every bit of q is set in s: false means the trace holds none of what q was
// built from.
func (s *Signature) Has(q Signature) bool {
	return s[0]&q[0] == q[0] && s[1]&q[1] == q[1] && s[2]&q[2] == q[2] && s[3]&q[3] == q[3]
}

// AddName adds the bits of a span name to a query signature.
func (s *Signature) AddName(name string) {
	var buf []byte
	s.add(nameHash(&buf, []byte(name)))
}

// AddString adds the bits of span attribute key = string value.
func (s *Signature) AddString(key, v string) {
	var buf []byte
	s.add(attrHash(&buf, []byte(key), 's', []byte(v)))
}

// AddNumber adds the bits of span attribute key = numeric value (int or double).
func (s *Signature) AddNumber(key string, f float64) {
	var b [8]byte
	var buf []byte
	s.add(attrHash(&buf, []byte(key), 'n', numBytes(&b, f)))
}

// AddBool adds the bits of span attribute key = bool value.
func (s *Signature) AddBool(key string, v bool) {
	var buf []byte
	s.add(attrHash(&buf, []byte(key), 'b', boolBytes(v)))
}

func numBytes(b *[8]byte, f float64) []byte {
	if f == 0 {
		f = 0 // -0 equals 0
	}
	binary.LittleEndian.PutUint64(b[:], math.Float64bits(f))
	return b[:]
}

func boolBytes(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

// The hash functions build their input in *buf, scratch the caller keeps, so that hashing a
// span's items neither allocates nor clears a buffer each time.

func nameHash(buf *[]byte, name []byte) uint64 {
	*buf = append(append((*buf)[:0], 'N'), name...)
	return xxhash.Sum64(*buf)
}

// valueHash keys shardIndex.seen: an attribute key and a value key.
func valueHash(buf *[]byte, key, valueKey []byte) uint64 {
	b := binary.LittleEndian.AppendUint32(append((*buf)[:0], 'V'), uint32(len(key)))
	*buf = append(append(b, key...), valueKey...)
	return xxhash.Sum64(*buf)
}

func attrHash(buf *[]byte, key []byte, kind byte, v []byte) uint64 {
	b := binary.LittleEndian.AppendUint32(append((*buf)[:0], 'A', kind), uint32(len(key)))
	*buf = append(append(b, key...), v...)
	return xxhash.Sum64(*buf)
}

// Value key encodings: one type byte, then the value.
const (
	ValueString = 's' // UTF-8 text; bytes values as lower-case hex, as search shows them
	ValueInt    = 'i' // 8 bytes little-endian int64
	ValueDouble = 'd' // 8 bytes little-endian float64 bits
	ValueBool   = 'b' // one byte, 0 or 1
)

// IntKey, DoubleKey, StringKey and BoolKey build the value keys Values reports and HasValue takes.
func IntKey(v int64) string {
	var b [9]byte
	b[0] = ValueInt
	binary.LittleEndian.PutUint64(b[1:], uint64(v))
	return string(b[:])
}

// DoubleKey: see IntKey.
func DoubleKey(v float64) string {
	var b [9]byte
	b[0] = ValueDouble
	binary.LittleEndian.PutUint64(b[1:], math.Float64bits(v))
	return string(b[:])
}

// StringKey: see IntKey.
func StringKey(v string) string { return string(ValueString) + v }

// BoolKey: see IntKey.
func BoolKey(v bool) string { return string([]byte{ValueBool, boolBytes(v)[0]}) }

// touch records that k was seen at now: in place when m has it (a lookup by []byte key does not
// allocate, an assignment would), as a new entry while m has fewer than limit. It reports false
// when k was left out.
func touch(m map[string]*int64, k []byte, now int64, limit int) bool {
	if p := m[string(k)]; p != nil {
		*p = now
		return true
	}
	if len(m) >= limit {
		return false
	}
	p := new(int64)
	*p = now
	m[string(k)] = p
	return true
}

// shardIndex is a shard's distinct attribute values; guarded by the shard lock.
type shardIndex struct {
	keys map[string]*keyValues
	// seen maps a hash of key and value key to the value's entry in keys, and seenNames a name
	// hash to its entry in names: the hot path, a span repeating what the shard has, is one
	// lookup by integer rather than two by string.
	seen, seenNames map[uint64]*int64
	// names are the span names seen, with when they were last seen.
	names map[string]*int64
	// eventKeys and linkKeys are event and link attribute keys, for tag names only.
	eventKeys, linkKeys map[string]*int64
	namesFull           int64  // as keyValues.full
	tmp, hb             []byte // scratch: value keys, hash input
}

type keyValues struct {
	vals map[string]*int64 // value key → append time it was last seen, for sweeping
	// full is when a value was last left out for being past maxIndexedValues (0: never): until
	// every trace appended since then has gone, vals is incomplete.
	full int64
}

func (x *shardIndex) init() {
	x.keys = map[string]*keyValues{}
	x.seen = map[uint64]*int64{}
	x.seenNames = map[uint64]*int64{}
	x.names = map[string]*int64{}
	x.eventKeys = map[string]*int64{}
	x.linkKeys = map[string]*int64{}
}

// indexSpan adds a span's name and attributes to its trace's signature and the shard's values.
func (x *shardIndex) indexSpan(t *Trace, s *otlpwire.Span, now int64) {
	nh := nameHash(&x.hb, s.Name)
	t.sig.add(nh)
	if p := x.seenNames[nh]; p != nil {
		*p = now
	} else if !touch(x.names, s.Name, now, 4*maxIndexedValues) {
		x.namesFull = now
	} else {
		x.seenNames[nh] = x.names[string(s.Name)]
	}
	// One pass over the span's top-level fields: attributes, and the keys of event and link
	// attributes. Malformed input was refused by validation; here it only ends indexing.
	for b := s.Raw; len(b) > 0; {
		f, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if typ != protowire.BytesType || (f != 9 && f != 11 && f != 13) {
			if n = protowire.ConsumeFieldValue(f, typ, b); n < 0 {
				return
			}
			b = b[n:]
			continue
		}
		msg, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return
		}
		b = b[n:]
		switch f {
		case 9: // Span.attributes
			if key, val, ok := keyValue(msg); ok {
				x.indexValue(t, key, val, now)
			}
		case 11: // Span.events: Event.attributes is field 3
			x.indexKeys(x.eventKeys, msg, 3, now)
		case 13: // Span.links: Link.attributes is field 4
			x.indexKeys(x.linkKeys, msg, 4, now)
		}
	}
}

// indexKeys records the attribute keys of an event or link message, whose attributes are field.
func (x *shardIndex) indexKeys(keys map[string]*int64, msg []byte, field protowire.Number, now int64) {
	for len(msg) > 0 {
		f, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return
		}
		msg = msg[n:]
		if f != field || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(f, typ, msg); n < 0 {
				return
			}
			msg = msg[n:]
			continue
		}
		kv, n := protowire.ConsumeBytes(msg)
		if n < 0 {
			return
		}
		msg = msg[n:]
		if key, _, ok := keyValue(kv); ok {
			touch(keys, key, now, maxIndexedValues)
		}
	}
}

// keyValue splits a KeyValue message into its key and AnyValue bytes.
func keyValue(kv []byte) (key, val []byte, ok bool) {
	for len(kv) > 0 {
		f, typ, n := protowire.ConsumeTag(kv)
		if n < 0 {
			return nil, nil, false
		}
		kv = kv[n:]
		if typ == protowire.BytesType && (f == 1 || f == 2) {
			v, n := protowire.ConsumeBytes(kv)
			if n < 0 {
				return nil, nil, false
			}
			if f == 1 {
				key = v
			} else {
				val = v
			}
			kv = kv[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(f, typ, kv); n < 0 {
			return nil, nil, false
		}
		kv = kv[n:]
	}
	return key, val, true
}

func (x *shardIndex) indexValue(t *Trace, key []byte, v []byte, now int64) {
	kind, text, num := decodeAnyValue(v)
	if kind != 'a' {
		x.indexScalar(t, key, kind, text, num, now)
		return
	}
	for elems := text; len(elems) > 0; {
		f, typ, n := protowire.ConsumeTag(elems)
		if n < 0 {
			return
		}
		elems = elems[n:]
		if f != 1 || typ != protowire.BytesType { // ArrayValue.values
			if n = protowire.ConsumeFieldValue(f, typ, elems); n < 0 {
				return
			}
			elems = elems[n:]
			continue
		}
		el, n := protowire.ConsumeBytes(elems)
		if n < 0 {
			return
		}
		elems = elems[n:]
		if k, t2, n2 := decodeAnyValue(el); k != 'a' {
			x.indexScalar(t, key, k, t2, n2, now)
		}
	}
}

// valueBytes marks a bytes value from decodeAnyValue: indexed as the hex string search shows.
const valueBytes = 'x'

func (x *shardIndex) indexScalar(t *Trace, key []byte, kind byte, text []byte, num uint64, now int64) {
	var nb [8]byte
	x.tmp = x.tmp[:0]
	switch kind {
	case 0:
		return
	case valueBytes:
		const hexDigits = "0123456789abcdef"
		x.tmp = append(x.tmp, ValueString)
		for _, c := range text {
			x.tmp = append(x.tmp, hexDigits[c>>4], hexDigits[c&15])
		}
		t.sig.add(attrHash(&x.hb, key, 's', x.tmp[1:]))
	case ValueString:
		x.tmp = append(append(x.tmp, ValueString), text...)
		t.sig.add(attrHash(&x.hb, key, 's', text))
	case ValueInt:
		x.tmp = binary.LittleEndian.AppendUint64(append(x.tmp, ValueInt), num)
		t.sig.add(attrHash(&x.hb, key, 'n', numBytes(&nb, float64(int64(num)))))
	case ValueDouble:
		x.tmp = binary.LittleEndian.AppendUint64(append(x.tmp, ValueDouble), num)
		t.sig.add(attrHash(&x.hb, key, 'n', numBytes(&nb, math.Float64frombits(num))))
	case ValueBool:
		x.tmp = append(x.tmp, ValueBool, byte(num))
		t.sig.add(attrHash(&x.hb, key, 'b', x.tmp[1:]))
	}
	vh := valueHash(&x.hb, key, x.tmp)
	if p := x.seen[vh]; p != nil {
		*p = now
		return
	}
	kv := x.keys[string(key)]
	if kv == nil {
		kv = &keyValues{vals: map[string]*int64{}}
		x.keys[string(key)] = kv
	}
	if !touch(kv.vals, x.tmp, now, maxIndexedValues) {
		kv.full = now
		return
	}
	x.seen[vh] = kv.vals[string(x.tmp)]
}

// decodeAnyValue reads an AnyValue message: its value key type and either the text (strings; bytes
// values need hex, see ValueBytes) or the number (ints, double bits, bools as 0 or 1), or 'a'
// and the ArrayValue message in text, or 0 for maps and malformed input.
func decodeAnyValue(v []byte) (kind byte, text []byte, num uint64) {
	for len(v) > 0 {
		f, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return 0, nil, 0
		}
		v = v[n:]
		switch {
		case f == 1 && typ == protowire.BytesType: // string_value
			s, n := protowire.ConsumeBytes(v)
			if n < 0 {
				return 0, nil, 0
			}
			return ValueString, s, 0
		case f == 2 && typ == protowire.VarintType: // bool_value
			x, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return 0, nil, 0
			}
			if x != 0 {
				x = 1
			}
			return ValueBool, nil, x
		case f == 3 && typ == protowire.VarintType: // int_value
			x, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return 0, nil, 0
			}
			return ValueInt, nil, x
		case f == 4 && typ == protowire.Fixed64Type: // double_value
			x, n := protowire.ConsumeFixed64(v)
			if n < 0 {
				return 0, nil, 0
			}
			return ValueDouble, nil, x
		case f == 5 && typ == protowire.BytesType: // array_value
			a, n := protowire.ConsumeBytes(v)
			if n < 0 {
				return 0, nil, 0
			}
			return 'a', a, 0
		case f == 7 && typ == protowire.BytesType: // bytes_value
			b, n := protowire.ConsumeBytes(v)
			if n < 0 {
				return 0, nil, 0
			}
			return valueBytes, b, 0
		}
		if n = protowire.ConsumeFieldValue(f, typ, v); n < 0 {
			return 0, nil, 0
		}
		v = v[n:]
	}
	return 0, nil, 0
}

// sweep forgets values no trace of the shard can still hold: those last seen before the oldest
// first append among the shard's traces. Runs under the shard lock.
func (x *shardIndex) sweep(sh *shard) {
	oldest := int64(math.MaxInt64)
	for _, t := range sh.live {
		oldest = min(oldest, t.firstAppend)
	}
	for _, ts := range sh.flushing {
		for _, t := range ts {
			oldest = min(oldest, t.firstAppend)
		}
	}
	for k, kv := range x.keys {
		for v, seen := range kv.vals {
			if *seen < oldest {
				delete(kv.vals, v)
				delete(x.seen, valueHash(&x.hb, []byte(k), []byte(v)))
			}
		}
		if kv.full < oldest {
			kv.full = 0
		}
		if len(kv.vals) == 0 && kv.full == 0 {
			delete(x.keys, k)
		}
	}
	for n, seen := range x.names {
		if *seen < oldest {
			delete(x.names, n)
			delete(x.seenNames, nameHash(&x.hb, []byte(n)))
		}
	}
	for _, keys := range []map[string]*int64{x.eventKeys, x.linkKeys} {
		for k, seen := range keys {
			if *seen < oldest {
				delete(keys, k)
			}
		}
	}
	if x.namesFull < oldest {
		x.namesFull = 0
	}
}

// Signature returns the trace's Bloom filter of span names and attribute values.
func (t *Trace) Signature() Signature { return t.sig }

// KeyValues says what the head knows of one span attribute key's values.
type KeyValues struct {
	// Values are value keys (see IntKey); complete is false when some shard had too many to list.
	Values   []string
	Complete bool
}

// SpanAttributeValues returns the distinct values of a span attribute key over the traces the
// head holds (and possibly some it held recently).
func (h *Head) SpanAttributeValues(key string) KeyValues {
	h.markRead()
	out := KeyValues{Complete: true}
	seen := map[string]bool{}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		h.catchUp(sh)
		if kv := sh.index.keys[key]; kv != nil {
			if kv.full != 0 {
				out.Complete = false
			}
			for v := range kv.vals {
				if !seen[v] {
					seen[v] = true
					out.Values = append(out.Values, v)
				}
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// HasSpanAttributeValue reports whether some trace of the head may have a span attribute key
// with one of the value keys given: false only when every shard's list of the key is complete
// and lacks them all.
func (h *Head) HasSpanAttributeValue(key string, values ...string) bool {
	h.markRead()
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		h.catchUp(sh)
		kv := sh.index.keys[key]
		found := kv != nil && kv.full != 0
		if kv != nil && !found {
			for _, v := range values {
				if _, ok := kv.vals[v]; ok {
					found = true
					break
				}
			}
		}
		sh.mu.Unlock()
		if found {
			return true
		}
	}
	return false
}

// AttributeKeys returns the span, event and link attribute keys of the head's traces (and
// possibly of some it held recently). Event and link keys past a few hundred per shard are left out.
func (h *Head) AttributeKeys() (span, event, link []string) {
	h.markRead()
	seen := [3]map[string]bool{{}, {}, {}}
	add := func(i int, out *[]string, k string) {
		if !seen[i][k] {
			seen[i][k] = true
			*out = append(*out, k)
		}
	}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		h.catchUp(sh)
		for k := range sh.index.keys {
			add(0, &span, k)
		}
		for k := range sh.index.eventKeys {
			add(1, &event, k)
		}
		for k := range sh.index.linkKeys {
			add(2, &link, k)
		}
		sh.mu.Unlock()
	}
	return span, event, link
}

// Groups calls fn with each resource and scope group the head has interned. A group unused for
// ten minutes is forgotten even if an old trace still points at it.
func (h *Head) Groups(fn func(g *otlpwire.Group)) {
	h.groups.mu.Lock()
	defer h.groups.mu.Unlock()
	for _, es := range h.groups.m {
		for _, e := range es {
			fn(e.g)
		}
	}
}

// SpanNames returns the span names of the head's traces (and possibly some it held recently);
// complete is false when there were too many to keep.
func (h *Head) SpanNames() (names []string, complete bool) {
	h.markRead()
	seen := map[string]bool{}
	complete = true
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		h.catchUp(sh)
		if sh.index.namesFull != 0 {
			complete = false
		}
		for n := range sh.index.names {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
		sh.mu.Unlock()
	}
	return names, complete
}

// Summary is what a search reads of a trace to decide whether to decode it, over all the parts
// the head holds of it (live and waiting for a block).
type Summary struct {
	ID         [16]byte
	Start, End uint64
	SpanCount  int
	Signature  Signature
	// Split and Unchecked: some part has Split set, or not SplitChecked.
	Split, Unchecked bool
}

func (s *Summary) merge(t *Trace) {
	if s.SpanCount == 0 || t.Start < s.Start {
		s.Start = t.Start
	}
	s.End = max(s.End, t.End)
	s.SpanCount += t.SpanCount
	s.Split = s.Split || t.Split
	s.Unchecked = s.Unchecked || !t.SplitChecked
	for i := range s.Signature {
		s.Signature[i] |= t.sig[i]
	}
}

// EachSummary calls fn with the summary of every trace held, one call per trace ID. fn runs
// outside the shard locks: the summaries are taken a shard at a time, so a slow reader never
// holds up ingest. The summary is reused after fn returns.
func (h *Head) EachSummary(fn func(s *Summary)) {
	h.markRead()
	var sums []Summary
	for i := range h.shards {
		sh := &h.shards[i]
		sums = sums[:0]
		sh.mu.Lock()
		h.catchUp(sh)
		for id, t := range sh.live {
			s := Summary{ID: id}
			s.merge(t)
			if len(sh.flushing) > 0 {
				for _, f := range sh.flushing[id] {
					s.merge(f)
				}
			}
			sums = append(sums, s)
		}
		for id, ts := range sh.flushing {
			if _, ok := sh.live[id]; ok {
				continue
			}
			s := Summary{ID: id}
			for _, t := range ts {
				s.merge(t)
			}
			sums = append(sums, s)
		}
		sh.mu.Unlock()
		for j := range sums {
			fn(&sums[j])
		}
	}
}
