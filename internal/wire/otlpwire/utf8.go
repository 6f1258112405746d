package otlpwire

import (
	"errors"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// Protobuf strings must be valid UTF-8, and the Go protobuf runtime refuses to decode a message
// where one is not. Senders do not all check (hand-rolled exporters, byte slices cast to
// strings), so a request is checked here, on the wire, against the OTLP schema: every string
// field of every message, nested attribute values included. An invalid request is rewritten
// with each invalid sequence replaced by U+FFFD and every span it touched flagged with
// InvalidUTF8Key, so the data is kept and nothing downstream fails to decode it.

// InvalidUTF8Key is the span attribute (bool true) that marks a span whose strings, or whose
// resource's or scope's strings, had invalid UTF-8 replaced at ingest.
const InvalidUTF8Key = "ariadne.invalid_utf8"

// wireSchema is what the walker needs of a message type: which field numbers are strings and
// which are messages (and of what type). Built once from the generated descriptors, so every
// string field of the OTLP schema is covered, including ones added in later versions.
type wireSchema struct {
	name   protoreflect.FullName
	kinds  []fieldKind // by field number
	sub    []*wireSchema
	isSpan bool
	// small: every field number is below 16, in this message and in every message it can hold,
	// so every tag is one ASCII byte. Then if the message's bytes as a whole are valid UTF-8, so
	// is each string field in it: a string starts after the last byte of its length varint and
	// ends before the next tag (or the end), and both are ASCII, hence character boundaries. (A
	// message holding Spans is not small: Span.flags has a two-byte tag, and a string ending in
	// a lead byte right before it would pass as valid when the whole is checked.) One utf8.Valid over the message (fast on ASCII)
	// then replaces a walk of its fields; if it fails (a double or a varint may hold any byte),
	// the walk decides.
	small bool
	// spansField is the field holding the child list whose members inherit this message's
	// invalid strings (ResourceSpans.scope_spans, ScopeSpans.spans); 0 if none.
	spansField protowire.Number
}

type fieldKind uint8

const (
	fieldOther fieldKind = iota
	fieldString
	fieldMessage
)

var (
	schemaOnce    sync.Once
	requestSchema *wireSchema
)

func schemaFor(md protoreflect.MessageDescriptor, memo map[protoreflect.FullName]*wireSchema) *wireSchema {
	if s := memo[md.FullName()]; s != nil {
		return s
	}
	s := &wireSchema{name: md.FullName()}
	memo[md.FullName()] = s
	fields := md.Fields()
	maxNum := 0
	for i := 0; i < fields.Len(); i++ {
		maxNum = max(maxNum, int(fields.Get(i).Number()))
	}
	s.small = maxNum < 16
	s.kinds = make([]fieldKind, maxNum+1)
	s.sub = make([]*wireSchema, maxNum+1)
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch fd.Kind() {
		case protoreflect.StringKind:
			s.kinds[fd.Number()] = fieldString
		case protoreflect.MessageKind:
			if fd.IsMap() {
				continue // OTLP has no maps; leave them alone rather than guess their layout
			}
			s.kinds[fd.Number()] = fieldMessage
			s.sub[fd.Number()] = schemaFor(fd.Message(), memo)
		}
	}
	switch md.FullName() {
	case "opentelemetry.proto.trace.v1.Span":
		s.isSpan = true
	case "opentelemetry.proto.trace.v1.ResourceSpans":
		s.spansField = 2
	case "opentelemetry.proto.trace.v1.ScopeSpans":
		s.spansField = 2
	}
	return s
}

// settleSmall clears small on every schema that can hold a message that is not small.
func settleSmall(memo map[protoreflect.FullName]*wireSchema) {
	for changed := true; changed; {
		changed = false
		for _, s := range memo {
			for _, sub := range s.sub {
				if s.small && sub != nil && !sub.small {
					s.small, changed = false, true
				}
			}
		}
	}
}

func schemaOf(md protoreflect.MessageDescriptor) *wireSchema {
	schemaOnce.Do(func() {
		memo := map[protoreflect.FullName]*wireSchema{}
		requestSchema = schemaFor((&coltracepb.ExportTraceServiceRequest{}).ProtoReflect().Descriptor(), memo)
		settleSmall(memo)
	})
	if md == nil {
		return requestSchema
	}
	if s, ok := schemaCache.Load(md.FullName()); ok {
		return s.(*wireSchema)
	}
	memo := map[protoreflect.FullName]*wireSchema{}
	s := schemaFor(md, memo)
	settleSmall(memo)
	schemaCache.Store(md.FullName(), s)
	return s
}

// schemaCache holds the schemas of the message types read paths decode (Span, Resource, ...).
var schemaCache sync.Map

func (s *wireSchema) kind(num protowire.Number) (fieldKind, *wireSchema) {
	if int(num) >= len(s.kinds) || num < 0 {
		return fieldOther, nil
	}
	return s.kinds[num], s.sub[num]
}

// utf8Check is the UTF-8 check that a scan does as it goes (Batch.Scan): the schemas of the
// messages it walks, and whether every string so far was valid.
type utf8Check struct {
	valid        bool
	rs, ss, span *wireSchema // ResourceSpans, ScopeSpans, Span
}

