package otlpwire

import (
	"math"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of Span.attributes and of the scalar AnyValue cases.
const (
	fieldSpanAttributes = 9

	fieldAnyValueBool   = 2
	fieldAnyValueInt    = 3
	fieldAnyValueDouble = 4
)

// AttrValue is an attribute's AnyValue message, still in wire form.
type AttrValue []byte

// AppendText appends the value as text: strings as they are, booleans, integers and doubles
// formatted as Go does. Arrays, maps and bytes append nothing: metric labels and graph node names
// are the only users, and those take scalars only.
func (v AttrValue) AppendText(dst []byte) []byte {
	b := []byte(v)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return dst
		}
		b = b[n:]
		switch {
		case num == fieldAnyValueString && typ == protowire.BytesType:
			s, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return dst
			}
			return append(dst, s...)
		case num == fieldAnyValueBool && typ == protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return dst
			}
			return strconv.AppendBool(dst, x != 0)
		case num == fieldAnyValueInt && typ == protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return dst
			}
			return strconv.AppendInt(dst, int64(x), 10)
		case num == fieldAnyValueDouble && typ == protowire.Fixed64Type:
			x, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return dst
			}
			return strconv.AppendFloat(dst, math.Float64frombits(x), 'g', -1, 64)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return dst
		}
		b = b[n:]
	}
	return dst
}

// SpanAttributes calls fn with the key and value of every attribute of a Span message (Span.Raw)
// until fn returns false. Nothing is copied, so a caller looking for a few keys pays no allocation.
func SpanAttributes(span []byte, fn func(key []byte, v AttrValue) bool) error {
	return eachAttribute(span, fieldSpanAttributes, fn)
}

// ResourceAttributes is SpanAttributes for a Resource message (Group.Resource).
func ResourceAttributes(resource []byte, fn func(key []byte, v AttrValue) bool) error {
	return eachAttribute(resource, fieldResourceAttributes, fn)
}

func eachAttribute(msg []byte, field protowire.Number, fn func(key []byte, v AttrValue) bool) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return malformed("%v", protowire.ParseError(n))
		}
		msg = msg[n:]
		if num != field || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, msg)
			if n < 0 {
				return malformed("field %d: %v", num, protowire.ParseError(n))
			}
			msg = msg[n:]
			continue
		}
		kv, n := protowire.ConsumeBytes(msg)
		if n < 0 {
			return malformed("attribute: %v", protowire.ParseError(n))
		}
		msg = msg[n:]
		key, val, err := keyValue(kv)
		if err != nil {
			return err
		}
		if !fn(key, AttrValue(val)) {
			return nil
		}
	}
	return nil
}

func keyValue(kv []byte) (key, val []byte, err error) {
	for len(kv) > 0 {
		num, typ, n := protowire.ConsumeTag(kv)
		if n < 0 {
			return nil, nil, malformed("key value: %v", protowire.ParseError(n))
		}
		kv = kv[n:]
		if typ == protowire.BytesType && (num == fieldKeyValueKey || num == fieldKeyValueValue) {
			v, n := protowire.ConsumeBytes(kv)
			if n < 0 {
				return nil, nil, malformed("key value field %d: %v", num, protowire.ParseError(n))
			}
			if num == fieldKeyValueKey {
				key = v
			} else {
				val = v
			}
			kv = kv[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, kv)
		if n < 0 {
			return nil, nil, malformed("key value field %d: %v", num, protowire.ParseError(n))
		}
		kv = kv[n:]
	}
	return key, val, nil
}
