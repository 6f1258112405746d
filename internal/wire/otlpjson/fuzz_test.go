package otlpjson

import (
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func FuzzRequestToProto(f *testing.F) {
	f.Add([]byte(specExample))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"zz","span_id":7,"links":[{"traceId":"01"}]}]}]}]}`))
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"a","value":{"arrayValue":{"values":[{"kvlistValue":{"values":[{"key":"b","value":{"intValue":1e3}}]}}]}}}]}]}]}]}`))
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SERVER","status":{"code":1},"startTimeUnixNano":"-1"}]}]}]}`))
	f.Add([]byte(`[`))
	if js, err := Marshal(richRequest()); err == nil {
		f.Add(js)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		wire, err := RequestToProto(body)
		if err != nil {
			return
		}
		// Whatever is accepted must be a well-formed request.
		if err := proto.Unmarshal(wire, &coltracepb.ExportTraceServiceRequest{}); err != nil {
			t.Fatalf("accepted %q but produced undecodable bytes: %v", body, err)
		}
	})
}
