package receive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpjson"
)

// HTTPConfig configures the OTLP/HTTP receiver.
type HTTPConfig struct {
	// Refused, when set, is told the reason of every request refused before it reaches the
	// consumer ("too_large", "bad_content_type", "malformed"), for self-monitoring.
	Refused func(reason string)

	// MaxRequestBytes bounds a request body, both as sent and after
	// decompression. Zero means DefaultMaxRequestBytes.
	MaxRequestBytes int64
}

// TracesPath is where OTLP/HTTP clients send traces.
const TracesPath = "/v1/traces"

const (
	contentTypeProtobuf = "application/x-protobuf"
	contentTypeJSON     = "application/json"
)

// NewHTTPHandler returns the OTLP/HTTP trace receiver, serving POST
// /v1/traces with protobuf or JSON bodies, optionally gzip-compressed.
func NewHTTPHandler(c Consumer, cfg HTTPConfig) http.Handler {
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	refused := cfg.Refused
	if refused == nil {
		refused = func(string) {}
	}
	return &httpHandler{consumer: c, max: cfg.MaxRequestBytes, refused: refused}
}

type httpHandler struct {
	consumer Consumer
	max      int64
	refused  func(reason string)
}

type encodingKind int

const (
	encProtobuf encodingKind = iota
	encJSON
)

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != TracesPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, fmt.Sprintf("method %s not allowed, OTLP/HTTP uses POST", r.Method), http.StatusMethodNotAllowed)
		return
	}
	enc, ok := requestEncoding(r.Header.Get("Content-Type"))
	if !ok {
		h.refused("bad_content_type")
		http.Error(w, fmt.Sprintf("unsupported content type %q, want %s or %s",
			r.Header.Get("Content-Type"), contentTypeProtobuf, contentTypeJSON), http.StatusUnsupportedMediaType)
		return
	}

	buf := getBuffer()
	defer putBuffer(buf)
	if status, err := h.readBody(r, buf); err != nil {
		if status == http.StatusRequestEntityTooLarge {
			h.refused("too_large")
		} else {
			h.refused("malformed")
		}
		writeStatus(w, enc, status, err.Error(), 0)
		return
	}

	body := buf.Bytes()
	if enc == encJSON {
		wire, err := otlpjson.RequestToProto(body)
		if err != nil {
			h.refused("malformed")
			writeStatus(w, enc, http.StatusBadRequest, err.Error(), 0)
			return
		}
		body = wire
	}

	var res Result
	if len(body) > 0 {
		var err error
		res, err = h.consumer.ConsumeTraces(withTenant(r.Context(), r.Header.Get(TenantHeader)), body)
		if err != nil {
			writeConsumerError(w, enc, err)
			return
		}
	}
	writeMessage(w, enc, http.StatusOK, exportResponse(res))
}

// requestEncoding picks the body format from a Content-Type header,
// ignoring parameters such as charset.
func requestEncoding(contentType string) (encodingKind, bool) {
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, false
	}
	switch mediaType {
	case contentTypeProtobuf, "application/protobuf":
		return encProtobuf, true
	case contentTypeJSON:
		return encJSON, true
	}
	return 0, false
}

var errTooLarge = errors.New("too large")

// readBody reads the whole request body, decompressed, into buf, and on
// failure returns the HTTP status to answer with.
func (h *httpHandler) readBody(r *http.Request, buf *bytes.Buffer) (int, error) {
	if r.ContentLength > h.max {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, h.max)
	}
	var src io.Reader = r.Body
	ce := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch ce {
	case "", "identity":
		if r.ContentLength > 0 {
			buf.Grow(int(r.ContentLength))
		}
	case "gzip", "x-gzip":
		// The compressed stream is bounded as well, so a client cannot
		// keep the connection busy with endless compressed padding.
		zr, err := getGzipReader(&limitedReader{r: r.Body, n: h.max})
		if err != nil {
			if errors.Is(err, errTooLarge) {
				return http.StatusRequestEntityTooLarge, fmt.Errorf("compressed request body exceeds the limit of %d bytes", h.max)
			}
			return http.StatusBadRequest, fmt.Errorf("reading gzip request body: %w", err)
		}
		defer putGzipReader(zr)
		src = zr
	default:
		return http.StatusUnsupportedMediaType, fmt.Errorf("unsupported content encoding %q, want gzip or none", ce)
	}

	_, err := buf.ReadFrom(&limitedReader{r: src, n: h.max})
	switch {
	case errors.Is(err, errTooLarge):
		if ce == "" || ce == "identity" {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("request body exceeds the limit of %d bytes", h.max)
		}
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body exceeds the limit of %d bytes (compressed or after decompression)", h.max)
	case err != nil && ce != "" && ce != "identity":
		return http.StatusBadRequest, fmt.Errorf("reading gzip request body: %w", err)
	case err != nil:
		return http.StatusBadRequest, fmt.Errorf("reading request body: %w", err)
	}
	return 0, nil
}

