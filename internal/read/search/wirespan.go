package search

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
)

// Head traces are Span messages in wire form. Search reads them straight from the bytes into
// its own span form, as the proto package would decode them (last value wins for a repeated
// scalar, the last member of a oneof, maps read as absent), but without building a message per
// span, attribute and value, and skipping what the query does not read: attributes of other
// keys, events and links. Decoding with proto.Unmarshal was four fifths of a head search's
// time.

// wireCols is what a head decode keeps, and strings it has made: span names and attribute
// keys repeat across spans and traces, so each is allocated once per search. Not safe for
// concurrent use: one per search.
type wireCols struct {
	allAttrs       bool
	attrs          map[string]string // wanted keys, to themselves
	events, links  bool
	allEventAttrs  bool
	eventAttrs     map[string]string
	allLinkAttrs   bool
	linkAttrs      map[string]string
	statusMessages bool
	strs           map[string]string
}

// intern returns string(b), allocated once per distinct value (up to a bound).
func (c *wireCols) intern(b []byte) string {
	if s, ok := c.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(c.strs) < 4096 {
		c.strs[s] = s
	}
	return s
}

// allWire keeps everything.
func allWire() *wireCols {
	return &wireCols{allAttrs: true, events: true, links: true, allEventAttrs: true, allLinkAttrs: true, statusMessages: true,
		strs: map[string]string{}}
}

func wireColsOf(c block.ScanColumns) *wireCols {
	set := func(keys []string) map[string]string {
		m := make(map[string]string, len(keys))
		for _, k := range keys {
			m[k] = k
		}
		return m
	}
	return &wireCols{allAttrs: c.AllSpanAttrs, attrs: set(c.SpanAttrs),
		events: c.Events || c.AllEventAttrs || len(c.EventAttrs) > 0, allEventAttrs: c.AllEventAttrs, eventAttrs: set(c.EventAttrs),
		links: c.Links || c.AllLinkAttrs || len(c.LinkAttrs) > 0, allLinkAttrs: c.AllLinkAttrs, linkAttrs: set(c.LinkAttrs),
		statusMessages: c.StatusMessage, strs: map[string]string{}}
}

var errWire = errors.New("malformed protobuf")

// wireSpan is a decoded head span and its raw parent ID.
type wireSpan struct {
	s        span
	parentID []byte
}

// field reads one field: its number, type, and the payload (bytes) or value (varint, fixed).
func field(b []byte) (num protowire.Number, typ protowire.Type, v []byte, x uint64, rest []byte, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, 0, nil, errWire
	}
	b = b[n:]
	switch typ {
	case protowire.BytesType:
		v, n = protowire.ConsumeBytes(b)
	case protowire.VarintType:
		x, n = protowire.ConsumeVarint(b)
	case protowire.Fixed64Type:
		x, n = protowire.ConsumeFixed64(b)
	case protowire.Fixed32Type:
		var y uint32
		y, n = protowire.ConsumeFixed32(b)
		x = uint64(y)
	default:
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		return 0, 0, nil, 0, nil, errWire
	}
	return num, typ, v, x, b[n:], nil
}

// decodeWireSpan decodes one Span message, appending its attributes to *arena.
func decodeWireSpan(raw []byte, cols *wireCols, arena *[]attr) (wireSpan, error) {
	var out wireSpan
	s := &out.s
	s.parent = -1
	var start, end uint64
	attr0 := len(*arena)
	for b := raw; len(b) > 0; {
		num, typ, v, x, rest, err := field(b)
		if err != nil {
			return out, err
		}
		b = rest
		switch {
		case num == 2 && typ == protowire.BytesType:
			s.id = v
		case num == 4 && typ == protowire.BytesType:
			out.parentID = v
		case num == 5 && typ == protowire.BytesType:
			s.name = cols.intern(v)
		case num == 6 && typ == protowire.VarintType:
			s.kind = int32(x)
		case num == 7 && typ == protowire.Fixed64Type:
			start = x
		case num == 8 && typ == protowire.Fixed64Type:
			end = x
		case num == 9 && typ == protowire.BytesType:
			if err := appendKeyValue(v, cols, cols.allAttrs, cols.attrs, arena); err != nil {
				return out, err
			}
		case num == 11 && typ == protowire.BytesType && cols.events:
			e, err := decodeWireEvent(v, cols)
			if err != nil {
				return out, err
			}
			s.events = append(s.events, e)
		case num == 13 && typ == protowire.BytesType && cols.links:
			l, err := decodeWireLink(v, cols)
			if err != nil {
				return out, err
			}
			s.links = append(s.links, l)
		case num == 15 && typ == protowire.BytesType:
			// A repeated message field merges, so each field's last value wins.
			for st := v; len(st) > 0; {
				num, typ, v, x, rest, err := field(st)
				if err != nil {
					return out, err
				}
				st = rest
				switch {
				case num == 2 && typ == protowire.BytesType && cols.statusMessages:
					s.statusMsg = string(v)
				case num == 3 && typ == protowire.VarintType:
					s.status = int32(x)
				}
			}
		}
	}
	s.hasParent = len(out.parentID) > 0
	s.start, s.dur = int64(start), int64(end-start)
	if len(*arena) > attr0 {
		s.attrs = (*arena)[attr0:len(*arena):len(*arena)]
	}
	// Events hold offsets from the span start, which may come after them in the message.
	for i := range s.events {
		s.events[i].since -= s.start
	}
	return out, nil
}

