package otlpwire

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers from opentelemetry/proto/{collector/trace,trace,resource,common}/v1.
const (
	fieldRequestResourceSpans = 1

	fieldResourceSpansResource   = 1
	fieldResourceSpansScopeSpans = 2
	fieldResourceSpansSchemaURL  = 3

	fieldResourceAttributes = 1

	fieldScopeSpansScope     = 1
	fieldScopeSpansSpans     = 2
	fieldScopeSpansSchemaURL = 3

	fieldSpanTraceID      = 1
	fieldSpanSpanID       = 2
	fieldSpanParentSpanID = 4
	fieldSpanName         = 5
	fieldSpanKind         = 6
	fieldSpanStart        = 7
	fieldSpanEnd          = 8
	fieldSpanEvents       = 11
	fieldSpanLinks        = 13
	fieldSpanStatus       = 15

	fieldStatusCode = 3

	fieldKeyValueKey   = 1
	fieldKeyValueValue = 2

	fieldAnyValueString = 1
)

// StatusError is the OTLP status code for a failed span.
const StatusError = 2

// ErrMalformed is wrapped by every error that means the bytes are not a valid protobuf message of
// the expected type.
var ErrMalformed = errors.New("malformed OTLP protobuf")

// Group is one (resource, scope) pair of a request: the spans under it share both. The byte
// slices point into the scanned request.
type Group struct {
	Resource          []byte // Resource message, nil when absent
	ResourceSchemaURL []byte
	Scope             []byte // InstrumentationScope message, nil when absent
	ScopeSchemaURL    []byte
	ServiceName       []byte // resource attribute service.name, nil when absent
}

// Span is what ingest needs to know about one span without decoding it. Raw is the whole Span
// message; the other byte slices point into it.
type Span struct {
	Raw        []byte
	TraceID    []byte
	SpanID     []byte
	ParentID   []byte
	Name       []byte
	Kind       int32
	Start, End uint64
	StatusCode int32
	// Attrs, Events and Links count the span's attributes, events and links, and Longest is the
	// length of its longest attribute, event or link message: an attribute value (the span's, an
	// event's or a link's) can be longer than n bytes only when Longest is. Counted by the scan
	// so that checking the limits costs nothing for the spans within them.
	Attrs, Events, Links int32
	Longest              int32
}

// Valid reports whether the span's IDs have the lengths OTLP requires, and if not, why.
func (s *Span) Valid() (bool, string) {
	switch {
	case len(s.TraceID) != 16:
		return false, fmt.Sprintf("trace ID must be 16 bytes, got %d", len(s.TraceID))
	case len(s.SpanID) != 8:
		return false, fmt.Sprintf("span ID must be 8 bytes, got %d", len(s.SpanID))
	case len(s.ParentID) != 0 && len(s.ParentID) != 8:
		return false, fmt.Sprintf("parent span ID must be empty or 8 bytes, got %d", len(s.ParentID))
	case allZero(s.TraceID):
		return false, "trace ID is all zeros"
	case allZero(s.SpanID):
		return false, "span ID is all zeros"
	}
	return true, ""
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ScanRequest walks an ExportTraceServiceRequest and calls fn for every span with the group it
// belongs to. g and s are reused between calls: fn must copy what it keeps. Unknown fields are
// skipped, as protobuf requires. A structural error stops the walk and wraps ErrMalformed; spans
// already passed to fn stay passed, so callers that must be all-or-nothing scan twice.
func ScanRequest(req []byte, fn func(g *Group, s *Span) error) error {
	return scanRequest(req, nil, fn)
}

// scanRequest is ScanRequest that, when u is not nil, also checks every string field of the
// request for valid UTF-8 as ValidUTF8 does (see scanSpan).
func scanRequest(req []byte, u *utf8Check, fn func(g *Group, s *Span) error) error {
	var g Group
	var s Span
	return eachField(req, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != fieldRequestResourceSpans {
			return nil
		}
		if typ != protowire.BytesType {
			return malformed("resource_spans has wire type %d", typ)
		}
		return scanResourceSpans(v, &g, &s, u, fn)
	})
}

func scanResourceSpans(b []byte, g *Group, s *Span, u *utf8Check, fn func(*Group, *Span) error) error {
	*g = Group{}
	// resource and schema_url may follow scope_spans on the wire, so find them first.
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch num {
		case fieldResourceSpansResource:
			if typ != protowire.BytesType {
				return malformed("resource has wire type %d", typ)
			}
			g.Resource = v
			if u != nil {
				u.check(u.rs, num, v)
			}
			name, err := serviceName(v)
			if err != nil {
				return err
			}
			g.ServiceName = name
		case fieldResourceSpansSchemaURL:
			if typ != protowire.BytesType {
				return malformed("schema_url has wire type %d", typ)
			}
			g.ResourceSchemaURL = v
			if u != nil {
				u.check(u.rs, num, v)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != fieldResourceSpansScopeSpans {
			return nil
		}
		if typ != protowire.BytesType {
			return malformed("scope_spans has wire type %d", typ)
		}
		return scanScopeSpans(v, g, s, u, fn)
	})
}

