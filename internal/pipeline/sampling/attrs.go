package sampling

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Attribute values are read straight from the wire form: a policy looks at one or two keys of a
// trace, and decoding whole spans to find them would cost more than the rest of ingest.

// value is one attribute value as a policy sees it.
type value struct {
	kind int // 1 string, 2 bool, 3 int, 4 double
	str  []byte
	num  float64
	b    bool
}

const (
	spanAttributesField     = 9
	resourceAttributesField = 1
	spanFlagsField          = 16
	spanStartField          = 7
	spanEndField            = 8
)

// eachAttr calls fn for each value of key among the KeyValue fields numbered field of msg;
// elements of array values are passed one by one, so an array matches when any element does.
func eachAttr(msg []byte, field protowire.Number, key string, fn func(v value) bool) bool {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return false
		}
		msg = msg[n:]
		if num != field || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, msg)
			if n < 0 {
				return false
			}
			msg = msg[n:]
			continue
		}
		kv, n := protowire.ConsumeBytes(msg)
		if n < 0 {
			return false
		}
		msg = msg[n:]
		k, v := splitKV(kv)
		if string(k) == key && eachValue(v, fn) {
			return true
		}
	}
	return false
}

func splitKV(kv []byte) (key, val []byte) {
	for len(kv) > 0 {
		num, typ, n := protowire.ConsumeTag(kv)
		if n < 0 {
			return
		}
		kv = kv[n:]
		if typ == protowire.BytesType {
			b, m := protowire.ConsumeBytes(kv)
			if m < 0 {
				return
			}
			switch num {
			case 1:
				key = b
			case 2:
				val = b
			}
			kv = kv[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, kv)
		if m < 0 {
			return
		}
		kv = kv[m:]
	}
	return
}

// eachValue decodes an AnyValue, calling fn for it or, for an array, for each element. It
// returns true as soon as fn does.
func eachValue(av []byte, fn func(v value) bool) bool {
	for len(av) > 0 {
		num, typ, n := protowire.ConsumeTag(av)
		if n < 0 {
			return false
		}
		av = av[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			b, m := protowire.ConsumeBytes(av)
			if m < 0 {
				return false
			}
			if fn(value{kind: 1, str: b}) {
				return true
			}
			av = av[m:]
		case num == 2 && typ == protowire.VarintType:
			x, m := protowire.ConsumeVarint(av)
			if m < 0 {
				return false
			}
			if fn(value{kind: 2, b: x != 0}) {
				return true
			}
			av = av[m:]
		case num == 3 && typ == protowire.VarintType:
			x, m := protowire.ConsumeVarint(av)
			if m < 0 {
				return false
			}
			if fn(value{kind: 3, num: float64(int64(x))}) {
				return true
			}
			av = av[m:]
		case num == 4 && typ == protowire.Fixed64Type:
			x, m := protowire.ConsumeFixed64(av)
			if m < 0 {
				return false
			}
			if fn(value{kind: 4, num: math.Float64frombits(x)}) {
				return true
			}
			av = av[m:]
		case num == 5 && typ == protowire.BytesType: // ArrayValue{repeated AnyValue values = 1}
			arr, m := protowire.ConsumeBytes(av)
			if m < 0 {
				return false
			}
			av = av[m:]
			for len(arr) > 0 {
				an, at, k := protowire.ConsumeTag(arr)
				if k < 0 {
					return false
				}
				arr = arr[k:]
				if an == 1 && at == protowire.BytesType {
					el, k := protowire.ConsumeBytes(arr)
					if k < 0 {
						return false
					}
					arr = arr[k:]
					if eachValue(el, fn) {
						return true
					}
					continue
				}
				k = protowire.ConsumeFieldValue(an, at, arr)
				if k < 0 {
					return false
				}
				arr = arr[k:]
			}
		default:
			m := protowire.ConsumeFieldValue(num, typ, av)
			if m < 0 {
				return false
			}
			av = av[m:]
		}
	}
	return false
}

// spanTimesAndFlags reads a span's start, end and W3C trace flags (the low byte of the flags
// field) and whether the flags field is present at all.
func spanTimesAndFlags(span []byte) (start, end uint64, flags uint32, hasFlags bool) {
	for len(span) > 0 {
		num, typ, n := protowire.ConsumeTag(span)
		if n < 0 {
			return
		}
		span = span[n:]
		switch {
		case num == spanStartField && typ == protowire.Fixed64Type:
			start, n = protowire.ConsumeFixed64(span)
		case num == spanEndField && typ == protowire.Fixed64Type:
			end, n = protowire.ConsumeFixed64(span)
		case num == spanFlagsField && typ == protowire.Fixed32Type:
			var f uint32
			f, n = protowire.ConsumeFixed32(span)
			flags, hasFlags = f, true
		default:
			n = protowire.ConsumeFieldValue(num, typ, span)
		}
		if n < 0 {
			return
		}
		span = span[n:]
	}
	return
}
