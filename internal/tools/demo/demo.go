// Package demo runs the system of the tracing guide our users follow (shared/guide.txt) in Go: a
// task API and a notification service, instrumented with OpenTelemetry as the guide teaches, and a
// traffic generator replaying the guide's stories, including one endpoint instrumented wrongly on
// purpose. `ariadne demo` runs it all against an Ariadne; RunTaskAPI and RunNotification run one
// service each against whatever the OTEL_* environment variables point at.
package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/ariadne-tracing/ariadne/internal/tools/demo/notification"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/telemetry"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/traffic"
)

// Version is the demo services' service.version.
const Version = "1.0.0"

// Trace is one request of the traffic generator; Story.Interesting tells the ones worth showing.
type Trace = traffic.Trace

// Story is a kind of request.
type Story = traffic.Story

// Ready describes the running demo.
type Ready struct {
	TaskAPIURL      string // e.g. http://127.0.0.1:8080
	NotificationURL string
	DBPath          string // empty when the database is temporary
}

// Config configures Run.
type Config struct {
	// OTLPEndpoint is the OTLP/gRPC host:port (plaintext) of an Ariadne. Empty means the standard
	// OTEL_* environment variables decide, as for the standalone services.
	OTLPEndpoint string
	// TaskAPIAddr and NotificationAddr are listen addresses; empty means "127.0.0.1:0".
	TaskAPIAddr, NotificationAddr string
	// DataDir keeps the SQLite database between runs, so the archive is seeded once. Empty means
	// a temporary database.
	DataDir string
	// Rate is the traffic in requests per second; 0 means 5.
	Rate float64
	// ArchiveRows sizes the unindexed archive table; 0 means taskapi.DefaultArchiveRows.
	ArchiveRows int
	// OnReady, if set, is called once both services listen.
	OnReady func(Ready)
	// OnTrace, if set, is called after every generated request, concurrently, and for every
	// trace that starts at an internal span (Story traffic.StoryOrphan). Filter with
	// t.Story.Interesting() to print only the stories worth opening. It must return quickly:
	// orphan reports are made from inside span.End.
	OnTrace func(Trace)
	// SpanProcessors are added to both services' tracer providers, e.g. to watch spans in tests.
	SpanProcessors []sdktrace.SpanProcessor
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// shutdownTimeout bounds the graceful stop, including the final export of queued spans.
const shutdownTimeout = 15 * time.Second

// Run starts both services and the traffic and blocks until ctx is done; then it stops the
// traffic, the servers, and flushes both SDKs before returning. A cancelled ctx is the normal way
// to stop and is not reported as an error.
func Run(ctx context.Context, cfg Config) (err error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	telemetry.InstallPropagator()
	providers := make([]*sdktrace.TracerProvider, 0, 2)
	defer func() { err = errors.Join(err, shutdownProviders(ctx, providers)) }()
	newProvider := func(service string) (*sdktrace.TracerProvider, error) {
		tp, err := telemetry.NewProvider(ctx, telemetry.Options{
			ServiceName: service, ServiceVersion: Version, Endpoint: cfg.OTLPEndpoint,
			ForceServiceName: true, Processors: cfg.SpanProcessors,
		})
		if err != nil {
			return nil, fmt.Errorf("demo %s: %w", service, err)
		}
		providers = append(providers, tp)
		return tp, nil
	}
	if cfg.OnTrace != nil {
		cfg.SpanProcessors = append(slices.Clip(cfg.SpanProcessors), orphanWatch(cfg.OnTrace))
	}
	taskTP, err := newProvider(taskapi.ServiceName)
	if err != nil {
		return err
	}
	notifyTP, err := newProvider(notification.ServiceName)
	if err != nil {
		return err
	}

	notifyLn, err := listen(cfg.NotificationAddr)
	if err != nil {
		return err
	}
	taskLn, err := listen(cfg.TaskAPIAddr)
	if err != nil {
		notifyLn.Close()
		return err
	}
	ready := Ready{TaskAPIURL: "http://" + taskLn.Addr().String(), NotificationURL: "http://" + notifyLn.Addr().String()}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			notifyLn.Close()
			taskLn.Close()
			return fmt.Errorf("demo data folder: %w", err)
		}
		ready.DBPath = filepath.Join(cfg.DataDir, "tasks.db")
	}
	if ready.DBPath != "" {
		log.Info("demo: opening the task database; the first run seeds the archive", "path", ready.DBPath)
	}
	svc, err := taskapi.New(ctx, taskapi.Options{
		DBPath: ready.DBPath, NotificationURL: ready.NotificationURL, ArchiveRows: cfg.ArchiveRows, TracerProvider: taskTP,
	})
	if err != nil {
		notifyLn.Close()
		taskLn.Close()
		if ctx.Err() != nil {
			// Stopped while seeding: what the user asked for, not a failure.
			return nil
		}
		return fmt.Errorf("demo task-api: %w", err)
	}
	defer func() { err = errors.Join(err, svc.Close()) }()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make(chan error, 2)
	serving := func(name string, ln net.Listener, h http.Handler) {
		if err := serve(runCtx, ln, h); err != nil {
			errs <- fmt.Errorf("demo %s: %w", name, err)
			stop()
			return
		}
		errs <- nil
	}
	go serving(notification.ServiceName, notifyLn, notification.NewHandler(notifyTP))
	go serving(taskapi.ServiceName, taskLn, svc.Handler())
	log.Info("demo: services listening", "task_api", ready.TaskAPIURL, "notification", ready.NotificationURL)
	if cfg.OnReady != nil {
		cfg.OnReady(ready)
	}

	terr := traffic.Run(runCtx, traffic.Options{BaseURL: ready.TaskAPIURL, Rate: cfg.Rate, OnTrace: cfg.OnTrace})
	stop()
	err = errors.Join(terr, <-errs, <-errs)
	return err
}

func listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}

// serve serves h on ln until ctx is done, then lets in-flight requests finish.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Requests still running after the grace period (a slow archive scan on a busy
		// machine) are cut: stopping the demo is not a failure of the demo.
		srv.Close()
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// shutdownProviders flushes the spans still queued; it must outlive the cancelled ctx that asked
// for the stop, or the last spans of the run would be dropped.
func shutdownProviders(ctx context.Context, tps []*sdktrace.TracerProvider) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	var err error
	for _, tp := range tps {
		if e := tp.Shutdown(sctx); e != nil {
			err = errors.Join(err, fmt.Errorf("flush spans: %w", e))
		}
	}
	return err
}

// orphanWatch reports traces whose root is neither a server span nor a client span: in these
// services every legitimate trace starts at an incoming request, so such a root means some code
// started a span without the request's context.
type orphanWatch func(Trace)

func (w orphanWatch) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (w orphanWatch) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.Parent().IsValid() {
		return
	}
	switch s.SpanKind() {
	case trace.SpanKindServer, trace.SpanKindClient, trace.SpanKindConsumer:
		return
	}
	w(Trace{Story: traffic.StoryOrphan, TraceID: s.SpanContext().TraceID().String(), Duration: s.EndTime().Sub(s.StartTime())})
}

func (w orphanWatch) Shutdown(context.Context) error   { return nil }
func (w orphanWatch) ForceFlush(context.Context) error { return nil }

// standalone sets up one service's SDK from the environment and installs it globally, as a
// service running on its own would.
func standalone(ctx context.Context, service string) (*sdktrace.TracerProvider, error) {
	telemetry.InstallPropagator()
	tp, err := telemetry.NewProvider(ctx, telemetry.Options{ServiceName: service, ServiceVersion: Version})
	if err != nil {
		return nil, fmt.Errorf("%s telemetry: %w", service, err)
	}
	otel.SetTracerProvider(tp)
	return tp, nil
}

// ArchiveRowsEnv, when set to an integer, sizes RunTaskAPI's archive table instead of
// taskapi.DefaultArchiveRows; a smaller archive seeds faster and searches faster.
const ArchiveRowsEnv = "ARIADNE_DEMO_ARCHIVE_ROWS"

// RunTaskAPI serves the task API on addr until ctx is done, exporting to wherever the OTEL_*
// environment variables say. notificationURL is the notification service's base URL (empty
// disables notify); an empty dbPath means a temporary database.
func RunTaskAPI(ctx context.Context, addr, notificationURL, dbPath string) (err error) {
	rows := 0
	if v := os.Getenv(ArchiveRowsEnv); v != "" {
		if rows, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("task-api: %s: %w", ArchiveRowsEnv, err)
		}
	}
	tp, err := standalone(ctx, taskapi.ServiceName)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, shutdownProviders(ctx, []*sdktrace.TracerProvider{tp})) }()
	svc, err := taskapi.New(ctx, taskapi.Options{DBPath: dbPath, NotificationURL: notificationURL, ArchiveRows: rows, TracerProvider: tp})
	if err != nil {
		return fmt.Errorf("task-api: %w", err)
	}
	defer func() { err = errors.Join(err, svc.Close()) }()
	ln, err := listen(addr)
	if err != nil {
		return fmt.Errorf("task-api: %w", err)
	}
	if err := serve(ctx, ln, svc.Handler()); err != nil {
		return fmt.Errorf("task-api: %w", err)
	}
	return nil
}

// RunNotification serves the notification service on addr until ctx is done, exporting to
// wherever the OTEL_* environment variables say.
func RunNotification(ctx context.Context, addr string) (err error) {
	tp, err := standalone(ctx, notification.ServiceName)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, shutdownProviders(ctx, []*sdktrace.TracerProvider{tp})) }()
	ln, err := listen(addr)
	if err != nil {
		return fmt.Errorf("notification-service: %w", err)
	}
	if err := serve(ctx, ln, notification.NewHandler(tp)); err != nil {
		return fmt.Errorf("notification-service: %w", err)
	}
	return nil
}
