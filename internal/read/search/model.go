// Package search runs TraceQL over the head and the blocks together: spanset filters, spanset
// operators, structural operators and the pipeline; tag discovery; and TraceQL metrics.
//
// Both sources are turned into the same small in-memory form, one trace at a time, holding only
// what the query reads: the head's traces are decoded from their wire bytes, and blocks are read
// column by column (block.Reader.Scan) after the block has been ruled in by its time range and by
// the dictionaries of the columns the query tests. Evaluating one form is what makes the same
// query give the same answer wherever the data lives.
package search

import (
	"encoding/hex"
	"strconv"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// valueKind is the dynamic type of an attribute or intrinsic value.
type valueKind uint8

const (
	kNil valueKind = iota
	kString
	kInt
	kFloat
	kBool
	kDuration
	kStatus
	kKind
	kArray
)

// value is one attribute or intrinsic value. Durations are nanoseconds in i; statuses and kinds
// are their traceql constants in i.
type value struct {
	k valueKind
	// multi marks the values of a field a span has several of (event and link fields), where
	// every comparison holds when some element's does, as opposed to an array attribute, where
	// != and !~ hold only when no element is equal or matches.
	multi bool
	s     string
	i     int64
	f     float64
	b     bool
	arr   []value
}

func (v value) number() (float64, bool) {
	switch v.k {
	case kInt, kDuration:
		return float64(v.i), true
	case kFloat:
		return v.f, true
	}
	return 0, false
}

// text is the value as Tempo prints tag values and by() labels.
func (v value) text() string {
	switch v.k {
	case kString:
		return v.s
	case kInt:
		return strconv.FormatInt(v.i, 10)
	case kFloat:
		return strconv.FormatFloat(v.f, 'g', -1, 64)
	case kBool:
		return strconv.FormatBool(v.b)
	case kDuration:
		return durationText(v.i)
	case kStatus:
		return statusNames[v.i]
	case kKind:
		return kindNames[v.i]
	}
	return ""
}

func durationText(ns int64) string {
	return time.Duration(ns).String()
}

// Names as TraceQL writes status and kind literals, indexed by the traceql constants.
var (
	statusNames = []string{"", "unset", "ok", "error"}
	kindNames   = []string{"", "unspecified", "internal", "server", "client", "producer", "consumer"}
)

// statusOf maps an OTLP status code to traceql's Status constant value.
func statusOf(code int32) int64 {
	switch code {
	case 1:
		return 2 // ok
	case 2:
		return 3 // error
	}
	return 1 // unset
}

// kindOf maps an OTLP span kind to traceql's Kind constant value.
func kindOf(k int32) int64 {
	if k < 0 || k > 5 {
		return 1
	}
	return int64(k) + 1
}

type attr struct {
	key string
	val value
}

type event struct {
	name  string
	since int64 // from the span start, nanos
	attrs []attr
}

type link struct {
	traceID, spanID []byte
	attrs           []attr
}

// resource is a span's resource and scope, decoded once per group.
type resource struct {
	attrs        []attr
	scopeName    string
	scopeVersion string
	scopeAttrs   []attr
	service      string
}

// span is one span in the engine's form. Fields the query does not read are left zero.
type span struct {
	id        []byte
	self      int32 // its own index within the trace
	parent    int32 // index within the trace, -1 when none there
	hasParent bool
	start     int64 // unix nanos
	dur       int64
	name      string
	kind      int32 // OTLP
	status    int32 // OTLP code
	statusMsg string
	res       *resource
	attrs     []attr
	events    []event
	links     []link
}

// trace is one trace in the engine's form.
type trace struct {
	id          [16]byte
	start, dur  int64
	rootName    string
	rootService string
	spans       []span
	// bytes is roughly what was read for the trace, for the response's inspectedBytes.
	bytes int64
	// shape is the span tree's derived facts, computed on first use.
	shape *treeShape
}

// treeShape holds what the tree intrinsics read: the root, child counts and the nested-set
// numbering.
type treeShape struct {
	root                    int32 // earliest span without a parent, -1 in a rootless trace
	children                []int32
	left, right, parentLeft []int32
}

// tree returns t's shape, computing it once per trace.
func (t *trace) tree() *treeShape {
	if t.shape != nil {
		return t.shape
	}
	n := len(t.spans)
	sh := &treeShape{root: -1, children: make([]int32, n), left: make([]int32, n), right: make([]int32, n), parentLeft: make([]int32, n)}
	kids := make([][]int32, n)
	var tops []int32
	for i := range t.spans {
		s := &t.spans[i]
		if !s.hasParent && sh.root < 0 {
			sh.root = int32(i)
		}
		if s.parent >= 0 {
			sh.children[s.parent]++
			kids[s.parent] = append(kids[s.parent], int32(i))
		} else {
			tops = append(tops, int32(i))
		}
	}
	// Nested-set numbers by a depth-first walk of each tree in start order (spans are sorted by
	// start), iteratively so a deep trace cannot exhaust the stack. A span in a cycle of parent
	// links is never reached and keeps 0.
	next := int32(1)
	type frame struct{ span, kid int32 }
	for _, top := range tops {
		sh.parentLeft[top] = -1
		stack := []frame{{top, 0}}
		sh.left[top] = next
		next++
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if int(f.kid) < len(kids[f.span]) {
				c := kids[f.span][f.kid]
				f.kid++
				sh.left[c] = next
				sh.parentLeft[c] = sh.left[f.span]
				next++
				stack = append(stack, frame{c, 0})
				continue
			}
			sh.right[f.span] = next
			next++
			stack = stack[:len(stack)-1]
		}
	}
	t.shape = sh
	return sh
}

