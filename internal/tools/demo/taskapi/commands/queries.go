package commands

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/domain"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/repository"
)

// QueriesTracerName identifies the read side's spans.
const QueriesTracerName = "ariadne/demo/taskapi/queries"

// GetTask returns one task.
func (h *Handlers) GetTask(ctx context.Context, id string) (*domain.Task, error) {
	ctx, span := h.queries.Start(ctx, "get_task", trace.WithAttributes(attribute.String("task.id", id)))
	defer span.End()
	t, err := h.repo.GetByID(ctx, id)
	if err != nil {
		if domain.IsNotFound(err) {
			span.SetStatus(codes.Error, "Not found")
			span.SetAttributes(attribute.String("error.type", "not_found"))
		} else {
			fail(span, err, "Query failed", "unexpected")
		}
		return nil, err
	}
	span.SetAttributes(attribute.String("task.priority", string(t.Priority)), attribute.String("task.status", string(t.Status)))
	span.SetStatus(codes.Ok, "")
	return t, nil
}

// ListTasksQuery holds GET /api/tasks's filters, unparsed.
type ListTasksQuery struct {
	Status, Priority, AssigneeID string
	Limit                        int
}

// ListTasks returns the newest tasks matching the filters.
func (h *Handlers) ListTasks(ctx context.Context, q ListTasksQuery) ([]*domain.Task, error) {
	ctx, span := h.queries.Start(ctx, "list_tasks")
	defer span.End()
	f := repository.Filter{AssigneeID: q.AssigneeID, Limit: q.Limit}
	var err error
	if q.Status != "" {
		f.Status, err = domain.ParseStatus(q.Status)
	}
	if err == nil && q.Priority != "" {
		f.Priority, err = domain.ParsePriority(q.Priority)
	}
	if err != nil {
		fail(span, err, "Invalid filter", "validation")
		return nil, err
	}
	tasks, err := h.repo.Find(ctx, f)
	if err != nil {
		fail(span, err, "Query failed", "unexpected")
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	span.SetAttributes(attribute.Int("tasks.count", len(tasks)))
	span.SetStatus(codes.Ok, "")
	return tasks, nil
}

// SearchArchive is the guide's slow request: the search runs over the unindexed archive.
func (h *Handlers) SearchArchive(ctx context.Context, department string, limit int) ([]repository.ArchivedTask, error) {
	ctx, span := h.queries.Start(ctx, "search_archive", trace.WithAttributes(attribute.String("task.department", department)))
	defer span.End()
	if department == "" {
		err := &domain.ValidationError{Field: "department", Reason: "required"}
		fail(span, err, "Invalid filter", "validation")
		return nil, err
	}
	out, err := h.repo.FindArchivedByDepartment(ctx, department, limit)
	if err != nil {
		fail(span, err, "Query failed", "unexpected")
		return nil, fmt.Errorf("search archive: %w", err)
	}
	span.SetAttributes(attribute.Int("tasks.count", len(out)))
	span.SetStatus(codes.Ok, "")
	return out, nil
}
