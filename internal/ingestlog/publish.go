package ingestlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ariadne-tracing/ariadne/internal/otlpwire"
)

// HeaderTenant carries the tenant of a message (also in its subject, encoded).
const HeaderTenant = "Ariadne-Tenant"

// Publish puts one validated ExportTraceServiceRequest (protobuf wire form) into the log for
// tenant, split by trace-ID partition, and returns once JetStream acknowledged every part. An
// error means some part may be missing: the sender must retry the whole request (what arrives
// twice is removed by span ID when read).
func (l *Log) Publish(ctx context.Context, tenant string, payload []byte) error {
	start := time.Now()
	n := l.cfg.Partitions
	var parts []int // partitions present, in order of first appearance
	seen := make(map[int]bool, 4)
	err := otlpwire.ScanRequest(payload, func(_ *otlpwire.Group, s *otlpwire.Span) error {
		if p := Partition(s.TraceID, n); !seen[p] {
			seen[p] = true
			parts = append(parts, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ingestlog: scan request: %w", err)
	}
	if len(parts) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.PublishTimeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, len(parts))
	hdr := nats.Header{HeaderTenant: []string{tenant}}
	for _, p := range parts {
		data := payload
		if len(parts) > 1 {
			// Each part is the request with only this partition's spans; resources, scopes and
			// every other field are copied byte for byte.
			if data, err = otlpwire.FilterRequest(nil, payload, func(s *otlpwire.Span) bool { return Partition(s.TraceID, n) == p }); err != nil {
				return fmt.Errorf("ingestlog: split request: %w", err)
			}
		}
		f, err := l.js.PublishMsgAsync(&nats.Msg{Subject: l.subject(tenant, p), Header: hdr, Data: data})
		if err != nil {
			l.m.publishErrors.Inc()
			return fmt.Errorf("ingestlog: publish to partition %d: %w", p, err)
		}
		futures = append(futures, f)
	}
	// Every future is waited for, even after a failure, so that none is left behind referring
	// to the caller's payload, which it may reuse once Publish returns.
	var errs []error
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("ingestlog: %s: %w", f.Msg().Subject, err))
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("ingestlog: %s: no acknowledgement: %w", f.Msg().Subject, ctx.Err()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		l.m.publishErrors.Inc()
		return err
	}
	l.m.published.Add(float64(len(parts)))
	l.m.publishLatency.Observe(time.Since(start).Seconds())
	return nil
}