func scanScopeSpans(b []byte, g *Group, s *Span, u *utf8Check, fn func(*Group, *Span) error) error {
	g.Scope, g.ScopeSchemaURL = nil, nil
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch num {
		case fieldScopeSpansScope:
			if typ != protowire.BytesType {
				return malformed("scope has wire type %d", typ)
			}
			g.Scope = v
			if u != nil {
				u.check(u.ss, num, v)
			}
		case fieldScopeSpansSchemaURL:
			if typ != protowire.BytesType {
				return malformed("schema_url has wire type %d", typ)
			}
			g.ScopeSchemaURL = v
			if u != nil {
				u.check(u.ss, num, v)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != fieldScopeSpansSpans {
			return nil
		}
		if typ != protowire.BytesType {
			return malformed("spans has wire type %d", typ)
		}
		if err := scanSpan(v, s, u); err != nil {
			return err
		}
		return fn(g, s)
	})
}

// ScanSpan reads the fields ingest needs from a Span message into s.
func ScanSpan(b []byte, s *Span) error { return scanSpan(b, s, nil) }

// scanSpan is ScanSpan that, when u is not nil, also checks every string field of the span
// (attributes, events, links and status included) and clears u.valid if one is not UTF-8: the
// check rides on the scan's walk over the span instead of walking the request again.
func scanSpan(b []byte, s *Span, u *utf8Check) error {
	*s = Span{Raw: b}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("span: %v", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldSpanTraceID && typ == protowire.BytesType:
			s.TraceID, n = protowire.ConsumeBytes(b)
		case num == fieldSpanSpanID && typ == protowire.BytesType:
			s.SpanID, n = protowire.ConsumeBytes(b)
		case num == fieldSpanParentSpanID && typ == protowire.BytesType:
			s.ParentID, n = protowire.ConsumeBytes(b)
		case num == fieldSpanName && typ == protowire.BytesType:
			s.Name, n = protowire.ConsumeBytes(b)
			if u != nil && n >= 0 && !utf8.Valid(s.Name) {
				u.valid = false
			}
		case num == fieldSpanKind && typ == protowire.VarintType:
			var k uint64
			k, n = protowire.ConsumeVarint(b)
			s.Kind = int32(k)
		case num == fieldSpanStart && typ == protowire.Fixed64Type:
			s.Start, n = protowire.ConsumeFixed64(b)
		case num == fieldSpanEnd && typ == protowire.Fixed64Type:
			s.End, n = protowire.ConsumeFixed64(b)
		case num == fieldSpanStatus && typ == protowire.BytesType:
			var st []byte
			st, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				c, err := statusCode(st)
				if err != nil {
					return err
				}
				s.StatusCode = c
				if u != nil {
					u.check(u.span, num, st)
				}
			}
		case typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n < 0 {
				break
			}
			switch num {
			case fieldSpanAttributes:
				s.Attrs++
			case fieldSpanEvents:
				s.Events++
			case fieldSpanLinks:
				s.Links++
			}
			if num == fieldSpanAttributes || num == fieldSpanEvents || num == fieldSpanLinks {
				s.Longest = max(s.Longest, int32(min(len(v), math.MaxInt32)))
			}
			if u != nil {
				u.check(u.span, num, v)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return malformed("span field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

func statusCode(b []byte) (int32, error) {
	var code int32
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == fieldStatusCode && typ == protowire.VarintType {
			c, _ := protowire.ConsumeVarint(v)
			code = int32(c)
		}
		return nil
	})
	return code, err
}

// serviceName finds the string value of the service.name attribute in a Resource message.
func serviceName(res []byte) ([]byte, error) {
	var name []byte
	err := eachField(res, func(num protowire.Number, typ protowire.Type, kv []byte) error {
		if num != fieldResourceAttributes || typ != protowire.BytesType {
			return nil
		}
		var key, val []byte
		if err := eachField(kv, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if typ != protowire.BytesType {
				return nil
			}
			switch num {
			case fieldKeyValueKey:
				key = v
			case fieldKeyValueValue:
				val = v
			}
			return nil
		}); err != nil {
			return err
		}
		if string(key) != "service.name" {
			return nil
		}
		return eachField(val, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if num == fieldAnyValueString && typ == protowire.BytesType {
				name = v
			}
			return nil
		})
	})
	return name, err
}

// eachField calls fn with every field of a message. For length-delimited fields v is the
// payload; for varints and fixed-width fields it is the encoded value.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("%v", protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n >= 0 {
				v = b[:n]
			}
		}
		if n < 0 {
			return malformed("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}
