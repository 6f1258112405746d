package guidetrace

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Instrumentation scopes, named after the Python modules of the guide's app
// (the guide creates one tracer per module with __name__). The first three are
// auto-instrumentation libraries.
const (
	ScopeFastAPI    = "opentelemetry.instrumentation.fastapi"
	ScopePyMongo    = "opentelemetry.instrumentation.pymongo"
	ScopeHTTPX      = "opentelemetry.instrumentation.httpx"
	ScopeCreateTask = "src.application.commands.create_task_command"
	ScopeDeleteTask = "src.application.commands.delete_task_command"
	ScopeRepository = "src.integration.repositories.motor_task_repository"
	ScopeController = "src.api.controllers.tasks_controller"
	ScopeNotifier   = "src.application.services.notification_client"
	ScopeNotifyAPI  = "src.application.commands.send_notification_command"
	ScopeTaskBatch  = "src.application.services.task_processor"
)

// Values the guide uses in its examples.
const (
	TaskTitle         = "Implement feature X"
	TaskID            = "uuid-1234"
	UserID            = "user-5678"
	NotificationRoute = "/api/notify"
)

// Trace and span IDs. The create-task ones are those printed in the guide
// (its trace ID, the DB span 7d2ea792e2df6a01 and that span's parent).
var (
	CreateTaskTraceID    = mustTraceID("4bf92f3577b34da6a3ce929d0e0e4736")
	CreateTaskRootSpanID = mustSpanID("00f067aa0ba902b7")
	CreateTaskDBSpanID   = mustSpanID("7d2ea792e2df6a01")
	CreateTaskRepoSpanID = mustSpanID("f3e7a0b2c1d4e5f6")

	PermissionDeniedTraceID = mustTraceID("5e1d0a9c8b7f6e5d4c3b2a1908f7e6d5")
	NotifyTraceID           = mustTraceID("0af7651916cd43dd8448eb211c80319c")
	ProcessMultipleTraceID  = mustTraceID("9c3e1f5a7b2d4c6e8f0a1b2c3d4e5f60")
)

// NotifyTraceState is what the hop between the services adds to tracestate.
const NotifyTraceState = "ariadne=t1"

// ProcessMultipleTasks is how many process_single_task children the batch has;
// ProcessMultipleFailed of them fail.
const (
	ProcessMultipleTasks  = 5
	ProcessMultipleFailed = 2
)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

