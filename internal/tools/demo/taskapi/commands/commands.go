// Package commands holds the task service's command and query handlers, instrumented as the guide's
// examples are: one span per business step, domain attributes (task.id, task.priority, user.id),
// events for milestones, recorded exceptions and an explicit status on every span.
package commands

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/domain"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/repository"
)

// TracerName identifies the command handlers' spans; the query handlers use QueriesTracerName,
// following the guide's one tracer per module.
const TracerName = "ariadne/demo/taskapi/commands"

// Notifier sends a task to the notification service and returns the HTTP status it answered.
type Notifier interface {
	Notify(ctx context.Context, t *domain.Task) (int, error)
}

// Handlers runs commands and queries against a repository.
type Handlers struct {
	repo     *repository.Repository
	notifier Notifier
	tracer   trace.Tracer
	queries  trace.Tracer

	mu      sync.Mutex
	created map[domain.Priority]int
}

// New returns the handlers. A nil provider means the global one; a nil notifier makes Notify fail.
func New(repo *repository.Repository, notifier Notifier, tp trace.TracerProvider) *Handlers {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return &Handlers{repo: repo, notifier: notifier, tracer: tp.Tracer(TracerName), queries: tp.Tracer(QueriesTracerName),
		created: map[domain.Priority]int{}}
}

// fail is the guide's except-block: the exception with its stack trace, an error status with a
// short description, and error.type for grouping.
func fail(span trace.Span, err error, description, errType string) {
	span.RecordError(err, trace.WithStackTrace(true))
	span.SetStatus(codes.Error, description)
	span.SetAttributes(attribute.String("error.type", errType))
}

func errorType(err error) string {
	switch {
	case domain.IsValidation(err):
		return "validation"
	case domain.IsNotFound(err):
		return "not_found"
	case domain.IsPermission(err):
		return "permission"
	}
	return "unexpected"
}

// CreateTaskCommand is the body of POST /api/tasks.
type CreateTaskCommand struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	Priority    string `json:"priority"`
	Status      string `json:"status"`
	AssigneeID  string `json:"assignee_id"`
	Department  string `json:"department"`
}

// CreateTask builds the task inside create_task_entity, saves it through the repository and
// records the creation counter, the three children of the guide's POST /api/tasks span.
func (h *Handlers) CreateTask(ctx context.Context, cmd CreateTaskCommand, user domain.User) (*domain.Task, error) {
	task, err := h.createEntity(ctx, cmd, user)
	if err != nil {
		return nil, err
	}
	if err := h.repo.Add(ctx, task); err != nil {
		return nil, fmt.Errorf("save new task: %w", err)
	}
	h.recordMetrics(ctx, task)
	return task, nil
}

func (h *Handlers) createEntity(ctx context.Context, cmd CreateTaskCommand, user domain.User) (task *domain.Task, err error) {
	ctx, span := h.tracer.Start(ctx, "create_task_entity")
	defer span.End()
	// The guide's example also records the title, but its attribute guidelines then single out
	// free-text titles as unbounded cardinality; the guidelines win.
	assignee := cmd.AssigneeID
	if assignee == "" {
		assignee = "unassigned"
	}
	span.SetAttributes(
		attribute.String("task.priority", cmd.Priority),
		attribute.String("task.assignee_id", assignee),
		attribute.String("user.id", user.ID),
	)

	prio, status, err := h.validateInput(ctx, cmd)
	if err != nil {
		fail(span, err, "Invalid input", "validation")
		return nil, err
	}

	span.AddEvent("creating_task_entity")
	_, obj := h.tracer.Start(ctx, "create_domain_object")
	task, err = domain.NewTask(cmd.Title, cmd.Description, prio, status, cmd.AssigneeID, cmd.Department, user.ID, time.Now())
	if err != nil {
		fail(obj, err, "Invalid input", "validation")
		obj.End()
		fail(span, err, "Invalid input", "validation")
		return nil, err
	}
	obj.SetAttributes(attribute.String("task.id", task.ID))
	obj.SetStatus(codes.Ok, "")
	obj.End()

	span.SetAttributes(
		attribute.String("task.id", task.ID),
		attribute.String("task.created_at", task.CreatedAt.Format(time.RFC3339)),
	)
	span.AddEvent("task_entity_created", trace.WithAttributes(attribute.String("task.id", task.ID)))
	span.SetStatus(codes.Ok, "")
	return task, nil
}

