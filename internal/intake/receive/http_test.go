package receive

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func oneSpanRequest() *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8), Name: "s",
		}}}},
	}}}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type httpReply struct {
	code   int
	header http.Header
	body   []byte
}

func post(t *testing.T, url, contentType, contentEncoding string, body []byte) httpReply {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if contentEncoding != "" {
		req.Header.Set("Content-Encoding", contentEncoding)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) httpReply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpReply{code: resp.StatusCode, header: resp.Header, body: body}
}

// statusOf decodes a google.rpc.Status error body in the reply's content type.
func statusOf(t *testing.T, r httpReply) *spb.Status {
	t.Helper()
	st := &spb.Status{}
	var err error
	switch ct := r.header.Get("Content-Type"); ct {
	case contentTypeJSON:
		err = protojson.Unmarshal(r.body, st)
	case contentTypeProtobuf:
		err = proto.Unmarshal(r.body, st)
	default:
		t.Fatalf("error body has content type %q: %s", ct, r.body)
	}
	if err != nil {
		t.Fatalf("error body is not a google.rpc.Status: %v (%q)", err, r.body)
	}
	return st
}

func responseOf(t *testing.T, r httpReply) *coltracepb.ExportTraceServiceResponse {
	t.Helper()
	resp := &coltracepb.ExportTraceServiceResponse{}
	var err error
	switch ct := r.header.Get("Content-Type"); ct {
	case contentTypeJSON:
		err = protojson.Unmarshal(r.body, resp)
	case contentTypeProtobuf:
		err = proto.Unmarshal(r.body, resp)
	default:
		t.Fatalf("response has content type %q", ct)
	}
	if err != nil {
		t.Fatalf("response is not an ExportTraceServiceResponse: %v", err)
	}
	return resp
}

func TestHTTPSuccessAndEmpty(t *testing.T) {
	rec := &recorder{}
	url := startHTTP(t, rec, HTTPConfig{}).URL + TracesPath

	r := post(t, url, "application/protobuf", "", mustMarshal(t, oneSpanRequest()))
	if r.code != http.StatusOK || r.header.Get("Content-Type") != contentTypeProtobuf {
		t.Fatalf("protobuf: %d %q %q", r.code, r.header.Get("Content-Type"), r.body)
	}
	if resp := responseOf(t, r); resp.PartialSuccess != nil {
		t.Errorf("unexpected partial success %v", resp.PartialSuccess)
	}

	r = post(t, url, "application/json; charset=utf-8", "",
		[]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"j","kind":2}]}]}]}`))
	if r.code != http.StatusOK || r.header.Get("Content-Type") != contentTypeJSON || string(r.body) != "{}" {
		t.Fatalf("json: %d %q %q", r.code, r.header.Get("Content-Type"), r.body)
	}
	spans := rec.spans()
	if len(spans) != 2 || spans[1].Name != "j" || spans[1].Kind != tracepb.Span_SPAN_KIND_SERVER || spans[1].TraceId[15] != 0x10 {
		t.Fatalf("consumer got %v", spans)
	}

	calls := rec.callCount()
	for _, tc := range []struct{ ct, body string }{{contentTypeProtobuf, ""}, {contentTypeJSON, "{}"}, {contentTypeJSON, `{"resourceSpans":[]}`}} {
		if r := post(t, url, tc.ct, "", []byte(tc.body)); r.code != http.StatusOK {
			t.Errorf("empty %s request %q: %d %s", tc.ct, tc.body, r.code, r.body)
		}
	}
	if rec.callCount() != calls {
		t.Errorf("empty requests reached the consumer")
	}
}

func TestHTTPErrors(t *testing.T) {
	const limit = 64 << 10
	rec := &recorder{}
	srv := startHTTP(t, rec, HTTPConfig{MaxRequestBytes: limit})
	url := srv.URL + TracesPath
	valid := mustMarshal(t, oneSpanRequest())
	big := mustMarshal(t, &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{SchemaUrl: strings.Repeat("x", limit)}}})
	// Compresses to far below the limit and expands to far above it.
	bomb := gzipped(t, bytes.Repeat([]byte{0}, 8*limit))
	if len(bomb) >= limit {
		t.Fatalf("bomb compresses to %d bytes, not below the limit", len(bomb))
	}

	for _, tc := range []struct {
		name     string
		ct, ce   string
		body     []byte
		code     int
		grpcCode codes.Code
		msg      string // substring of the Status message
	}{
		{"garbage protobuf", contentTypeProtobuf, "", []byte{0x0a, 0xff, 0xff, 0xff}, 400, codes.InvalidArgument, "does not decode"},
		{"broken json", contentTypeJSON, "", []byte(`{"resourceSpans":[`), 400, codes.InvalidArgument, "invalid JSON"},
		{"json schema mismatch", contentTypeJSON, "", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":1}]}]}]}`), 400, codes.InvalidArgument, "name"},
		{"oversized", contentTypeProtobuf, "", big, 413, codes.ResourceExhausted, "exceeds the limit"},
		{"oversized json", contentTypeJSON, "", append(append([]byte(`{"x":"`), bytes.Repeat([]byte("a"), limit)...), `"}`...), 413, codes.ResourceExhausted, "exceeds the limit"},
		{"gzip bomb", contentTypeProtobuf, "gzip", bomb, 413, codes.ResourceExhausted, "after decompression"},
		{"oversized gzip json", contentTypeJSON, "gzip", gzipped(t, big), 413, codes.ResourceExhausted, "exceeds the limit"},
		{"corrupt gzip", contentTypeProtobuf, "gzip", []byte("not gzip at all"), 400, codes.InvalidArgument, "gzip"},
		{"truncated gzip", contentTypeProtobuf, "gzip", gzipped(t, valid)[:10], 400, codes.InvalidArgument, "gzip"},
		{"unknown encoding", contentTypeProtobuf, "br", valid, 415, codes.InvalidArgument, "content encoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, url, tc.ct, tc.ce, tc.body)
			if r.code != tc.code {
				t.Fatalf("status %d, want %d; body %q", r.code, tc.code, r.body)
			}
			if got := r.header.Get("Content-Type"); got != tc.ct {
				t.Errorf("error content type %q, want the request's %q", got, tc.ct)
			}
			st := statusOf(t, r)
			if codes.Code(st.Code) != tc.grpcCode || !strings.Contains(st.Message, tc.msg) {
				t.Errorf("status %v %q, want %v containing %q", codes.Code(st.Code), st.Message, tc.grpcCode, tc.msg)
			}
		})
	}

	// At exactly the limit the body is still accepted.
	exact := mustMarshal(t, &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{SchemaUrl: strings.Repeat("x", limit-8)}}})
	if len(exact) != limit {
		t.Fatalf("test setup: %d bytes", len(exact))
	}
	if r := post(t, url, contentTypeProtobuf, "", exact); r.code != http.StatusOK {
		t.Errorf("body of exactly the limit: %d %q", r.code, r.body)
	}
	if r := post(t, url, contentTypeProtobuf, "gzip", gzipped(t, exact)); r.code != http.StatusOK {
		t.Errorf("gzip body of exactly the limit: %d %q", r.code, r.body)
	}

	t.Run("text/plain", func(t *testing.T) {
		r := post(t, url, "text/plain", "", valid)
		if r.code != http.StatusUnsupportedMediaType || !strings.Contains(string(r.body), "content type") {
			t.Errorf("%d %q", r.code, r.body)
		}
		if r := post(t, url, "", "", valid); r.code != http.StatusUnsupportedMediaType {
			t.Errorf("no content type: %d", r.code)
		}
	})
	t.Run("GET", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, url, nil)
		r := do(t, req)
		if r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != http.MethodPost {
			t.Errorf("%d Allow=%q", r.code, r.header.Get("Allow"))
		}
	})
	t.Run("other path", func(t *testing.T) {
		if r := post(t, srv.URL+"/v1/metrics", contentTypeProtobuf, "", valid); r.code != http.StatusNotFound {
			t.Errorf("%d", r.code)
		}
	})
	t.Run("unsized body", func(t *testing.T) {
		// Without Content-Length the limit has to be enforced while reading.
		req, _ := http.NewRequestWithContext(testContext(t), http.MethodPost, url, io.MultiReader(bytes.NewReader(big)))
		req.Header.Set("Content-Type", contentTypeProtobuf)
		if r := do(t, req); r.code != http.StatusRequestEntityTooLarge {
			t.Errorf("%d %q", r.code, r.body)
		}
	})
}

func TestHTTPConsumerOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		result     Result
		err        error
		code       int
		retryAfter string
	}{
		{"partial success", Result{RejectedSpans: 2, Message: "2 spans have invalid trace ids"}, nil, 200, ""},
		{"rate limited", Result{}, overloadErr{after: 1500 * time.Millisecond, rateLimited: true}, 429, "2"},
		{"overloaded", Result{}, overloadErr{after: 3 * time.Second}, 503, "3"},
		{"overloaded no RateLimited method", Result{}, plainRetryErr{after: 10 * time.Millisecond}, 503, "1"},
		{"zero delay", Result{}, overloadErr{rateLimited: true}, 429, "1"},
		{"disk error", Result{}, errDisk, 500, ""},
	} {
		for _, ct := range []string{contentTypeProtobuf, contentTypeJSON} {
			t.Run(tc.name+"/"+ct, func(t *testing.T) {
				rec := &recorder{respond: func(*coltracepb.ExportTraceServiceRequest) (Result, error) { return tc.result, tc.err }}
				url := startHTTP(t, rec, HTTPConfig{}).URL + TracesPath
				body := mustMarshal(t, oneSpanRequest())
				if ct == contentTypeJSON {
					body = []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"s"}]}]}]}`)
				}
				r := post(t, url, ct, "", body)
				if r.code != tc.code {
					t.Fatalf("status %d, want %d: %q", r.code, tc.code, r.body)
				}
				if got := r.header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
				}
				if tc.err == nil {
					ps := responseOf(t, r).PartialSuccess
					if ps.GetRejectedSpans() != 2 || ps.GetErrorMessage() != tc.result.Message {
						t.Errorf("partial success %v", ps)
					}
					return
				}
				if st := statusOf(t, r); st.Message != tc.err.Error() {
					t.Errorf("status message %q, want %q", st.Message, tc.err.Error())
				}
			})
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int64{
		-time.Second: 1, 0: 1, time.Nanosecond: 1, time.Second: 1,
		time.Second + time.Nanosecond: 2, 90 * time.Second: 90,
	} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}
