package ingestlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
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
	// One walk over the request splits it (a walk per partition cost a quarter of a node's
	// CPU at 16 partitions). Each part is the request with only that partition's spans;
	// resources, scopes and every other field are copied byte for byte.
	parts, err := otlpwire.SplitRequest(payload, n, func(id []byte) int { return Partition(id, n) })
	if err != nil {
		return fmt.Errorf("ingestlog: split request: %w", err)
	}
	if len(parts) == 0 {
		return nil
	}
	if len(parts) == 1 {
		parts[0].Data = payload // as it arrived
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.PublishTimeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, len(parts))
	hdr := nats.Header{HeaderTenant: []string{tenant}}
	for _, p := range parts {
		f, err := l.js.PublishMsgAsync(&nats.Msg{Subject: l.subject(tenant, p.P), Header: hdr, Data: p.Data})
		if err != nil {
			l.m.publishErrors.Inc()
			return fmt.Errorf("ingestlog: publish to partition %d: %w", p.P, err)
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
