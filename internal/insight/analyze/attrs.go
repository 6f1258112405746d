package analyze

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
)

// valueString renders an attribute value as text; arrays and maps use a
// compact bracketed form so equal values render equally.
func valueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		parts := make([]string, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, valueString(e))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case *commonpb.AnyValue_KvlistValue:
		parts := make([]string, 0, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			parts = append(parts, kv.GetKey()+"="+valueString(kv.GetValue()))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	return ""
}

// valueSize is the payload size of a value in bytes, the figure exporters and
// backends pay for; numbers and booleans count as 8.
func valueSize(v *commonpb.AnyValue) int {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return len(x.StringValue)
	case *commonpb.AnyValue_BytesValue:
		return len(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		n := 0
		for _, e := range x.ArrayValue.GetValues() {
			n += valueSize(e)
		}
		return n
	case *commonpb.AnyValue_KvlistValue:
		n := 0
		for _, kv := range x.KvlistValue.GetValues() {
			n += len(kv.GetKey()) + valueSize(kv.GetValue())
		}
		return n
	case nil:
		return 0
	}
	return 8
}

// Semantic-convention attributes, current name first, then the names older
// instrumentation (and the guide's own examples) still send.
var (
	keysDBSystem     = []string{"db.system", "db.system.name"}
	keysDBCollection = []string{"db.collection.name", "db.collection", "db.mongodb.collection", "db.sql.table", "db.namespace"}
	keysDBOperation  = []string{"db.operation.name", "db.operation"}
	keysHTTPMethod   = []string{"http.request.method", "http.method"}
	keysHTTPStatus   = []string{"http.response.status_code", "http.status_code"}
	keysHTTPRoute    = []string{"http.route", "url.path", "http.target"}
	keysHTTPURL      = []string{"url.full", "http.url"}
	keysServerAddr   = []string{"server.address", "net.peer.name", "net.host.name"}
	keysMsgSystem    = []string{"messaging.system"}
	keysMsgDest      = []string{"messaging.destination.name", "messaging.destination"}
	keysRPCSystem    = []string{"rpc.system"}
)

// Label names a span for a sentence: its name plus whatever semantic
// conventions add that the name does not already say, e.g.
// "pymongo.insert_one on tasks (db.system=mongodb)".
func Label(s *Span) string {
	name := s.Name
	has := func(v string) bool { return v == "" || strings.Contains(strings.ToLower(name), strings.ToLower(v)) }
	var b strings.Builder
	b.WriteString(name)
	switch {
	case s.firstAttr(keysDBSystem...) != "":
		op := s.firstAttr(keysDBOperation...)
		coll := s.firstAttr(keysDBCollection...)
		if !has(coll) {
			b.WriteString(" on " + coll)
		}
		b.WriteString(" (db.system=" + s.firstAttr(keysDBSystem...))
		if !has(op) {
			b.WriteString(", db.operation=" + op)
		}
		b.WriteString(")")
	case s.firstAttr(keysHTTPMethod...) != "":
		// A name that already holds a path ("POST /api/tasks/{id}/reindex") names the route; a raw
		// path after it (url.path, the URL's) would only repeat it with an ID in.
		target := s.StringAttr("http.route")
		if target == "" && !strings.Contains(name, "/") {
			target = s.firstAttr(keysHTTPRoute...)
			if target == "" {
				if u, err := url.Parse(s.firstAttr(keysHTTPURL...)); err == nil {
					target = u.Path
				}
			}
		}
		if !has(target) {
			b.WriteString(" " + target)
		}
		if addr := s.firstAttr(keysServerAddr...); !has(addr) && s.Kind == kindClient {
			b.WriteString(" to " + addr)
		}
	case s.firstAttr(keysRPCSystem...) != "":
		svc, method := s.StringAttr("rpc.service"), s.StringAttr("rpc.method")
		if !has(svc) || !has(method) {
			b.WriteString(" " + strings.Trim(svc+"/"+method, "/"))
		}
		b.WriteString(" (rpc.system=" + s.firstAttr(keysRPCSystem...) + ")")
	case s.firstAttr(keysMsgSystem...) != "":
		if dest := s.firstAttr(keysMsgDest...); !has(dest) {
			b.WriteString(" on " + dest)
		}
		b.WriteString(" (messaging.system=" + s.firstAttr(keysMsgSystem...) + ")")
	}
	return b.String()
}

// formatDuration renders d with about three significant digits, as people
// read latencies: 250ms, 1.25s, 12.5ms, 850µs.
func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return trimFloat(d.Seconds()) + "s"
	case d >= time.Millisecond:
		return trimFloat(float64(d)/float64(time.Millisecond)) + "ms"
	case d >= time.Microsecond:
		return trimFloat(float64(d)/float64(time.Microsecond)) + "µs"
	}
	return fmt.Sprintf("%dns", int64(d))
}

func trimFloat(f float64) string {
	prec := 0
	switch {
	case f < 10:
		prec = 2
	case f < 100:
		prec = 1
	}
	s := strconv.FormatFloat(f, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
