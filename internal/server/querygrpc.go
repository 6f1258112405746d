package server

import (
	"net/http"

	"github.com/ariadne-tracing/ariadne/internal/tempogrpc"
)

// withStreamingQuerier serves Tempo's streaming gRPC API (tempopb.StreamingQuerier) next to the
// HTTP API h, on the query listener: Grafana's Tempo data source calls it on the data source
// URL's own host and port, over HTTP/2 (plaintext h2c, or TLS when the listener has it), with no
// fallback to HTTP. Whatever wraps the returned handler (authentication, security headers) sees
// gRPC calls as HTTP/2 requests like any other.
//
// Kept apart from Start so that changes to the query listener's limits and timeouts do not
// collide with it. The listener's http.Server must also accept unencrypted HTTP/2
// (tempogrpc.EnableH2C), which Start does after building it.
func (s *Server) withStreamingQuerier(h http.Handler) http.Handler {
	s.queryGRPC = tempogrpc.NewServer(s.API.Engine(), s.log)
	return tempogrpc.Handler(s.queryGRPC, h)
}
