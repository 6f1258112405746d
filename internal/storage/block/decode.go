package block

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Field numbers from opentelemetry/proto/{trace,common}/v1.
const (
	spanSpanID         = 2
	spanTraceState     = 3
	spanParentSpanID   = 4
	spanName           = 5
	spanKind           = 6
	spanStart          = 7
	spanEnd            = 8
	spanAttributes     = 9
	spanDroppedAttrs   = 10
	spanEvents         = 11
	spanDroppedEvents  = 12
	spanLinks          = 13
	spanDroppedLinks   = 14
	spanStatus         = 15
	spanFlags          = 16
	eventTime          = 1
	eventName          = 2
	eventAttributes    = 3
	eventDroppedAttrs  = 4
	linkTraceID        = 1
	linkSpanID         = 2
	linkTraceState     = 3
	linkAttributes     = 4
	linkDroppedAttrs   = 5
	linkFlags          = 6
	statusMessage      = 2
	statusCode         = 3
	keyValueKey        = 1
	keyValueValue      = 2
	anyString          = 1
	anyBool            = 2
	anyInt             = 3
	anyDouble          = 4
	scopeName          = 1
	scopeVersion       = 2
	resourceAttributes = 1
)

// Attribute value types as stored in the type column. The typed columns hold the value for
// string, bool, int and double; every other shape keeps its AnyValue message bytes in the raw
// column, which round-trips arrays, kvlists, bytes and fields newer than this code exactly.
const (
	ValueNone   = 0 // KeyValue without a value message
	ValueString = 1
	ValueBool   = 2
	ValueInt    = 3
	ValueDouble = 4
	ValueRaw    = 5 // AnyValue bytes in the raw column
	// Format 6 on, a string of a high-cardinality key, its bytes in the raw column instead of
	// str (see attrsSchema). ValueStringPlainNew says no earlier row of the row group has the
	// value; ValueStringPlain, that one may have. Only readers of the type column itself
	// (Columns) see them: Scan, FindTrace and ReadAll report such values as ValueString.
	ValueStringPlain    = 6
	ValueStringPlainNew = 7
)

// plainString reports whether typ is one of the plain string types.
func plainString(typ int32) bool { return typ == ValueStringPlain || typ == ValueStringPlainNew }

// attrRec is one decoded KeyValue. Byte slices point into the span's Raw bytes.
type attrRec struct {
	key  []byte
	str  []byte
	raw  []byte
	num  uint64 // int64 or float64 bits
	typ  uint8
	bool bool
}

type eventRec struct {
	time         uint64
	name         []byte
	dropped      uint32
	attr0, attr1 int32 // range in decoder.eventAttrs
}

type linkRec struct {
	traceID, spanID, traceState []byte
	flags, dropped              uint32
	attr0, attr1                int32 // range in decoder.linkAttrs
}

// spanRec is one decoded Span. Byte slices point into Raw.
type spanRec struct {
	spanID, parentID, traceState, name, statusMsg []byte
	start, end                                    uint64
	kind                                          int32
	statusCode                                    int32
	hasStatus                                     bool // proto3 tells an absent Status from an empty one
	flags                                         uint32
	droppedAttrs, droppedEvents, droppedLinks     uint32
	group                                         int32
	attr0, attr1                                  int32 // range in decoder.attrs
	event0, event1                                int32 // range in decoder.events
	link0, link1                                  int32 // range in decoder.links
}

// decoder turns Span messages into flat records held in arenas that grow to the largest block
// written and are then reused, so steady-state decoding does not allocate.
type decoder struct {
	spans      []spanRec
	attrs      []attrRec
	events     []eventRec
	eventAttrs []attrRec
	links      []linkRec
	linkAttrs  []attrRec
}

func (d *decoder) reset() {
	d.spans = d.spans[:0]
	d.attrs = d.attrs[:0]
	d.events = d.events[:0]
	d.eventAttrs = d.eventAttrs[:0]
	d.links = d.links[:0]
	d.linkAttrs = d.linkAttrs[:0]
}

func malformed(what string, num protowire.Number, n int) error {
	return fmt.Errorf("%w: %s field %d: %v", otlpwire.ErrMalformed, what, num, protowire.ParseError(n))
}

