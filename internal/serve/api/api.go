// Package api serves Ariadne's query HTTP API on the query port, in the shapes Grafana Tempo's
// API uses, so Grafana's Tempo data source and Tempo's tooling work against Ariadne unchanged.
package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/insight/analyze"
	"github.com/ariadne-tracing/ariadne/internal/read/query"
	"github.com/ariadne-tracing/ariadne/internal/read/queryscheduler"
	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/storage/partial"
)

// BuildInfo describes the running binary for /api/status/buildinfo.
type BuildInfo struct {
	Version   string
	Revision  string
	Branch    string
	BuildDate string
}

// Server holds the handlers' dependencies.
type Server struct {
	q       *query.Querier
	typical analyze.Typical // an operation's usual duration, for why-slow; nil when unknown

	engine *search.Engine // TraceQL, shared by Tempo's and Jaeger's search endpoints

	graph          GraphSource
	ops            OperationsSource
	generatedSince time.Time
	build          BuildInfo
	log            *slog.Logger
	ready          atomic.Bool
	writeCheck     func() error // nil: always accepting writes
	mux            *routeMux
	handler        http.Handler              // mux inside the per-request wrappers
	sched          *queryscheduler.Scheduler // admits queries; nil runs them at once
	// limits are swapped whole by SetLimits (per-tenant overrides re-read while serving).
	limitsP atomic.Pointer[Limits]
}

// routeMux is a ServeMux that remembers its patterns, so that a test can hold every endpoint to
// account (the tenant-isolation matrix fails when an endpoint is added without being in it).
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

// Routes lists the patterns registered on the API, in registration order.
func (s *Server) Routes() []string { return append([]string(nil), s.mux.patterns...) }

// New returns the API server. It answers /ready with 503 until SetReady(true).
func New(q *query.Querier, build BuildInfo, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{q: q, build: build, log: log, mux: &routeMux{ServeMux: http.NewServeMux()}}
	s.mux.HandleFunc("GET /ready", s.handleReady)
	// Liveness: the process serves HTTP. Unlike /ready it stays 200 while writes are refused
	// (disk full), so an orchestrator does not restart a server that will recover by itself.
	s.mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "live") })
	s.mux.HandleFunc("GET /api/echo", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "echo") })
	s.mux.HandleFunc("GET /api/status/buildinfo", s.handleBuildInfo)
	s.mux.HandleFunc("GET /api/traces/{id}", s.handleTrace(false))
	s.mux.HandleFunc("GET /api/v2/traces/{id}", s.handleTrace(true))
	s.mux.HandleFunc("GET /api/analysis/traces/{id}", s.handleTraceAnalysis)
	s.mux.HandleFunc("GET /api/analysis/diff", s.handleDiff)
	s.mux.HandleFunc("GET /api/analysis/lints", s.handleLintReport)
	s.mux.HandleFunc("GET /api/servicegraph", s.handleServiceGraph)
	s.mux.HandleFunc("GET /api/services/{service}/operations", s.handleOperations)
	s.registerSearch()
	s.mux.HandleFunc("GET /api/analysis/compare", s.handleCompare)
	s.mux.HandleFunc("GET /api/analysis/heatmap", s.handleHeatmap)
	s.registerJaeger()
	s.handler = withPartial(s.mux)
	return s
}

// Handle adds a handler to the API's mux, for parts of the API that live in other packages.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Engine is the TraceQL engine the HTTP search and metrics endpoints use, for other front ends
// (the streaming gRPC API) to answer from the same code.
func (s *Server) Engine() *search.Engine { return s.engine }

// SetTypical gives why-slow a source of operations' usual durations (span metrics).
func (s *Server) SetTypical(t analyze.Typical) { s.typical = t }

