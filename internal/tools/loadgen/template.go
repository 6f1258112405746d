package loadgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// template is one request encoded once, with the byte offsets of every ID and timestamp in it.
// Each send copies the bytes and patches fresh IDs and current times in place, so the generator
// spends microseconds per request, not per span, and leaves the CPU to the server it measures.
type template struct {
	wire   []byte
	traces [][]int // offsets of each trace's 16-byte ID (span trace_id fields)
	spans  [][]int // offsets of each span's 8-byte ID (its span_id and its children's parent_span_id)
	times  []timeOffset
	nspans int
}

// timeOffset is where one fixed64 timestamp sits, and the end of the trace it belongs to: each
// send shifts a trace's times so the trace ends at the moment it is sent. (The template spaces its
// traces seconds apart to keep their byte patterns distinct; shifting them all by one amount
// would date the later ones minutes into the future.)
type timeOffset struct {
	off      int
	traceEnd uint64
}

// newTemplate encodes req, whose trace IDs, span IDs and timestamps must be distinct byte
// patterns (the profiles make them so), and finds where each one landed.
func newTemplate(req *coltracepb.ExportTraceServiceRequest) (*template, error) {
	wire, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("loadgen: encode template: %w", err)
	}
	t := &template{wire: wire}
	seenTrace := map[string]int{}
	seenSpan := map[string]bool{}
	seenTime := map[uint64]string{} // timestamp → its trace ID
	traceEnd := map[string]uint64{}
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				t.nspans++
				if _, ok := seenTrace[string(sp.TraceId)]; !ok {
					seenTrace[string(sp.TraceId)] = len(t.traces)
					t.traces = append(t.traces, allOffsets(wire, sp.TraceId))
				}
				if !seenSpan[string(sp.SpanId)] {
					seenSpan[string(sp.SpanId)] = true
					t.spans = append(t.spans, allOffsets(wire, sp.SpanId))
				}
				tid := string(sp.TraceId)
				for _, ts := range []uint64{sp.StartTimeUnixNano, sp.EndTimeUnixNano} {
					seenTime[ts] = tid
				}
				for _, ev := range sp.Events {
					seenTime[ev.TimeUnixNano] = tid
				}
				traceEnd[tid] = max(traceEnd[tid], sp.EndTimeUnixNano)
			}
		}
	}
	for ts, tid := range seenTime {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], ts)
		// A timestamp pattern must appear only as a fixed64 field value: the profiles space
		// times so no ID or string can contain one.
		for _, o := range allOffsets(wire, b[:]) {
			t.times = append(t.times, timeOffset{off: o, traceEnd: traceEnd[tid]})
		}
	}
	return t, nil
}

func allOffsets(b, pat []byte) []int {
	var offs []int
	for i := 0; ; {
		j := bytes.Index(b[i:], pat)
		if j < 0 {
			return offs
		}
		offs = append(offs, i+j)
		i += j + len(pat)
	}
}

// fill writes the template into dst with fresh IDs from rng and times shifted so that every
// trace ends at now.
func (t *template) fill(dst []byte, rng *fastRand, now uint64) []byte {
	dst = append(dst[:0], t.wire...)
	for _, offs := range t.traces {
		var id [16]byte
		rng.fill(id[:])
		for _, o := range offs {
			copy(dst[o:o+16], id[:])
		}
	}
	for _, offs := range t.spans {
		var id [8]byte
		rng.fill(id[:])
		if id == [8]byte{} {
			id[0] = 1
		}
		for _, o := range offs {
			copy(dst[o:o+8], id[:])
		}
	}
	for _, to := range t.times {
		v := binary.LittleEndian.Uint64(dst[to.off:])
		binary.LittleEndian.PutUint64(dst[to.off:], v-to.traceEnd+now)
	}
	return dst
}

// fastRand is a per-worker xorshift generator: IDs need to be unique, not secret.
type fastRand struct{ s uint64 }

func (r *fastRand) next() uint64 {
	r.s ^= r.s << 13
	r.s ^= r.s >> 7
	r.s ^= r.s << 17
	return r.s
}

func (r *fastRand) fill(b []byte) {
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, r.next())
		b = b[8:]
	}
	if len(b) > 0 {
		var tmp [8]byte
		binary.LittleEndian.PutUint64(tmp[:], r.next())
		copy(b, tmp[:])
	}
}

// Requests returns a generator of request bodies of the named profile, about batch spans each,
// with fresh IDs on every call and times ending now: the load generator's own requests, for
// in-process benchmarks of the ingest path.
func Requests(profile string, batch int, seed uint64) (next func(dst []byte) []byte, spansPerRequest int, err error) {
	t, err := buildProfile(profile, batch)
	if err != nil {
		return nil, 0, err
	}
	rng := &fastRand{s: seed | 1}
	return func(dst []byte) []byte { return t.fill(dst, rng, uint64(time.Now().UnixNano())) }, t.nspans, nil
}