// limitedReader fails with errTooLarge once more than n bytes are read,
// unlike io.LimitReader, whose silent EOF would let a truncated body through.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, errTooLarge
	}
	// Ask for one byte past the limit so an exactly-full body still ends
	// in a clean EOF while anything longer is caught.
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, errTooLarge
	}
	return n, err
}

func writeConsumerError(w http.ResponseWriter, enc encodingKind, err error) {
	kind, delay := classify(err)
	switch kind {
	case failMalformed:
		writeStatus(w, enc, http.StatusBadRequest, fmt.Sprintf("request does not decode: %v", err), 0)
	case failRateLimited:
		writeStatus(w, enc, http.StatusTooManyRequests, err.Error(), delay)
	case failUnavailable:
		writeStatus(w, enc, http.StatusServiceUnavailable, err.Error(), delay)
	case failCanceled:
		// The client has most likely gone; if not, it may try again.
		writeStatus(w, enc, http.StatusServiceUnavailable, err.Error(), 0)
	default:
		writeStatus(w, enc, http.StatusInternalServerError, err.Error(), 0)
	}
}

// grpcCodeFor fills google.rpc.Status.code, which carries gRPC codes even
// over HTTP.
func grpcCodeFor(httpStatus int) codes.Code {
	switch httpStatus {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusUnsupportedMediaType:
		return codes.InvalidArgument
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	default:
		return codes.Internal
	}
}

// writeStatus answers with a google.rpc.Status body, as OTLP/HTTP asks for
// errors. retryAfter > 0 adds a Retry-After header; 429 and 503 always get
// one because clients treat them as retryable.
func writeStatus(w http.ResponseWriter, enc encodingKind, httpStatus int, msg string, retryAfter time.Duration) {
	if retryAfter > 0 || httpStatus == http.StatusTooManyRequests || httpStatus == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(retryAfter), 10))
	}
	writeMessage(w, enc, httpStatus, &spb.Status{Code: int32(grpcCodeFor(httpStatus)), Message: msg})
}

var jsonResponseOpts = protojson.MarshalOptions{}

func writeMessage(w http.ResponseWriter, enc encodingKind, httpStatus int, m proto.Message) {
	var (
		out []byte
		err error
		ct  string
	)
	if enc == encJSON {
		out, err = jsonResponseOpts.Marshal(m)
		ct = contentTypeJSON
	} else {
		out, err = proto.Marshal(m)
		ct = contentTypeProtobuf
	}
	if err != nil {
		// Responses are small fixed-shape messages; failing to encode one
		// is a bug, but the client still deserves a status code.
		http.Error(w, fmt.Sprintf("encoding response: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(httpStatus)
	_, _ = w.Write(out)
}

// maxPooledBuffer keeps the pool from pinning memory after a burst of
// unusually large requests.
const maxPooledBuffer = 4 << 20

var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer { return bufferPool.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	bufferPool.Put(b)
}

var gzipPool sync.Pool // *gzip.Reader

func getGzipReader(r io.Reader) (*gzip.Reader, error) {
	if zr, ok := gzipPool.Get().(*gzip.Reader); ok {
		if err := zr.Reset(r); err != nil {
			gzipPool.Put(zr)
			return nil, err
		}
		return zr, nil
	}
	return gzip.NewReader(r)
}

func putGzipReader(zr *gzip.Reader) {
	gzipPool.Put(zr)
}