// CreateTask emits the guide's "Span Hierarchy" (9 spans, 250ms) with the
// attributes and events of its Example 1, starting at base.
func CreateTask(ctx context.Context, tp trace.TracerProvider, base time.Time) Trace {
	r := &recorder{name: NameCreateTask}
	at := func(n float64) time.Time { return base.Add(ms(n)) }
	svc := ServiceTaskAPI

	rootCtx, root := r.start(ctx, tp, svc, ScopeFastAPI, "POST /api/tasks",
		CreateTaskTraceID, CreateTaskRootSpanID, at(0),
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", "POST"),
			attribute.String("url.path", "/api/tasks"),
			attribute.String("url.scheme", "http"),
			attribute.String("http.route", "/api/tasks"),
		))

	entCtx, ent := r.start(rootCtx, tp, svc, ScopeCreateTask, "create_task_entity",
		trace.TraceID{}, mustSpanID("b7ad6b7169203331"), at(10),
		trace.WithAttributes(
			attribute.String("task.title", TaskTitle),
			attribute.String("task.priority", "high"),
			attribute.String("task.assignee_id", UserID),
		))
	ent.AddEvent("creating_task_entity", trace.WithTimestamp(at(10)))
	_, v := r.start(entCtx, tp, svc, ScopeCreateTask, "validate_input",
		trace.TraceID{}, mustSpanID("1c2d3e4f5a6b7c81"), at(10))
	v.end(at(15))
	_, d := r.start(entCtx, tp, svc, ScopeCreateTask, "create_domain_object",
		trace.TraceID{}, mustSpanID("1c2d3e4f5a6b7c82"), at(15))
	d.end(at(25))
	ent.SetAttributes(
		attribute.String("task.id", TaskID),
		attribute.String("task.created_at", at(25).UTC().Format(time.RFC3339)),
	)
	ent.AddEvent("task_entity_created", trace.WithTimestamp(at(25)),
		trace.WithAttributes(attribute.String("task.id", TaskID)))
	ent.status(codes.Ok, "")
	ent.end(at(25))

	repoCtx, repo := r.start(rootCtx, tp, svc, ScopeRepository, "motor_task_repository.add",
		trace.TraceID{}, CreateTaskRepoSpanID, at(30),
		trace.WithAttributes(attribute.String("task.id", TaskID)))
	_, ser := r.start(repoCtx, tp, svc, ScopeRepository, "serialize_task",
		trace.TraceID{}, mustSpanID("1c2d3e4f5a6b7c83"), at(30))
	ser.end(at(40))
	_, db := r.start(repoCtx, tp, svc, ScopePyMongo, "pymongo.insert_one",
		trace.TraceID{}, CreateTaskDBSpanID, at(40),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("db.system", "mongodb"),
			attribute.String("db.collection", "tasks"),
			attribute.String("db.operation", "insert"),
			attribute.String("task.priority", "high"),
		))
	db.end(at(220))
	_, pub := r.start(repoCtx, tp, svc, ScopeRepository, "publish_domain_events",
		trace.TraceID{}, mustSpanID("1c2d3e4f5a6b7c84"), at(220),
		trace.WithAttributes(attribute.Int64("events.count", 1)))
	pub.end(at(230))
	repo.end(at(230))

	_, met := r.start(rootCtx, tp, svc, ScopeController, "record_metrics",
		trace.TraceID{}, mustSpanID("1c2d3e4f5a6b7c85"), at(235))
	met.end(at(240))

	// FastAPI leaves a 2xx server span's status unset.
	root.SetAttributes(attribute.Int64("http.response.status_code", 201))
	root.end(at(250))
	return r.result()
}

// PermissionDenied emits Example 4's failure path: check_authorization
// raises PermissionError, delete_task records it again, and the request fails.
func PermissionDenied(ctx context.Context, tp trace.TracerProvider, base time.Time) Trace {
	r := &recorder{name: NamePermissionDenied}
	at := func(n float64) time.Time { return base.Add(ms(n)) }
	svc := ServiceTaskAPI
	roles := []string{"viewer"}
	errDenied := PermissionError{Msg: "User lacks admin role"}

	rootCtx, root := r.start(ctx, tp, svc, ScopeFastAPI, "DELETE /api/tasks/{id}",
		PermissionDeniedTraceID, mustSpanID("2d3e4f5a6b7c8d01"), at(0),
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", "DELETE"),
			attribute.String("url.path", "/api/tasks/"+TaskID),
			attribute.String("url.scheme", "http"),
			attribute.String("http.route", "/api/tasks/{id}"),
		))
	delCtx, del := r.start(rootCtx, tp, svc, ScopeDeleteTask, "delete_task",
		trace.TraceID{}, mustSpanID("2d3e4f5a6b7c8d02"), at(1),
		trace.WithAttributes(
			attribute.String("task.id", TaskID),
			attribute.String("user.id", UserID),
		))
	_, auth := r.start(delCtx, tp, svc, ScopeDeleteTask, "check_authorization",
		trace.TraceID{}, mustSpanID("2d3e4f5a6b7c8d03"), at(2),
		trace.WithAttributes(attribute.StringSlice("user.roles", roles)))
	auth.status(codes.Error, "Forbidden")
	// Python's span context manager records the escaping exception.
	auth.recordError(errDenied, at(5))
	auth.end(at(5))

	del.recordError(errDenied, at(9))
	del.status(codes.Error, "Permission denied")
	del.SetAttributes(
		attribute.String("error.type", "permission"),
		attribute.StringSlice("error.user_roles", roles),
	)
	del.end(at(10))

	root.SetAttributes(attribute.Int64("http.response.status_code", 403))
	root.status(codes.Error, "Permission denied")
	root.end(at(12))
	return r.result()
}

