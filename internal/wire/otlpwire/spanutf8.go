package otlpwire

import (
	"sync"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// spanSchema is looked up once: building the descriptor's key allocates a Span, which for a
// 200,000-span answer was 40 MB of garbage.
var spanSchema = sync.OnceValue(func() *wireSchema { return schemaOf((&tracepb.Span{}).ProtoReflect().Descriptor()) })

// SpanValidUTF8 returns raw, one encoded Span, with any invalid UTF-8 in its strings replaced by
// U+FFFD: raw itself when every string is valid (the usual case, checked without decoding),
// else a corrected copy. Answers that stream stored spans out as they are use it, so data
// written before ingest replaced invalid UTF-8 still decodes in strict clients.
func SpanValidUTF8(raw []byte) []byte {
	s := spanSchema()
	if validMsg(raw, s, -1) {
		return raw
	}
	var n int
	fixed, err := sanitizeMsg(nil, raw, s, false, &n)
	if err != nil {
		return raw
	}
	return fixed
}