// next reads one field header and value. v is the payload for length-delimited fields; x the
// value of varint and fixed-width fields. One-byte tags and lengths, which are nearly all of
// them in span messages, take an inlined path: protowire's general decoders were a fifth of
// the block writer's time.
func next(b []byte, what string) (num protowire.Number, typ protowire.Type, v []byte, x uint64, rest []byte, err error) {
	var n int
	if len(b) > 0 && b[0] < 0x80 && b[0] >= 8 {
		num, typ, n = protowire.Number(b[0]>>3), protowire.Type(b[0]&7), 1
	} else {
		num, typ, n = protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, nil, 0, nil, malformed(what, 0, n)
		}
	}
	b = b[n:]
	switch typ {
	case protowire.VarintType:
		if len(b) > 0 && b[0] < 0x80 {
			return num, typ, nil, uint64(b[0]), b[1:], nil
		}
		x, n = protowire.ConsumeVarint(b)
	case protowire.Fixed64Type:
		if len(b) >= 8 {
			return num, typ, nil, binary.LittleEndian.Uint64(b), b[8:], nil
		}
		n = -1
	case protowire.Fixed32Type:
		if len(b) >= 4 {
			return num, typ, nil, uint64(binary.LittleEndian.Uint32(b)), b[4:], nil
		}
		n = -1
	case protowire.BytesType:
		if len(b) > 0 && b[0] < 0x80 {
			l := int(b[0])
			if l+1 <= len(b) {
				return num, typ, b[1 : 1+l : 1+l], 0, b[1+l:], nil
			}
			n = -1
			break
		}
		v, n = protowire.ConsumeBytes(b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		return 0, 0, nil, 0, nil, malformed(what, num, n)
	}
	return num, typ, v, x, b[n:], nil
}

// decodeSpan appends raw's fields to the arenas. Unknown fields are skipped as protobuf
// requires; fields with an unexpected wire type are treated as unknown, like the stock decoder.
func (d *decoder) decodeSpan(raw []byte, group int32) error {
	s := spanRec{group: group, attr0: int32(len(d.attrs)), event0: int32(len(d.events)), link0: int32(len(d.links))}
	for b := raw; len(b) > 0; {
		num, typ, v, x, rest, err := next(b, "span")
		if err != nil {
			return err
		}
		b = rest
		switch typ {
		case protowire.BytesType:
			switch num {
			case spanSpanID:
				s.spanID = v
			case spanTraceState:
				s.traceState = v
			case spanParentSpanID:
				s.parentID = v
			case spanName:
				s.name = v
			case spanAttributes:
				if d.attrs, err = appendAttr(d.attrs, v); err != nil {
					return err
				}
			case spanEvents:
				if err := d.decodeEvent(v); err != nil {
					return err
				}
			case spanLinks:
				if err := d.decodeLink(v); err != nil {
					return err
				}
			case spanStatus:
				if err := decodeStatus(v, &s); err != nil {
					return err
				}
			}
		case protowire.VarintType:
			switch num {
			case spanKind:
				s.kind = int32(x)
			case spanDroppedAttrs:
				s.droppedAttrs = uint32(x)
			case spanDroppedEvents:
				s.droppedEvents = uint32(x)
			case spanDroppedLinks:
				s.droppedLinks = uint32(x)
			}
		case protowire.Fixed64Type:
			switch num {
			case spanStart:
				s.start = x
			case spanEnd:
				s.end = x
			}
		case protowire.Fixed32Type:
			if num == spanFlags {
				s.flags = uint32(x)
			}
		}
	}
	s.attr1, s.event1, s.link1 = int32(len(d.attrs)), int32(len(d.events)), int32(len(d.links))
	d.spans = append(d.spans, s)
	return nil
}

func decodeStatus(b []byte, s *spanRec) error {
	// Several occurrences of the Status field merge; the last code and message win, as in
	// protobuf merging.
	s.hasStatus = true
	for len(b) > 0 {
		num, typ, v, x, rest, err := next(b, "status")
		if err != nil {
			return err
		}
		b = rest
		switch {
		case num == statusMessage && typ == protowire.BytesType:
			s.statusMsg = v
		case num == statusCode && typ == protowire.VarintType:
			s.statusCode = int32(x)
		}
	}
	return nil
}