// SetReady marks the server as accepting data and queries.
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// SetWriteCheck gives /ready a test of whether data can be stored now: while it returns an
// error, /ready answers 503 with it. Call before serving.
func (s *Server) SetWriteCheck(check func() error) { s.writeCheck = check }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if cost, ok := queryCost(r.URL.Path); ok && s.sched != nil {
		s.admit(w, r, cost, s.handler)
		return
	}
	s.handler.ServeHTTP(w, r)
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	if s.writeCheck != nil {
		if err := s.writeCheck(); err != nil {
			http.Error(w, "not accepting writes: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	fmt.Fprintln(w, "ready")
}

// handleBuildInfo reports the version as Tempo does. Grafana's Tempo data source reads it to
// decide which features to use: from 2.2.0 it may call the streaming gRPC API
// (internal/serve/tempogrpc, served on this listener), so a version at or above that is true only
// because that API is served.
func (s *Server) handleBuildInfo(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"version":   s.build.Version,
		"revision":  s.build.Revision,
		"branch":    s.build.Branch,
		"buildUser": "",
		"buildDate": s.build.BuildDate,
		"goVersion": runtime.Version(),
	})
}

// ParseTraceID accepts a trace ID in hex, 1 to 32 digits; shorter IDs are left-padded with zeros
// as Tempo does, since some clients strip leading zeros.
func ParseTraceID(s string) ([16]byte, error) {
	var id [16]byte
	if len(s) == 0 || len(s) > 32 {
		return id, fmt.Errorf("trace ID %q must be 1 to 32 hex digits", s)
	}
	padded := strings.Repeat("0", 32-len(s)) + s
	if _, err := hex.Decode(id[:], []byte(padded)); err != nil {
		return id, fmt.Errorf("trace ID %q is not hex", s)
	}
	if id == [16]byte{} {
		return id, errors.New("trace ID must not be all zeros")
	}
	return id, nil
}

func parseRange(r *http.Request) (query.TimeRange, error) {
	var tr query.TimeRange
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"start", &tr.Start}, {"end", &tr.End}} {
		v := r.URL.Query().Get(p.name)
		if v == "" {
			continue
		}
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return tr, fmt.Errorf("%s must be unix seconds, got %q", p.name, v)
		}
		*p.dst = unixSeconds(sec, 0)
	}
	if !tr.Start.IsZero() && !tr.End.IsZero() && tr.End.Before(tr.Start) {
		return tr, errors.New("end is before start")
	}
	// A trace's spans can run past the range given for it; widen by a minute at each end.
	if !tr.Start.IsZero() {
		tr.Start = clampTime(tr.Start.Add(-time.Minute))
	}
	if !tr.End.IsZero() {
		tr.End = clampTime(tr.End.Add(time.Minute))
	}
	return tr, nil
}

func wantsProtobuf(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/protobuf") || strings.Contains(accept, "application/x-protobuf")
}

// handleTrace serves trace by ID. v2 answers Tempo's TraceByIDResponse ({"trace":{...}}); v1
// answers Tempo's Trace ({"batches":[...]}). In protobuf both carry the resource spans as field 1
// of the trace message, so a Tempo client decodes them with Tempo's own types.
func (s *Server) handleTrace(v2 bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := ParseTraceID(r.PathValue("id"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		tr, err := parseRange(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		wt, err := s.q.FindTraceWire(ctx, id, tr, s.limits().MaxBytesPerTrace)
		if err != nil {
			s.queryFailed(w, r, "trace by ID "+hex.EncodeToString(id[:]), err)
			return
		}
		if wt == nil {
			writeError(w, http.StatusNotFound, "trace not found")
			return
		}
		if wt.Partial {
			partial.Note(ctx, fmt.Sprintf("trace larger than max_bytes_per_trace (%d bytes): later spans left out", s.limits().MaxBytesPerTrace))
		}
		// The answer streams out span by span; an error past this point can only cut it short.
		if wantsProtobuf(r) {
			w.Header().Set("Content-Type", "application/protobuf")
			err = writeTraceProto(w, wt, v2, s.limits().MaxBytesPerTrace)
		} else {
			w.Header().Set("Content-Type", "application/json")
			err = writeTraceJSON(w, wt, v2, s.limits().MaxBytesPerTrace)
		}
		if err != nil {
			s.log.Debug("trace by ID: answer cut short", "id", hex.EncodeToString(id[:]), "err", err)
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// writeError answers with a plain-text message, as Tempo does, so Grafana shows it verbatim.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}