// appendKeyValue decodes a KeyValue message onto *arena when its key is wanted.
func appendKeyValue(kv []byte, cols *wireCols, all bool, keys map[string]string, arena *[]attr) error {
	var key, val []byte
	hasVal, merged := false, false
	for b := kv; len(b) > 0; {
		num, typ, v, _, rest, err := field(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case num == 1 && typ == protowire.BytesType:
			key = v
		case num == 2 && typ == protowire.BytesType:
			// A repeated message field merges: the value's fields of every copy, last wins.
			// Only a repeated one costs a copy.
			if !hasVal {
				val = v
			} else {
				if !merged {
					val = append([]byte(nil), val...)
					merged = true
				}
				val = append(val, v...)
			}
			hasVal = true
		}
	}
	var a attr
	if all {
		a.key = cols.intern(key)
	} else {
		k, ok := keys[string(key)]
		if !ok {
			return nil
		}
		a.key = k
	}
	if hasVal {
		var err error
		if a.val, err = wireAnyValue(val, false); err != nil {
			return err
		}
	}
	*arena = append(*arena, a)
	return nil
}

// wireAnyValue decodes an AnyValue message as anyValue reads the decoded message. With view,
// strings share b's bytes instead of being copied: for a value tested and dropped at once.
func wireAnyValue(b []byte, view bool) (value, error) {
	var out value
	for len(b) > 0 {
		num, typ, v, x, rest, err := field(b)
		if err != nil {
			return value{}, err
		}
		b = rest
		switch {
		case num == 1 && typ == protowire.BytesType:
			if view {
				out = value{k: kString, s: unsafe.String(unsafe.SliceData(v), len(v))}
			} else {
				out = value{k: kString, s: string(v)}
			}
		case num == 2 && typ == protowire.VarintType:
			out = value{k: kBool, b: x != 0}
		case num == 3 && typ == protowire.VarintType:
			out = value{k: kInt, i: int64(x)}
		case num == 4 && typ == protowire.Fixed64Type:
			out = value{k: kFloat, f: math.Float64frombits(x)}
		case num == 5 && typ == protowire.BytesType:
			// A oneof member repeated merges into the one before; an array's values append.
			if out.k != kArray {
				out = value{k: kArray}
			}
			for a := v; len(a) > 0; {
				num, typ, ev, _, rest, err := field(a)
				if err != nil {
					return value{}, err
				}
				a = rest
				if num == 1 && typ == protowire.BytesType {
					e, err := wireAnyValue(ev, view)
					if err != nil {
						return value{}, err
					}
					out.arr = append(out.arr, e)
				}
			}
		case num == 6 && typ == protowire.BytesType:
			out = value{k: kNil, s: "\x00map"} // maps have no TraceQL comparison; they read as absent
		case num == 7 && typ == protowire.BytesType:
			out = value{k: kString, s: hex.EncodeToString(v)}
		}
	}
	if out.k == kNil {
		return value{}, nil
	}
	return out, nil
}

func decodeWireEvent(b []byte, cols *wireCols) (event, error) {
	var e event
	var arena []attr
	for len(b) > 0 {
		num, typ, v, x, rest, err := field(b)
		if err != nil {
			return e, err
		}
		b = rest
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			e.since = int64(x) // made an offset once the span's start is known
		case num == 2 && typ == protowire.BytesType:
			e.name = cols.intern(v)
		case num == 3 && typ == protowire.BytesType:
			if err := appendKeyValue(v, cols, cols.allEventAttrs, cols.eventAttrs, &arena); err != nil {
				return e, err
			}
		}
	}
	e.attrs = arena
	return e, nil
}

func decodeWireLink(b []byte, cols *wireCols) (link, error) {
	var l link
	for len(b) > 0 {
		num, typ, v, _, rest, err := field(b)
		if err != nil {
			return l, err
		}
		b = rest
		switch {
		case num == 1 && typ == protowire.BytesType:
			l.traceID = v
		case num == 2 && typ == protowire.BytesType:
			l.spanID = v
		case num == 4 && typ == protowire.BytesType:
			if err := appendKeyValue(v, cols, cols.allLinkAttrs, cols.linkAttrs, &l.attrs); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

// wireError names the trace in a decode error.
func wireError(id [16]byte, err error) error {
	return fmt.Errorf("trace %x: decode span: %w", id, err)
}
