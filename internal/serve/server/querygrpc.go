package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ariadne-tracing/ariadne/internal/read/queryscheduler"
	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/tempogrpc"
)

// withStreamingQuerier serves Tempo's streaming gRPC API (tempopb.StreamingQuerier) next to the
// HTTP API h, on the query listener: Grafana's Tempo data source calls it on the data source
// URL's own host and port, over HTTP/2 (plaintext h2c, or TLS when the listener has it), with no
// fallback to HTTP. Whatever wraps the returned handler (authentication, security headers) sees
// gRPC calls as HTTP/2 requests like any other. Each call waits for a slot in the process's query
// scheduler, as the HTTP queries do.
//
// Kept apart from Start so that changes to the query listener's limits and timeouts do not
// collide with it. The listener's http.Server must also accept unencrypted HTTP/2
// (tempogrpc.EnableH2C), which Start does after building it.
func (s *Server) withStreamingQuerier(h http.Handler) http.Handler {
	var opts []grpc.ServerOption
	if s.Queries != nil {
		opts = append(opts, grpc.StreamInterceptor(admitStreams(s.Queries, time.Duration(s.cfg.Query.Timeout))))
	}
	s.queryGRPC = tempogrpc.NewServer(s.API.Engine(), s.log, opts...)
	return tempogrpc.Handler(s.queryGRPC, h)
}

// streamQueryCost is the memory a streaming search or metrics query is estimated to hold, as
// the HTTP API estimates its searches.
const streamQueryCost = 8 << 20

// admitStreams makes every streaming call wait for a slot in sch, in its tenant's queue (the
// x-scope-orgid metadata, which the auth gate has already checked or set). A full queue, or a
// wait as long as timeout, is ResourceExhausted: the server is busy, and Grafana shows the
// message; a client that hangs up while waiting leaves the queue. A call still running at its
// timeout ends with DeadlineExceeded.
func admitStreams(sch *queryscheduler.Scheduler, timeout time.Duration) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := ss.Context()
		tenant := api.DefaultTenant
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(strings.ToLower(api.TenantHeader)); len(v) > 0 && strings.TrimSpace(v[0]) != "" {
				tenant = strings.TrimSpace(v[0])
			}
		}
		wait := ctx
		if timeout > 0 {
			var cancel context.CancelFunc
			wait, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		release, err := sch.Acquire(wait, tenant, streamQueryCost)
		switch {
		case errors.Is(err, queryscheduler.ErrQueueFull):
			return status.Errorf(codes.ResourceExhausted, "too many queries queued for tenant %q; retry in %v", tenant, sch.RetryAfter())
		case err != nil && ctx.Err() == nil:
			return status.Errorf(codes.ResourceExhausted, "query waited %v for a slot; retry in %v", timeout, sch.RetryAfter())
		case err != nil:
			return status.FromContextError(ctx.Err()).Err()
		}
		defer release()
		// The call runs under the same timeout, queueing included, as an HTTP query does.
		err = handler(srv, pacedStream{ss, sch.Pace(wait)})
		if err != nil {
			sch.NoteStopped(wait.Err())
		}
		return err
	}
}

// pacedStream is a stream whose context carries its query's pacing (queryscheduler.Yield).
type pacedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s pacedStream) Context() context.Context { return s.ctx }
