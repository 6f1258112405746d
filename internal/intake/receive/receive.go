// Package receive implements the OTLP trace receivers: gRPC and HTTP
// (protobuf and JSON). Receivers do not decode requests into Go structs;
// they hand the protobuf wire bytes to a Consumer and translate its answer
// into each protocol's success, partial-success and error forms.
package receive

import (
	"context"
	"errors"
	"time"
)

// Consumer is what receivers hand accepted requests to.
type Consumer interface {
	// ConsumeTraces takes a serialized opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest
	// in protobuf wire form. It returns once the valid spans are durable. The consumer does not keep
	// body after returning (it copies what it keeps).
	ConsumeTraces(ctx context.Context, body []byte) (Result, error)
}

// Result reports what a Consumer did with an accepted request.
type Result struct {
	RejectedSpans int64  // spans refused as invalid (partial success)
	Message       string // why, for the partial-success message; empty when nothing was rejected
}

// DefaultMaxRequestBytes bounds a request, after decompression, when the
// configuration leaves the limit unset.
const DefaultMaxRequestBytes = 16 << 20

// failure is how a Consumer error should be reported to the client.
type failure int

const (
	failInternal    failure = iota // unexpected: HTTP 500, gRPC Internal
	failMalformed                  // body does not decode: 400, InvalidArgument
	failRateLimited                // retry later: 429, ResourceExhausted
	failUnavailable                // retry later: 503, Unavailable
	failCanceled                   // the caller went away or ran out of time
)

// The consumer signals error kinds through methods rather than types so
// that it does not have to import this package.
type (
	malformedError   interface{ Malformed() bool }
	retryableError   interface{ RetryAfter() time.Duration }
	rateLimitedError interface{ RateLimited() bool }
)

// classify sorts a Consumer error into a failure kind and, for retryable
// ones, the delay the client should wait.
func classify(err error) (failure, time.Duration) {
	var m malformedError
	if errors.As(err, &m) && m.Malformed() {
		return failMalformed, 0
	}
	var r retryableError
	if errors.As(err, &r) {
		var rl rateLimitedError
		if errors.As(err, &rl) && rl.RateLimited() {
			return failRateLimited, r.RetryAfter()
		}
		return failUnavailable, r.RetryAfter()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return failCanceled, 0
	}
	return failInternal, 0
}

// retryAfterSeconds renders a delay for the HTTP Retry-After header, which
// only has whole seconds; rounding down could tell a client to come back
// before the server is ready, and zero would invite an immediate retry storm.
func retryAfterSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}
