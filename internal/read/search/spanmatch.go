package search

import (
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// A head trace that passes its summary (head.Signature) may still not match: the signature
// says which names and attribute values occur in the trace, not on which span, so for
// { span.task.count = 7 && name = "render" } it lets through every trace with a render span
// and a task.count of 7 anywhere, most of them on different spans. Decoding each such trace
// was most of a limited head search's time. spanTests are the conjunctions some single span
// of every matching trace satisfies, tested straight on the spans' wire bytes, without
// allocating, before the trace is decoded.

// spanTest is one conjunction: a matching trace has a span for which every cond holds.
type spanTest struct {
	conds []wireCond
}

// wireCond is a condition on a span's own fields that its wire bytes answer.
type wireCond struct {
	field traceql.FieldExpr // IntrinsicName, IntrinsicKind, IntrinsicStatus, IntrinsicDuration or a span attribute
	key   string            // the attribute's name
	op    *traceql.BinaryOp
	want  value
}

// spanTestsOf derives the spanTests of a query's first stage: each filter that is a plain
// conjunction and that every match needs (both sides of "&&" and of the structural
// operators, the right side of a negated one; nothing under "||"). Conditions the wire bytes
// cannot answer (resource attributes, unscoped names, events, links, nil) are left out of
// their conjunction, which only makes it let more through.
func spanTestsOf(e traceql.SpansetExpr) []spanTest {
	switch e := e.(type) {
	case *traceql.SpansetFilter:
		conds, ok := e.Conditions()
		if !ok {
			return nil
		}
		var t spanTest
		for _, c := range conds {
			if c.Value.Type == traceql.TypeNil {
				continue
			}
			wc := wireCond{field: c.Field, op: &traceql.BinaryOp{Op: c.Op, Regex: c.Regex}, want: staticValue(c.Value)}
			switch f := c.Field.(type) {
			case traceql.Intrinsic:
				switch f {
				case traceql.IntrinsicName, traceql.IntrinsicKind, traceql.IntrinsicStatus, traceql.IntrinsicDuration:
				default:
					continue
				}
			case traceql.Attribute:
				if f.Scope != traceql.ScopeSpan {
					continue
				}
				wc.key = f.Name
			default:
				continue
			}
			t.conds = append(t.conds, wc)
		}
		if len(t.conds) == 0 {
			return nil
		}
		return []spanTest{t}
	case *traceql.SpansetOp:
		switch {
		case e.Op == traceql.SpansetOr:
			return nil
		case e.Op >= traceql.NotDescendant && e.Op <= traceql.NotParent:
			return spanTestsOf(e.RHS)
		}
		return append(spanTestsOf(e.LHS), spanTestsOf(e.RHS)...)
	}
	return nil
}

// wireSpanPasses reports whether the Span message raw satisfies every condition of t. A
// malformed message passes, so that the decode reports it.
func (t *spanTest) wireSpanPasses(raw []byte) bool {
	// A span has at most a few conditions; each is settled once seen to hold.
	var held [8]bool
	if len(t.conds) > len(held) {
		return true
	}
	var start, end uint64
	var name []byte
	var kind, status int32
	// The name comes before the attributes in the message: once it fails its condition, the
	// attributes are not read (only a later name field, which would replace it, is looked for).
	nameFails := false
	for b := raw; len(b) > 0; {
		num, typ, v, x, rest, err := field(b)
		if err != nil {
			return true
		}
		b = rest
		switch {
		case num == 5 && typ == protowire.BytesType:
			name = v
			nameFails = !t.nameHolds(name)
		case nameFails:
		case num == 6 && typ == protowire.VarintType:
			kind = int32(x)
		case num == 7 && typ == protowire.Fixed64Type:
			start = x
		case num == 8 && typ == protowire.Fixed64Type:
			end = x
		case num == 9 && typ == protowire.BytesType:
			if !t.attrHolds(v, held[:len(t.conds)]) {
				return true
			}
		case num == 15 && typ == protowire.BytesType:
			for st := v; len(st) > 0; {
				num, typ, _, x, rest, err := field(st)
				if err != nil {
					return true
				}
				st = rest
				if num == 3 && typ == protowire.VarintType {
					status = int32(x)
				}
			}
		}
	}
	if nameFails {
		return false
	}
	for i := range t.conds {
		c := &t.conds[i]
		var v value
		switch c.field {
		case traceql.IntrinsicName:
			v = value{k: kString, s: unsafe.String(unsafe.SliceData(name), len(name))}
		case traceql.IntrinsicKind:
			v = value{k: kKind, i: kindOf(kind)}
		case traceql.IntrinsicStatus:
			v = value{k: kStatus, i: statusOf(status)}
		case traceql.IntrinsicDuration:
			v = value{k: kDuration, i: int64(end - start)}
		default:
			if !held[i] {
				return false
			}
			continue
		}
		if !compare(c.op.Op, v, c.want, c.op) {
			return false
		}
	}
	return true
}

// nameHolds tests a span name against the name conditions.
func (t *spanTest) nameHolds(name []byte) bool {
	for i := range t.conds {
		c := &t.conds[i]
		if c.field == traceql.IntrinsicName && !compare(c.op.Op, value{k: kString, s: unsafe.String(unsafe.SliceData(name), len(name))}, c.want, c.op) {
			return false
		}
	}
	return true
}

// attrHolds tests a KeyValue message against the attribute conditions, marking those it
// satisfies in held. It returns false for a malformed message.
func (t *spanTest) attrHolds(kv []byte, held []bool) bool {
	var key, val []byte
	for b := kv; len(b) > 0; {
		num, typ, v, _, rest, err := field(b)
		if err != nil {
			return false
		}
		b = rest
		switch {
		case num == 1 && typ == protowire.BytesType:
			key = v
		case num == 2 && typ == protowire.BytesType:
			// A repeated value merges; such a message is rare enough to leave to the decode:
			// counting it as holding lets the trace through.
			if val != nil {
				for i := range t.conds {
					if t.conds[i].key == string(key) {
						held[i] = true
					}
				}
				return true
			}
			val = v
		}
	}
	var v value
	decoded := false
	for i := range t.conds {
		c := &t.conds[i]
		if c.key == "" || held[i] || c.key != string(key) {
			continue
		}
		if !decoded {
			var err error
			if v, err = wireAnyValue(val, true); err != nil {
				return false
			}
			decoded = true
		}
		// An attribute given twice is tested at each: letting a trace through is safe.
		if v.k != kNil && compare(c.op.Op, v, c.want, c.op) {
			held[i] = true
		}
	}
	return true
}

// headTracePasses reports whether the parts of a head trace have, for every test, a span
// that passes it.
func headTracePasses(tests []spanTest, parts []*head.Trace) bool {
	for i := range tests {
		found := false
		for _, p := range parts {
			p.Spans(func(_ *otlpwire.Group, raw []byte) {
				if !found && tests[i].wireSpanPasses(raw) {
					found = true
				}
			})
			if found {
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