// Notify emits Example 3: task-api calls notification-service, and the two
// halves join only because traceparent really crosses an http.Header.
func Notify(ctx context.Context, api, notification trace.TracerProvider, base time.Time) Trace {
	r := &recorder{name: NameNotify}
	at := func(n float64) time.Time { return base.Add(ms(n)) }
	prop := propagation.TraceContext{}

	rootCtx, root := r.start(ctx, api, ServiceTaskAPI, ScopeFastAPI, "POST /api/tasks/{id}/notify",
		NotifyTraceID, mustSpanID("3e4f5a6b7c8d9e01"), at(0),
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", "POST"),
			attribute.String("url.path", "/api/tasks/"+TaskID+"/notify"),
			attribute.String("url.scheme", "http"),
			attribute.String("http.route", "/api/tasks/{id}/notify"),
		))
	// The guide sets service.name as a span attribute too; it must not be
	// mistaken for the resource's service.name.
	nCtx, n := r.start(rootCtx, api, ServiceTaskAPI, ScopeNotifier, "notify_external_service",
		trace.TraceID{}, mustSpanID("3e4f5a6b7c8d9e02"), at(2),
		trace.WithAttributes(
			attribute.String("task.id", TaskID),
			attribute.String("service.name", ServiceNotification),
		))
	cCtx, client := r.start(nCtx, api, ServiceTaskAPI, ScopeHTTPX, "POST",
		trace.TraceID{}, mustSpanID("3e4f5a6b7c8d9e03"), at(5),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("http.request.method", "POST"),
			attribute.String("url.full", "http://notification-service"+NotificationRoute),
			attribute.String("server.address", "notification-service"),
		))

	// A hop on the way (a mesh sidecar, say) adds its tracestate entry.
	sc := client.SpanContext()
	if ts, err := sc.TraceState().Insert("ariadne", "t1"); err == nil {
		cCtx = trace.ContextWithSpanContext(cCtx, sc.WithTraceState(ts))
	}
	headers := http.Header{}
	prop.Inject(cCtx, propagation.HeaderCarrier(headers))

	// notification-service side: nothing but the headers is shared.
	srvParent := prop.Extract(context.WithoutCancel(ctx), propagation.HeaderCarrier(headers))
	sCtx, srv := r.start(srvParent, notification, ServiceNotification, ScopeFastAPI, "POST "+NotificationRoute,
		trace.TraceID{}, mustSpanID("4f5a6b7c8d9e0f01"), at(10),
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", "POST"),
			attribute.String("url.path", NotificationRoute),
			attribute.String("url.scheme", "http"),
			attribute.String("http.route", NotificationRoute),
		))
	_, send := r.start(sCtx, notification, ServiceNotification, ScopeNotifyAPI, "send_notification",
		trace.TraceID{}, mustSpanID("4f5a6b7c8d9e0f02"), at(15),
		trace.WithAttributes(
			attribute.String("task.id", TaskID),
			attribute.String("task.priority", "high"),
			attribute.String("notification.channel", "email"),
		))
	send.status(codes.Ok, "")
	send.end(at(60))
	srv.SetAttributes(attribute.Int64("http.response.status_code", 202))
	srv.end(at(65))

	client.SetAttributes(attribute.Int64("http.response.status_code", 202))
	client.end(at(70))
	// The guide's code uses the older http.status_code name here.
	n.SetAttributes(attribute.Int64("http.status_code", 202))
	n.status(codes.Ok, "")
	n.end(at(75))
	root.SetAttributes(attribute.Int64("http.response.status_code", 200))
	root.end(at(80))

	t := r.result()
	t.Headers = headers
	return t
}