func (d *decoder) decodeEvent(b []byte) error {
	e := eventRec{attr0: int32(len(d.eventAttrs))}
	for len(b) > 0 {
		num, typ, v, x, rest, err := next(b, "event")
		if err != nil {
			return err
		}
		b = rest
		switch {
		case num == eventTime && typ == protowire.Fixed64Type:
			e.time = x
		case num == eventName && typ == protowire.BytesType:
			e.name = v
		case num == eventAttributes && typ == protowire.BytesType:
			if d.eventAttrs, err = appendAttr(d.eventAttrs, v); err != nil {
				return err
			}
		case num == eventDroppedAttrs && typ == protowire.VarintType:
			e.dropped = uint32(x)
		}
	}
	e.attr1 = int32(len(d.eventAttrs))
	d.events = append(d.events, e)
	return nil
}

func (d *decoder) decodeLink(b []byte) error {
	l := linkRec{attr0: int32(len(d.linkAttrs))}
	for len(b) > 0 {
		num, typ, v, x, rest, err := next(b, "link")
		if err != nil {
			return err
		}
		b = rest
		switch {
		case num == linkTraceID && typ == protowire.BytesType:
			l.traceID = v
		case num == linkSpanID && typ == protowire.BytesType:
			l.spanID = v
		case num == linkTraceState && typ == protowire.BytesType:
			l.traceState = v
		case num == linkAttributes && typ == protowire.BytesType:
			if d.linkAttrs, err = appendAttr(d.linkAttrs, v); err != nil {
				return err
			}
		case num == linkDroppedAttrs && typ == protowire.VarintType:
			l.dropped = uint32(x)
		case num == linkFlags && typ == protowire.Fixed32Type:
			l.flags = uint32(x)
		}
	}
	l.attr1 = int32(len(d.linkAttrs))
	d.links = append(d.links, l)
	return nil
}

// appendAttr decodes one KeyValue message.
func appendAttr(dst []attrRec, kv []byte) ([]attrRec, error) {
	a := attrRec{}
	var val []byte
	hasVal := false
	for b := kv; len(b) > 0; {
		num, typ, v, _, rest, err := next(b, "key_value")
		if err != nil {
			return dst, err
		}
		b = rest
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case keyValueKey:
			a.key = v
		case keyValueValue:
			// Repeated occurrences of a message field merge; keeping the concatenation
			// reproduces that merge when the value is decoded.
			if hasVal && len(val) > 0 {
				val = append(append([]byte(nil), val...), v...)
			} else {
				val = v
			}
			hasVal = true
		}
	}
	if !hasVal {
		a.typ = ValueNone
		return append(dst, a), nil
	}
	a.typ = ValueRaw
	a.raw = val
	// The typed columns are used only when the AnyValue is exactly one scalar field, so that
	// re-encoding from them is byte-for-byte what was sent.
	num, typ, v, x, rest, err := next(val, "any_value")
	if len(val) == 0 || err != nil || len(rest) != 0 {
		return append(dst, a), nil
	}
	switch {
	case num == anyString && typ == protowire.BytesType:
		a.typ, a.str = ValueString, v
	case num == anyBool && typ == protowire.VarintType && x <= 1:
		a.typ, a.bool = ValueBool, x == 1
	case num == anyInt && typ == protowire.VarintType:
		a.typ, a.num = ValueInt, x
	case num == anyDouble && typ == protowire.Fixed64Type:
		a.typ, a.num = ValueDouble, x
	}
	if a.typ != ValueRaw {
		a.raw = nil
	}
	return append(dst, a), nil
}

// statusValue folds a span's Status presence and code into the status column: 0 for no Status
// message, code+1 for non-negative codes and the code itself for negative ones, so that every
// int32 code survives and the common codes stay small for delta encoding.
func statusValue(has bool, code int32) int64 {
	switch {
	case !has:
		return 0
	case code >= 0:
		return int64(code) + 1
	}
	return int64(code)
}

// statusFromValue inverts statusValue.
func statusFromValue(v int64) (has bool, code int32) {
	switch {
	case v == 0:
		return false, 0
	case v > 0:
		return true, int32(v - 1)
	}
	return true, int32(v)
}
