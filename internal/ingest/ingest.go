// Package ingest checks OTLP trace requests and hands what is valid to the store.
//
// It answers the questions a sender needs answered (is the body protobuf at all, which spans are
// invalid and why, is the server overloaded) and keeps invalid data out of the store: a request
// with some bad spans is stored without them and answered with a partial success.
package ingest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/otlpwire"
)

// Store is where accepted spans go.
type Store interface {
	// Append makes a request durable and readable; payload may be reused afterwards.
	Append(payload []byte) error
	// HeadBytes is the span data held in memory.
	HeadBytes() int64
}

// Config are the ingest limits.
type Config struct {
	// MaxHeadBytes: past this much span data in memory, requests are refused as overloaded until
	// the store catches up (default 96 MiB).
	MaxHeadBytes int64
	// RetryAfter is what overloaded senders are told to wait (default 1s).
	RetryAfter time.Duration
}

// Ingester implements the receivers' consumer.
type Ingester struct {
	store Store
	cfg   Config
	bufs  sync.Pool
}

// New returns an Ingester writing to store.
func New(store Store, cfg Config) *Ingester {
	if cfg.MaxHeadBytes <= 0 {
		cfg.MaxHeadBytes = 96 << 20
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	return &Ingester{store: store, cfg: cfg}
}

// Result tells the sender what happened to a request that was not refused outright.
type Result struct {
	Accepted      int64
	RejectedSpans int64
	Message       string
}

// MalformedError means the request body is not a valid OTLP protobuf message.
type MalformedError struct{ Err error }

func (e *MalformedError) Error() string   { return "request does not decode: " + e.Err.Error() }
func (e *MalformedError) Unwrap() error   { return e.Err }
func (e *MalformedError) Malformed() bool { return true }

// OverloadError means the server cannot take the request now; the sender should retry.
type OverloadError struct {
	Reason string
	After  time.Duration
	// Limited marks a per-sender rate limit rather than the server as a whole being full.
	Limited bool
}

func (e *OverloadError) Error() string             { return "overloaded: " + e.Reason }
func (e *OverloadError) RetryAfter() time.Duration { return e.After }
func (e *OverloadError) RateLimited() bool         { return e.Limited }

// Consume checks and stores one ExportTraceServiceRequest in protobuf wire form.
func (in *Ingester) Consume(ctx context.Context, body []byte) (Result, error) {
	var res Result
	var firstReason string
	err := otlpwire.ScanRequest(body, func(_ *otlpwire.Group, s *otlpwire.Span) error {
		if ok, why := s.Valid(); !ok {
			res.RejectedSpans++
			if firstReason == "" {
				firstReason = why
			}
			return nil
		}
		res.Accepted++
		return nil
	})
	if err != nil {
		return Result{}, &MalformedError{Err: err}
	}
	if res.RejectedSpans > 0 {
		res.Message = fmt.Sprintf("%d of %d spans rejected: %s (first invalid span)", res.RejectedSpans,
			res.RejectedSpans+res.Accepted, firstReason)
	}
	if res.Accepted == 0 {
		return res, nil
	}
	if hb := in.store.HeadBytes(); hb > in.cfg.MaxHeadBytes {
		return Result{}, &OverloadError{Reason: fmt.Sprintf("%d MiB of spans waiting to be written to blocks", hb>>20),
			After: in.cfg.RetryAfter}
	}
	payload := body
	if res.RejectedSpans > 0 {
		bp, _ := in.bufs.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		defer in.bufs.Put(bp)
		*bp, err = otlpwire.FilterRequest((*bp)[:0], body, func(s *otlpwire.Span) bool {
			ok, _ := s.Valid()
			return ok
		})
		if err != nil {
			return Result{}, &MalformedError{Err: err}
		}
		payload = *bp
	}
	if err := in.store.Append(payload); err != nil {
		return Result{}, fmt.Errorf("storing %d spans: %w", res.Accepted, err)
	}
	return res, nil
}
