// Package guidetrace emits the traces of the tracing guide our users follow
// (shared/guide.txt) through the real OpenTelemetry Go SDK, with fixed IDs and
// explicit timestamps, so tests across Ariadne can send them to a server or an
// in-memory exporter and compare every field against stable expectations.
//
// Typical use:
//
//	exp := tracetest.NewInMemoryExporter()
//	p := guidetrace.NewProviders(sdktrace.WithSyncer(exp))
//	traces, err := guidetrace.EmitAll(ctx, p, guidetrace.DefaultBase)
//	// ... then p.ForceFlush(ctx): flushing is always the caller's job.
//
// Every span the emitters start is ended before they return, but an exporter
// behind a batching processor only sees them after ForceFlush or Shutdown.
//
// The exception.stacktrace attribute written by RecordError comes from
// runtime.Stack and therefore depends on build paths and goroutine IDs;
// golden files must normalise or drop it.
package guidetrace

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Resource values shared by the guide's services.
const (
	ServiceTaskAPI      = "task-api"
	ServiceNotification = "notification-service"
	ServiceVersion      = "1.0.0"
	Environment         = "development"
)

// Names of the traces, as used in Trace.Name.
const (
	NameCreateTask       = "create-task"
	NamePermissionDenied = "permission-denied-delete"
	NameNotify           = "cross-service-notify"
	NameProcessMultiple  = "process-multiple-tasks"
)

// DefaultBase is the guide's task.created_at ("2024-01-15T10:30:00Z"); using it
// as the base makes the create-task trace match the guide literally.
var DefaultBase = time.Date(2024, time.January, 15, 10, 30, 0, 0, time.UTC)

// Resource returns the resource a guide service reports. It is schemaless so
// merging with whatever the caller adds cannot fail on a schema conflict.
func Resource(service string) *sdkresource.Resource {
	return sdkresource.NewSchemaless(
		attribute.String("service.name", service),
		attribute.String("service.version", ServiceVersion),
		attribute.String("deployment.environment", Environment),
	)
}

// NewTracerProvider builds an SDK provider for service with the options the
// emitters rely on (Resource, an IDGenerator, always-on sampling); opts come
// last so the caller adds the span processor/exporter and may override.
//
// The SDK merges OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME from the
// environment beneath Resource, so tests comparing resources should not set them.
func NewTracerProvider(service string, opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	base := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(Resource(service)),
		sdktrace.WithIDGenerator(&IDGenerator{}),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
	}
	return sdktrace.NewTracerProvider(append(base, opts...)...)
}

// Providers holds one provider per guide service; the notify trace crosses
// from TaskAPI to Notification.
type Providers struct {
	TaskAPI      *sdktrace.TracerProvider
	Notification *sdktrace.TracerProvider
}

// NewProviders builds both services' providers with the same options, which
// usually means both export to the same place.
func NewProviders(opts ...sdktrace.TracerProviderOption) Providers {
	return Providers{
		TaskAPI:      NewTracerProvider(ServiceTaskAPI, opts...),
		Notification: NewTracerProvider(ServiceNotification, opts...),
	}
}

// ForceFlush flushes both providers.
func (p Providers) ForceFlush(ctx context.Context) error {
	return errors.Join(p.TaskAPI.ForceFlush(ctx), p.Notification.ForceFlush(ctx))
}

// Shutdown shuts both providers down, flushing what is pending.
func (p Providers) Shutdown(ctx context.Context) error {
	return errors.Join(p.TaskAPI.Shutdown(ctx), p.Notification.Shutdown(ctx))
}

// Trace describes an emitted trace: what a backend storing it must give back.
type Trace struct {
	Name        string
	TraceID     trace.TraceID
	RootSpanID  trace.SpanID
	RootName    string
	RootService string
	// Services lists the service.name values in the order they first appear.
	Services   []string
	SpanCount  int
	ErrorCount int
	Start      time.Time
	End        time.Time
	// Spans is sorted by start time; spans starting together keep start order.
	Spans []Span
	// Headers holds what crossed the process boundary (notify trace only).
	Headers http.Header
}

// Duration is the root span's duration.
func (t Trace) Duration() time.Duration { return t.End.Sub(t.Start) }

// Span is one emitted span as the emitter intended it.
type Span struct {
	Name         string
	TraceID      trace.TraceID
	Service      string
	Scope        string
	SpanID       trace.SpanID
	ParentSpanID trace.SpanID
	Kind         trace.SpanKind
	Start        time.Time
	End          time.Time
	Status       codes.Code
	// StatusMessage is only kept for codes.Error, as the SDK does.
	StatusMessage string
}

// Span returns the first span named name, for tests that look one up.
func (t Trace) Span(name string) (Span, bool) {
	for _, s := range t.Spans {
		if s.Name == name {
			return s, true
		}
	}
	return Span{}, false
}

// EmitAll emits every guide trace, each a second after the previous one so
// time-range queries can tell them apart. base zero means DefaultBase.
func EmitAll(ctx context.Context, p Providers, base time.Time) ([]Trace, error) {
	if p.TaskAPI == nil || p.Notification == nil {
		return nil, errors.New("guidetrace: both providers are required")
	}
	if base.IsZero() {
		base = DefaultBase
	}
	return []Trace{
		CreateTask(ctx, p.TaskAPI, base),
		PermissionDenied(ctx, p.TaskAPI, base.Add(1*time.Second)),
		Notify(ctx, p.TaskAPI, p.Notification, base.Add(2*time.Second)),
		ProcessMultiple(ctx, p.TaskAPI, base.Add(3*time.Second)),
	}, nil
}