// batchDurations are the children's durations; the ones at batchFailures fail.
var (
	batchDurations = [ProcessMultipleTasks]float64{40, 95, 60, 110, 30}
	batchFailures  = map[int]bool{1: true, 3: true}
)

// ProcessMultiple emits Example 5: process_multiple_tasks with concurrent
// process_single_task children started from goroutines, two of them failing.
// The parent links to the create-task root and carries one attribute of each
// OTLP value type.
func ProcessMultiple(ctx context.Context, tp trace.TracerProvider, base time.Time) Trace {
	r := &recorder{name: NameProcessMultiple}
	at := func(n float64) time.Time { return base.Add(ms(n)) }
	svc := ServiceTaskAPI

	ids := make([]string, ProcessMultipleTasks)
	durMs := make([]int64, ProcessMultipleTasks)
	durS := make([]float64, ProcessMultipleTasks)
	ok := make([]bool, ProcessMultipleTasks)
	end := 0.0
	for i := range ProcessMultipleTasks {
		ids[i] = fmt.Sprintf("uuid-20%02d", i+1)
		durMs[i] = int64(batchDurations[i])
		durS[i] = batchDurations[i] / 1000
		ok[i] = !batchFailures[i]
		end = max(end, childStart(i)+batchDurations[i])
	}
	failed := int64(len(batchFailures))

	origin := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    CreateTaskTraceID,
		SpanID:     CreateTaskRootSpanID,
		TraceFlags: trace.FlagsSampled,
	})
	pCtx, parent := r.start(ctx, tp, svc, ScopeTaskBatch, "process_multiple_tasks",
		ProcessMultipleTraceID, mustSpanID("5a6b7c8d9e0f1a01"), at(0),
		trace.WithNewRoot(),
		trace.WithLinks(trace.Link{
			SpanContext: origin,
			Attributes:  []attribute.KeyValue{attribute.String("link.reason", "created_by")},
		}),
		trace.WithAttributes(
			attribute.String("batch.trigger", "scheduler"),
			attribute.Bool("batch.concurrent", true),
			attribute.Int64("tasks.count", ProcessMultipleTasks),
			attribute.StringSlice("tasks.ids", ids),
		))

	var wg sync.WaitGroup
	for i := range ProcessMultipleTasks {
		wg.Go(func() { processSingleTask(pCtx, r, tp, base, i, ids[i]) })
	}
	wg.Wait()

	parent.SetAttributes(
		attribute.Int64("tasks.successful", ProcessMultipleTasks-failed),
		attribute.Int64("tasks.failed", failed),
		attribute.Float64("batch.success_ratio", float64(ProcessMultipleTasks-failed)/ProcessMultipleTasks),
		attribute.Int64Slice("tasks.durations_ms", durMs),
		attribute.Float64Slice("tasks.durations_s", durS),
		attribute.BoolSlice("tasks.succeeded", ok),
	)
	parent.status(codes.Error, fmt.Sprintf("%d tasks failed", failed))
	parent.end(at(end + 3))
	return r.result()
}

// childStart staggers the children as goroutine start-up would.
func childStart(i int) float64 { return 2 + float64(i) }

func processSingleTask(ctx context.Context, r *recorder, tp trace.TracerProvider, base time.Time, i int, id string) {
	start := base.Add(ms(childStart(i)))
	end := start.Add(ms(batchDurations[i]))
	_, s := r.start(ctx, tp, ServiceTaskAPI, ScopeTaskBatch, "process_single_task",
		trace.TraceID{}, mustSpanID(fmt.Sprintf("5a6b7c8d9e0f1b%02x", i+1)), start,
		trace.WithAttributes(attribute.String("task.id", id)))
	if batchFailures[i] {
		s.recordError(TaskProcessingError{TaskID: id, Reason: "repository timeout"}, end)
		// The guide sets ERROR without a description here.
		s.status(codes.Error, "")
	} else {
		s.status(codes.Ok, "")
	}
	s.end(end)
}