func newUTF8Check() utf8Check {
	req := schemaOf(nil)
	_, rs := req.kind(fieldRequestResourceSpans)
	_, ss := rs.kind(fieldResourceSpansScopeSpans)
	_, span := ss.kind(fieldScopeSpansSpans)
	return utf8Check{valid: true, rs: rs, ss: ss, span: span}
}

// check looks at field num, holding v, of a message of schema s, as validMsg would.
func (u *utf8Check) check(s *wireSchema, num protowire.Number, v []byte) {
	switch k, sub := s.kind(num); k {
	case fieldString:
		if !utf8.Valid(v) {
			u.valid = false
		}
	case fieldMessage:
		if !(sub.small && utf8.Valid(v)) && !validMsg(v, sub, -1) {
			u.valid = false
		}
	}
}

// ValidUTF8 reports whether every string field of an ExportTraceServiceRequest in wire form is
// valid UTF-8. Malformed wire data counts as valid here: the scanner reports it better.
func ValidUTF8(req []byte) bool { return validMsg(req, schemaOf(nil), -1) }

// validMsg checks msg; skip, when not -1, is a field not to look into.
func validMsg(msg []byte, s *wireSchema, skip protowire.Number) bool {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return true
		}
		msg = msg[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, msg)
			if m < 0 {
				return true
			}
			msg = msg[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(msg)
		if m < 0 {
			return true
		}
		msg = msg[m:]
		if num == skip {
			continue
		}
		switch k, sub := s.kind(num); k {
		case fieldString:
			if !utf8.Valid(v) {
				return false
			}
		case fieldMessage:
			if sub.small && utf8.Valid(v) {
				continue
			}
			if !validMsg(v, sub, -1) {
				return false
			}
		}
	}
	return true
}

// SanitizeUTF8 rewrites an ExportTraceServiceRequest in wire form with every invalid UTF-8
// sequence in a string field replaced by U+FFFD, and flags (InvalidUTF8Key) each span that had
// one in its own strings or in its resource's or scope's. It appends to dst and returns how many
// spans it flagged. Call it only when ValidUTF8 says so: it copies the whole request.
func SanitizeUTF8(dst, req []byte) ([]byte, int, error) {
	var flagged int
	out, err := sanitizeMsg(dst, req, schemaOf(nil), false, &flagged)
	return out, flagged, err
}

var errMalformedUTF8Walk = errors.New("otlpwire: malformed message while replacing invalid UTF-8")

func sanitizeMsg(dst, msg []byte, s *wireSchema, inherited bool, flagged *int) ([]byte, error) {
	if s.spansField != 0 && !inherited {
		inherited = !validMsg(msg, s, s.spansField)
	}
	if s.isSpan && (inherited || !validMsg(msg, s, -1)) {
		dst = appendFlag(dst)
		*flagged++
	}
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return nil, errMalformedUTF8Walk
		}
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, msg[n:])
			if m < 0 {
				return nil, errMalformedUTF8Walk
			}
			dst = append(dst, msg[:n+m]...)
			msg = msg[n+m:]
			continue
		}
		v, m := protowire.ConsumeBytes(msg[n:])
		if m < 0 {
			return nil, errMalformedUTF8Walk
		}
		raw := msg[:n+m]
		msg = msg[n+m:]
		switch k, sub := s.kind(num); {
		case k == fieldString && !utf8.Valid(v):
			dst = protowire.AppendTag(dst, num, protowire.BytesType)
			dst = protowire.AppendString(dst, strings.ToValidUTF8(string(v), "\uFFFD"))
		case k == fieldMessage && (inherited && (sub.isSpan || sub.spansField != 0) || !validMsg(v, sub, -1)):
			// Rewrite into a scratch buffer: the length prefix is known only afterwards.
			inner, err := sanitizeMsg(nil, v, sub, inherited && num == s.spansField, flagged)
			if err != nil {
				return nil, err
			}
			dst = protowire.AppendTag(dst, num, protowire.BytesType)
			dst = protowire.AppendBytes(dst, inner)
		default:
			dst = append(dst, raw...)
		}
	}
	return dst, nil
}

// appendFlag appends the span attribute InvalidUTF8Key = true (Span field 9, a KeyValue).
func appendFlag(dst []byte) []byte {
	var kv []byte
	kv = protowire.AppendTag(kv, 1, protowire.BytesType)
	kv = protowire.AppendString(kv, InvalidUTF8Key)
	kv = protowire.AppendTag(kv, 2, protowire.BytesType)
	kv = protowire.AppendBytes(kv, []byte{2 << 3, 1}) // AnyValue.bool_value = true
	dst = protowire.AppendTag(dst, 9, protowire.BytesType)
	return protowire.AppendBytes(dst, kv)
}

// Unmarshal is proto.Unmarshal for data that may hold invalid UTF-8 in string fields (blocks
// and WAL records written before ingest replaced it): when the strict decode fails, invalid
// sequences are replaced by U+FFFD and it decodes again, so old data stays readable.
func Unmarshal(b []byte, m proto.Message) error {
	err := proto.Unmarshal(b, m)
	if err == nil {
		return nil
	}
	s := schemaOf(m.ProtoReflect().Descriptor())
	if validMsg(b, s, -1) {
		return err
	}
	var n int
	fixed, serr := sanitizeMsg(nil, b, s, false, &n)
	if serr != nil {
		return err
	}
	proto.Reset(m)
	return proto.Unmarshal(fixed, m)
}
