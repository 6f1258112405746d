package connlimit

import (
	"context"

	"google.golang.org/grpc/stats"
)

// GRPCStatsHandler tells l which connections have RPCs in flight. Give it to the gRPC server
// serving on l with grpc.StatsHandler.
func (l *Listener) GRPCStatsHandler() stats.Handler { return grpcStats{l} }

type grpcStats struct{ l *Listener }

// TagConn finds the listener's connection by its remote address (gRPC does not hand the
// net.Conn to stats handlers) and keeps it in the context its RPCs inherit.
func (h grpcStats) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	if c := h.l.lookup(info.RemoteAddr); c != nil {
		return context.WithValue(ctx, ctxKey{}, c)
	}
	return ctx
}

func (grpcStats) HandleConn(context.Context, stats.ConnStats) {}

func (grpcStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (grpcStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	c := connFrom(ctx)
	if c == nil {
		return
	}
	switch s.(type) {
	case *stats.Begin:
		c.Busy()
	case *stats.End:
		c.Idle()
	}
}
