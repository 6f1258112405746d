package server

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/connlimit"
)

// serveHTTP serves srv on l behind the connection cap and with the configured timeouts: a client
// that opens sockets and sends nothing, trickles its headers or never reads the answer holds a
// descriptor and a goroutine only until a timeout, and never more than the cap of them.
func serveHTTP(srv *http.Server, l net.Listener, sc config.Server, tc *tls.Config) (*connlimit.Listener, func() error) {
	ll := connlimit.NewListener(l, sc.HTTPConnLimit)
	connlimit.HTTPTimeouts{ReadHeader: time.Duration(sc.HTTPReadHeaderTimeout), Read: time.Duration(sc.HTTPReadTimeout),
		Write: time.Duration(sc.HTTPWriteTimeout), Idle: time.Duration(sc.HTTPIdleTimeout)}.Apply(srv)
	ll.WireHTTP(srv)
	// HTTP/2 connections (Tempo's streaming gRPC on the query port, HTTP/2 over TLS) hold as
	// many calls at once as OTLP/gRPC's do.
	if sc.GRPCMaxConcurrentStreams > 0 {
		if srv.HTTP2 == nil {
			srv.HTTP2 = &http.HTTP2Config{}
		}
		srv.HTTP2.MaxConcurrentStreams = int(sc.GRPCMaxConcurrentStreams)
	}
	if tc != nil {
		// TLS sits on top of the connection cap, which still sees (and may close) the socket.
		srv.TLSConfig = tc
		return ll, func() error { return srv.Serve(tls.NewListener(ll, tc)) }
	}
	return ll, func() error { return srv.Serve(ll) }
}

// grpcProtections are the OTLP/gRPC server's limits: streams per connection, keepalive
// enforcement (a client pinging more often than allowed is disconnected), idle connections
// closed, and the connection cap's view of which connections are busy. Flow control is gRPC's
// own and per stream: a client that never reads its answers fills only its own window.
func grpcProtections(sc config.Server, l *connlimit.Listener) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(sc.GRPCMaxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Duration(sc.GRPCMinTimeBetweenPings),
			PermitWithoutStream: sc.GRPCPingWithoutStreamAllow}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: time.Duration(sc.GRPCMaxConnectionIdle),
			Time: time.Duration(sc.GRPCKeepaliveTime), Timeout: time.Duration(sc.GRPCKeepaliveTimeout)}),
		grpc.StatsHandler(l.GRPCStatsHandler()),
	}
	if d := time.Duration(sc.HTTPReadHeaderTimeout); d > 0 {
		// A socket that has not finished the HTTP/2 handshake in this long is closed.
		opts = append(opts, grpc.ConnectionTimeout(d))
	}
	return opts
}

// registerConnMetrics exports each listener's connection counts.
func registerConnMetrics(reg prometheus.Registerer, listeners map[string]*connlimit.Listener) {
	for name, l := range listeners {
		labels := prometheus.Labels{"listener": name}
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ariadne_listener_connections", ConstLabels: labels,
				Help: "Connections open on the listener."}, func() float64 { return float64(l.Open()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ariadne_listener_connections_evicted_total", ConstLabels: labels,
				Help: "Idle connections closed to make room under the connection cap."}, func() float64 { return float64(l.Evicted()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ariadne_listener_connections_refused_total", ConstLabels: labels,
				Help: "New connections closed because every connection under the cap was busy."}, func() float64 { return float64(l.Refused()) }),
		)
	}
}
