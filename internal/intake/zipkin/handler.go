package zipkin

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxBodyBytes caps a request body after decompression; a gzip body could otherwise expand
// without bound.
const MaxBodyBytes = 32 << 20

// Handler serves POST /api/v2/spans. Bodies are Zipkin v2 JSON, plain or gzip; each is translated
// with ToOTLP and passed to consume. Answers follow Zipkin: 202 Accepted with no body on success,
// 400 for a body that is not a valid span list, 415 for a content type other than
// application/json (a missing one is taken as JSON, as Zipkin does) or an unknown encoding, 413
// past MaxBodyBytes.
//
// Errors from consume are answered by what they say of themselves, so ingest's errors need no
// import here: Malformed() bool true means 400; RetryAfter() time.Duration means 503 with a
// Retry-After header, or 429 if RateLimited() bool is true as well; a cancelled context means
// 503; anything else is 500. rejected spans do not fail the request, since Zipkin has no way to
// report a partial success; their count is in the X-Rejected-Spans header.
func Handler(consume func(ctx context.Context, otlp []byte) (rejected int64, err error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "only POST is supported", http.StatusMethodNotAllowed)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || mt != "application/json" {
				http.Error(w, fmt.Sprintf("unsupported content type %q: only application/json is accepted", ct), http.StatusUnsupportedMediaType)
				return
			}
		}
		var body io.Reader = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
		case "", "identity":
		case "gzip":
			zr, err := gzip.NewReader(body)
			if err != nil {
				http.Error(w, fmt.Sprintf("gzip body: %v", err), http.StatusBadRequest)
				return
			}
			defer zr.Close()
			body = zr
		default:
			http.Error(w, fmt.Sprintf("unsupported content encoding %q", enc), http.StatusUnsupportedMediaType)
			return
		}
		data, err := io.ReadAll(io.LimitReader(body, MaxBodyBytes+1))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, fmt.Sprintf("read body: %v", err), http.StatusBadRequest)
			return
		}
		if len(data) > MaxBodyBytes {
			http.Error(w, "body too large once decompressed", http.StatusRequestEntityTooLarge)
			return
		}
		otlp, err := ToOTLP(data)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rejected, err := consume(r.Context(), otlp)
		if err != nil {
			writeConsumeError(w, err)
			return
		}
		if rejected > 0 {
			w.Header().Set("X-Rejected-Spans", strconv.FormatInt(rejected, 10))
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

func writeConsumeError(w http.ResponseWriter, err error) {
	var malformed interface{ Malformed() bool }
	var retry interface{ RetryAfter() time.Duration }
	switch {
	case errors.As(err, &malformed) && malformed.Malformed():
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.As(err, &retry):
		secs := int64((retry.RetryAfter() + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
		status := http.StatusServiceUnavailable
		var limited interface{ RateLimited() bool }
		if errors.As(err, &limited) && limited.RateLimited() {
			status = http.StatusTooManyRequests
		}
		http.Error(w, err.Error(), status)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