func (s *span) attr(key string) (value, bool) {
	for i := range s.attrs {
		if s.attrs[i].key == key {
			return s.attrs[i].val, true
		}
	}
	return value{}, false
}

func findAttr(as []attr, key string) (value, bool) {
	for i := range as {
		if as[i].key == key {
			return as[i].val, true
		}
	}
	return value{}, false
}

func anyValue(v *commonpb.AnyValue) value {
	if v == nil {
		return value{}
	}
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		return value{k: kString, s: x.StringValue}
	case *commonpb.AnyValue_IntValue:
		return value{k: kInt, i: x.IntValue}
	case *commonpb.AnyValue_DoubleValue:
		return value{k: kFloat, f: x.DoubleValue}
	case *commonpb.AnyValue_BoolValue:
		return value{k: kBool, b: x.BoolValue}
	case *commonpb.AnyValue_ArrayValue:
		out := value{k: kArray}
		for _, e := range x.ArrayValue.GetValues() {
			out.arr = append(out.arr, anyValue(e))
		}
		return out
	case *commonpb.AnyValue_BytesValue:
		return value{k: kString, s: hex.EncodeToString(x.BytesValue)}
	}
	// Maps have no TraceQL comparison; they read as absent.
	return value{}
}

func keyValues(kvs []*commonpb.KeyValue) []attr {
	out := make([]attr, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, attr{kv.Key, anyValue(kv.Value)})
	}
	return out
}

// attrsFromScan converts the attribute rows of owner index range [from, to) of a scan batch,
// where rows are ordered by owner; pos is the next row to look at and is advanced.
// Attributes are appended to *arena, which the caller resets per trace, so a trace's
// attributes cost one growing allocation rather than one per span.
func scanAttrs(a *block.ScanAttrs, pos *int, owner int32, arena *[]attr) []attr {
	for ; *pos < len(a.Owner) && a.Owner[*pos] < owner; *pos++ {
	}
	from := len(*arena)
	for ; *pos < len(a.Owner) && a.Owner[*pos] == owner; *pos++ {
		i := *pos
		v := rowValue(a.Type[i], a.Str[i], a.Int[i], a.Double[i], a.Bool[i], a.Raw[i])
		*arena = append(*arena, attr{a.Key[i], v})
	}
	if len(*arena) == from {
		return nil
	}
	return (*arena)[from:len(*arena):len(*arena)]
}

// rowValue is the value of one attribute row of a block.
func rowValue(typ int32, str string, num int64, dbl float64, b bool, raw []byte) value {
	switch typ {
	case block.ValueString:
		return value{k: kString, s: str}
	case block.ValueInt:
		return value{k: kInt, i: num}
	case block.ValueDouble:
		return value{k: kFloat, f: dbl}
	case block.ValueBool:
		return value{k: kBool, b: b}
	case block.ValueRaw:
		var av commonpb.AnyValue
		if otlpwire.Unmarshal(raw, &av) == nil {
			return anyValue(&av)
		}
	}
	return value{}
}