func (h *Handlers) validateInput(ctx context.Context, cmd CreateTaskCommand) (domain.Priority, domain.Status, error) {
	_, span := h.tracer.Start(ctx, "validate_input")
	defer span.End()
	err := func() error {
		if strings.TrimSpace(cmd.Title) == "" {
			return &domain.ValidationError{Field: "title", Reason: "must not be empty"}
		}
		if len(cmd.Title) > 200 {
			return &domain.ValidationError{Field: "title", Reason: "longer than 200 characters"}
		}
		return nil
	}()
	var prio domain.Priority
	var status domain.Status
	if err == nil {
		prio, err = domain.ParsePriority(cmd.Priority)
	}
	if err == nil && cmd.Status != "" {
		status, err = domain.ParseStatus(cmd.Status)
	}
	span.SetAttributes(attribute.Int("validation.rules_checked", 4))
	if err != nil {
		fail(span, err, "Validation failed", "validation")
		return "", "", err
	}
	span.SetStatus(codes.Ok, "")
	return prio, status, nil
}

// recordMetrics counts creations per priority; it is the guide's record_metrics step.
func (h *Handlers) recordMetrics(ctx context.Context, t *domain.Task) {
	_, span := h.tracer.Start(ctx, "record_metrics", trace.WithAttributes(attribute.String("task.priority", string(t.Priority))))
	defer span.End()
	h.mu.Lock()
	h.created[t.Priority]++
	n := h.created[t.Priority]
	h.mu.Unlock()
	span.SetAttributes(attribute.Int("tasks.created_total", n))
	span.SetStatus(codes.Ok, "")
}

// UpdateTask is the guide's nested-spans example: update_task with fetch_task, validate_updates,
// apply_updates (an updated_<field> event per field) and save_task.
func (h *Handlers) UpdateTask(ctx context.Context, id string, updates map[string]string, user domain.User) (task *domain.Task, err error) {
	ctx, span := h.tracer.Start(ctx, "update_task", trace.WithAttributes(
		attribute.String("task.id", id),
		attribute.String("user.id", user.ID),
		attribute.Int("updates.count", len(updates)),
		attribute.String("operation.type", "update"),
	))
	defer span.End()
	defer func() {
		if err != nil {
			fail(span, err, "Update failed", errorType(err))
		}
	}()
	fields := make([]string, 0, len(updates))
	for f := range updates {
		fields = append(fields, f)
	}
	// Sorted so the events come out in the same order for the same request.
	slices.Sort(fields)

	fctx, fetch := h.tracer.Start(ctx, "fetch_task", trace.WithAttributes(attribute.String("task.id", id)))
	task, err = h.repo.GetByID(fctx, id)
	if err != nil {
		if domain.IsNotFound(err) {
			fetch.SetStatus(codes.Error, "Not found")
			fetch.SetAttributes(attribute.String("error.type", "not_found"))
		} else {
			fail(fetch, err, "Fetch failed", "unexpected")
		}
		fetch.End()
		return nil, err
	}
	fetch.SetStatus(codes.Ok, "")
	fetch.End()
	oldAssignee := task.AssigneeID

	_, validate := h.tracer.Start(ctx, "validate_updates", trace.WithAttributes(attribute.StringSlice("updates.fields", fields)))
	probe := task.Clone()
	for _, f := range fields {
		if err = probe.Set(f, updates[f], time.Now()); err != nil {
			break
		}
	}
	if err == nil && len(fields) == 0 {
		err = &domain.ValidationError{Field: "body", Reason: "no fields to update"}
	}
	if err != nil {
		fail(validate, err, "Validation failed", "validation")
		validate.End()
		return nil, err
	}
	validate.SetStatus(codes.Ok, "")
	validate.End()

	_, apply := h.tracer.Start(ctx, "apply_updates")
	now := time.Now()
	for _, f := range fields {
		if err = task.Set(f, updates[f], now); err != nil {
			fail(apply, err, "Apply failed", "validation")
			apply.End()
			return nil, err
		}
		apply.AddEvent("updated_"+f, trace.WithAttributes(attribute.String("value", updates[f])))
	}
	apply.SetStatus(codes.Ok, "")
	apply.End()

	sctx, save := h.tracer.Start(ctx, "save_task", trace.WithAttributes(attribute.String("task.id", id)))
	if err = h.repo.Update(sctx, task); err != nil {
		fail(save, err, "Save failed", errorType(err))
		save.End()
		return nil, err
	}
	save.SetStatus(codes.Ok, "")
	save.End()

	span.SetAttributes(
		attribute.Int("task.updated_fields", len(fields)),
		attribute.String("task.status", string(task.Status)),
		attribute.String("task.priority", string(task.Priority)),
		attribute.Bool("task.assignee_changed", oldAssignee != task.AssigneeID),
	)
	span.SetStatus(codes.Ok, "")
	return task, nil
}