// recorder keeps what each emitter started; the batch trace starts spans from
// several goroutines, hence the lock.
type recorder struct {
	name string
	mu   sync.Mutex
	out  []Span
	// order holds each span's start sequence; a span starting at the same
	// instant as its parent must still sort after it.
	order []int
	seq   int
}

type spanHandle struct {
	trace.Span
	rec  *recorder
	fact Span
	seq  int
}

// start begins a span with a planned ID at an explicit time. The tracer is
// looked up per call because the guide uses one tracer per module.
func (r *recorder) start(ctx context.Context, tp trace.TracerProvider, service, scope, name string,
	tid trace.TraceID, sid trace.SpanID, at time.Time, opts ...trace.SpanStartOption,
) (context.Context, *spanHandle) {
	tracer := tp.Tracer(scope, trace.WithInstrumentationVersion(scopeVersion(scope)))
	parent := trace.SpanContextFromContext(ctx)
	opts = append(opts, trace.WithTimestamp(at))
	ctx, s := tracer.Start(ContextWithIDs(ctx, tid, sid), name, opts...)
	cfg := trace.NewSpanStartConfig(opts...)
	kind := cfg.SpanKind()
	if kind == trace.SpanKindUnspecified {
		// The SDK exports an unspecified kind as internal.
		kind = trace.SpanKindInternal
	}
	r.mu.Lock()
	r.seq++
	seq := r.seq
	r.mu.Unlock()
	h := &spanHandle{Span: s, rec: r, seq: seq, fact: Span{
		Name:         name,
		TraceID:      s.SpanContext().TraceID(),
		Service:      service,
		Scope:        scope,
		SpanID:       s.SpanContext().SpanID(),
		ParentSpanID: parent.SpanID(),
		Kind:         kind,
		Start:        at,
	}}
	return ctx, h
}

// instrumentationScopes are the auto-instrumentation libraries the guide
// relies on; they version separately from the application.
var instrumentationScopes = []string{ScopeFastAPI, ScopePyMongo, ScopeHTTPX}

const instrumentationVersion = "0.48b0"

func scopeVersion(scope string) string {
	if slices.Contains(instrumentationScopes, scope) {
		return instrumentationVersion
	}
	return ServiceVersion
}

func (h *spanHandle) status(c codes.Code, msg string) {
	h.SetStatus(c, msg)
	// Mirror the SDK: Ok is final, and a later Error cannot replace it.
	if h.fact.Status > c {
		return
	}
	h.fact.Status = c
	h.fact.StatusMessage = ""
	if c == codes.Error {
		h.fact.StatusMessage = msg
	}
}

func (h *spanHandle) end(at time.Time) {
	h.End(trace.WithTimestamp(at))
	h.fact.End = at
	h.rec.mu.Lock()
	h.rec.out = append(h.rec.out, h.fact)
	h.rec.order = append(h.rec.order, h.seq)
	h.rec.mu.Unlock()
}

// recordError records err as the guide's record_exception does: an exception
// event with a stack trace, at an explicit time.
func (h *spanHandle) recordError(err error, at time.Time) {
	h.RecordError(err, trace.WithStackTrace(true), trace.WithTimestamp(at))
}

func (r *recorder) result() Trace {
	r.mu.Lock()
	idx := make([]int, len(r.out))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := r.out[a].Start.Compare(r.out[b].Start); c != 0 {
			return c
		}
		return r.order[a] - r.order[b]
	})
	spans := make([]Span, len(idx))
	for i, j := range idx {
		spans[i] = r.out[j]
	}
	r.mu.Unlock()
	t := Trace{Name: r.name, Spans: spans, SpanCount: len(spans)}
	for _, s := range spans {
		if !s.ParentSpanID.IsValid() && t.RootName == "" {
			t.TraceID, t.RootSpanID = s.TraceID, s.SpanID
			t.RootName, t.RootService = s.Name, s.Service
			t.Start, t.End = s.Start, s.End
		}
		if !slices.Contains(t.Services, s.Service) {
			t.Services = append(t.Services, s.Service)
		}
		if s.Status == codes.Error {
			t.ErrorCount++
		}
	}
	return t
}

// PermissionError is the guide's Python PermissionError. RecordError reports
// a value type as "<package path>.PermissionError"; see PermissionErrorType.
type PermissionError struct{ Msg string }

func (e PermissionError) Error() string { return e.Msg }

// TaskProcessingError is what a failing process_single_task records.
type TaskProcessingError struct {
	TaskID string
	Reason string
}

func (e TaskProcessingError) Error() string {
	return fmt.Sprintf("processing task %s: %s", e.TaskID, e.Reason)
}

const pkgPath = "github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"

// The exception.type values the SDK writes for the errors above.
const (
	PermissionErrorType     = pkgPath + ".PermissionError"
	TaskProcessingErrorType = pkgPath + ".TaskProcessingError"
)

func mustTraceID(s string) trace.TraceID {
	id, err := trace.TraceIDFromHex(s)
	if err != nil {
		panic(err)
	}
	return id
}

func mustSpanID(s string) trace.SpanID {
	id, err := trace.SpanIDFromHex(s)
	if err != nil {
		panic(err)
	}
	return id
}