// DeleteTask is the guide's error-handling example. Only an admin or the task's creator may
// delete it; anyone else gets a PermissionError recorded on check_authorization and on
// delete_task.
func (h *Handlers) DeleteTask(ctx context.Context, id string, user domain.User) (err error) {
	ctx, span := h.tracer.Start(ctx, "delete_task", trace.WithAttributes(
		attribute.String("task.id", id),
		attribute.String("user.id", user.ID),
	))
	defer span.End()
	defer func() {
		switch {
		case err == nil:
			span.SetStatus(codes.Ok, "")
			span.AddEvent("task_deleted_successfully")
		case domain.IsPermission(err):
			fail(span, err, "Permission denied", "permission")
			span.SetAttributes(attribute.StringSlice("error.user_roles", user.Roles))
		case domain.IsNotFound(err):
			fail(span, err, "Task not found", "not_found")
		default:
			fail(span, err, err.Error(), "unexpected")
		}
	}()

	if err := h.checkAuthorization(ctx, id, user); err != nil {
		return err
	}

	fctx, fetch := h.tracer.Start(ctx, "fetch_task", trace.WithAttributes(attribute.String("task.id", id)))
	task, err := h.repo.GetByID(fctx, id)
	if err != nil {
		if domain.IsNotFound(err) {
			fetch.SetStatus(codes.Error, "Not found")
			fetch.SetAttributes(attribute.String("error.type", "not_found"))
		} else {
			fail(fetch, err, "Fetch failed", "unexpected")
		}
		fetch.End()
		return err
	}
	fetch.SetAttributes(attribute.String("task.status", string(task.Status)))
	fetch.SetStatus(codes.Ok, "")
	fetch.End()

	dctx, del := h.tracer.Start(ctx, "delete_from_repository", trace.WithAttributes(attribute.String("task.id", id)))
	defer del.End()
	task.MarkDeleted(user.ID)
	if err := h.repo.Delete(dctx, task); err != nil {
		fail(del, err, "Delete failed", errorType(err))
		return fmt.Errorf("delete task %s: %w", id, err)
	}
	del.SetStatus(codes.Ok, "")
	return nil
}

func (h *Handlers) checkAuthorization(ctx context.Context, id string, user domain.User) (err error) {
	ctx, span := h.tracer.Start(ctx, "check_authorization", trace.WithAttributes(
		attribute.StringSlice("user.roles", user.Roles),
		attribute.String("user.id", user.ID),
	))
	defer span.End()
	if user.HasRole("admin") {
		span.SetAttributes(attribute.String("authorization.rule", "admin"))
		span.SetStatus(codes.Ok, "")
		return nil
	}
	span.SetAttributes(attribute.String("authorization.rule", "owner"))
	task, err := h.repo.GetByID(ctx, id)
	if err != nil {
		// Unknown tasks are reported by fetch_task; revealing existence here would leak it to
		// callers who may not see it anyway.
		if domain.IsNotFound(err) {
			span.SetStatus(codes.Ok, "")
			return nil
		}
		fail(span, err, "Authorization lookup failed", "unexpected")
		return err
	}
	if task.CreatedBy != user.ID {
		err := &domain.PermissionError{UserID: user.ID, Action: "delete", TaskID: id, Reason: "user lacks admin role and is not the task's creator"}
		span.RecordError(err, trace.WithStackTrace(true))
		span.SetStatus(codes.Error, "Forbidden")
		return err
	}
	span.SetStatus(codes.Ok, "")
	return nil
}

// ProcessTasks is the guide's async example: process_single_task spans run concurrently under
// process_multiple_tasks, each goroutine carrying the parent's context.
func (h *Handlers) ProcessTasks(ctx context.Context, ids []string) (results []error, err error) {
	ctx, span := h.tracer.Start(ctx, "process_multiple_tasks", trace.WithAttributes(attribute.Int("tasks.count", len(ids))))
	defer span.End()
	results = make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { results[i] = h.processSingle(ctx, id) })
	}
	wg.Wait()
	failures := 0
	for _, r := range results {
		if r != nil {
			failures++
		}
	}
	span.SetAttributes(attribute.Int("tasks.successful", len(ids)-failures), attribute.Int("tasks.failed", failures))
	if failures > 0 {
		span.SetStatus(codes.Error, fmt.Sprintf("%d tasks failed", failures))
		return results, fmt.Errorf("%d of %d tasks failed", failures, len(ids))
	}
	span.SetStatus(codes.Ok, "")
	return results, nil
}

// ErrAlreadyCompleted is returned for a batch entry that was processed before.
var ErrAlreadyCompleted = errors.New("task already completed")

func (h *Handlers) processSingle(ctx context.Context, id string) (err error) {
	ctx, span := h.tracer.Start(ctx, "process_single_task", trace.WithAttributes(attribute.String("task.id", id)))
	defer span.End()
	defer func() {
		if err != nil {
			span.RecordError(err, trace.WithStackTrace(true))
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetStatus(codes.Ok, "")
		}
	}()
	task, err := h.repo.GetByID(ctx, id)
	if err != nil {
		return err
	}
	span.SetAttributes(attribute.String("task.priority", string(task.Priority)))
	return h.performProcessing(ctx, task)
}

// performProcessing stands for the real work a task triggers; the sleep gives the concurrent
// spans visible, overlapping widths.
func (h *Handlers) performProcessing(ctx context.Context, t *domain.Task) (err error) {
	ctx, span := h.tracer.Start(ctx, "perform_processing", trace.WithAttributes(
		attribute.String("task.id", t.ID), attribute.String("task.status", string(t.Status))))
	defer span.End()
	if t.Status == domain.StatusCompleted {
		err := fmt.Errorf("process task %s: %w", t.ID, ErrAlreadyCompleted)
		span.RecordError(err)
		span.SetStatus(codes.Error, "already completed")
		return err
	}
	span.AddEvent("processing_started", trace.WithAttributes(attribute.String("task.priority", string(t.Priority))))
	select {
	case <-time.After(time.Duration(10+rand.IntN(40)) * time.Millisecond):
	case <-ctx.Done():
		span.SetStatus(codes.Error, "cancelled")
		return ctx.Err()
	}
	if err := t.Set("status", string(domain.StatusCompleted), time.Now()); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	if err := h.repo.Update(ctx, t); err != nil {
		span.SetStatus(codes.Error, "saving the result failed")
		return fmt.Errorf("process task %s: %w", t.ID, err)
	}
	span.AddEvent("processing_completed")
	span.SetStatus(codes.Ok, "")
	return nil
}

// NotifyTask sends the task to the notification service inside notify_external_service, the
// guide's cross-service example; the HTTP client span under it carries traceparent across.
func (h *Handlers) NotifyTask(ctx context.Context, id string) (status int, err error) {
	task, err := h.repo.GetByID(ctx, id)
	if err != nil {
		return 0, err
	}
	ctx, span := h.tracer.Start(ctx, "notify_external_service", trace.WithAttributes(
		attribute.String("task.id", task.ID),
		attribute.String("task.priority", string(task.Priority)),
		attribute.String("peer.service", "notification-service"),
	))
	defer span.End()
	if h.notifier == nil {
		err := errors.New("no notification service configured")
		fail(span, err, "Notification failed", "configuration")
		return 0, err
	}
	status, err = h.notifier.Notify(ctx, task)
	if err != nil {
		fail(span, err, "Notification failed", "transport")
		return 0, fmt.Errorf("notify about task %s: %w", id, err)
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 400 {
		span.SetStatus(codes.Error, "Notification failed")
		return status, fmt.Errorf("notification service answered %d", status)
	}
	span.SetStatus(codes.Ok, "")
	return status, nil
}

// ReindexTask is MIS-INSTRUMENTED ON PURPOSE, so that Ariadne's lints have something to find. It
// makes both mistakes of the guide's "Span Not Ending" and "Broken Trace Context" sections:
// reindex_task is started but never ended, so it is never exported and its two children name a
// parent the trace does not have; and the background rebuild starts its span from
// context.Background(), so it becomes the root of a trace of its own while the request that
// caused it is still running. Do not copy this.
func (h *Handlers) ReindexTask(ctx context.Context, id string) (jobID string, err error) {
	ctx, span := h.tracer.Start(ctx, "reindex_task", trace.WithAttributes(attribute.String("task.id", id)))
	if _, err := h.repo.GetByID(ctx, id); err != nil {
		return "", err
	}
	jobID = domain.NewID()
	_, sched := h.tracer.Start(ctx, "schedule_reindex", trace.WithAttributes(attribute.String("reindex.job_id", jobID)))
	defer sched.End()
	accepted := make(chan struct{})
	go func() {
		bctx, bg := h.tracer.Start(context.Background(), "rebuild_search_index", trace.WithAttributes(
			attribute.String("task.id", id), attribute.String("reindex.job_id", jobID)))
		defer bg.End()
		close(accepted)
		time.Sleep(time.Duration(20+rand.IntN(30)) * time.Millisecond)
		if err := h.repo.MarkIndexed(bctx, id); err != nil {
			bg.RecordError(err)
			bg.SetStatus(codes.Error, "reindex failed")
			return
		}
		bg.SetStatus(codes.Ok, "")
	}()
	// The request answers only once a worker has the job, like a queue acknowledging a message.
	<-accepted
	span.AddEvent("reindex_scheduled")
	sched.SetStatus(codes.Ok, "")
	return jobID, nil
}
