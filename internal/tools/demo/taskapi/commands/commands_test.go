package commands

import (
	"context"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/domain"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/repository"
)

func setup(t *testing.T) (*Handlers, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	repo, err := repository.Open(filepath.Join(t.TempDir(), "tasks.db"), tp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	return New(repo, nil, tp), rec
}

func status(rec *tracetest.SpanRecorder, name string) (codes.Code, bool) {
	for _, s := range rec.Ended() {
		if s.Name() == name {
			return s.Status().Code, true
		}
	}
	return codes.Unset, false
}

func TestUpdateAndDelete(t *testing.T) {
	h, rec := setup(t)
	ctx := context.Background()
	alice := domain.User{ID: "alice", Roles: []string{"member"}}
	if _, err := h.CreateTask(ctx, CreateTaskCommand{Title: "x", Priority: "urgent"}, alice); !domain.IsValidation(err) {
		t.Fatalf("unknown priority: %v", err)
	}
	if c, _ := status(rec, "validate_input"); c != codes.Error {
		t.Errorf("validate_input status %v", c)
	}
	task, err := h.CreateTask(ctx, CreateTaskCommand{Title: "x", Priority: "high"}, alice)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := h.UpdateTask(ctx, task.ID, map[string]string{"status": "done"}, alice); !domain.IsValidation(err) {
		t.Fatalf("bad status: %v", err)
	}
	if c, _ := status(rec, "validate_updates"); c != codes.Error {
		t.Errorf("validate_updates status %v", c)
	}
	if _, ok := status(rec, "apply_updates"); ok {
		t.Errorf("apply_updates ran after a failed validation")
	}
	got, err := h.UpdateTask(ctx, task.ID, map[string]string{"status": "in_progress", "priority": "low"}, alice)
	if err != nil || got.Status != domain.StatusInProgress || got.Priority != domain.PriorityLow {
		t.Fatalf("update: %+v %v", got, err)
	}
	var events []string
	for _, s := range rec.Ended() {
		if s.Name() == "apply_updates" {
			for _, e := range s.Events() {
				events = append(events, e.Name)
			}
		}
	}
	if len(events) != 2 || events[0] != "updated_priority" || events[1] != "updated_status" {
		t.Errorf("apply_updates events %v", events)
	}
	if _, err := h.UpdateTask(ctx, "missing", map[string]string{"title": "y"}, alice); !domain.IsNotFound(err) {
		t.Fatalf("missing task: %v", err)
	}

	if err := h.DeleteTask(ctx, task.ID, domain.User{ID: "bob"}); !domain.IsPermission(err) {
		t.Fatalf("delete by bob: %v", err)
	}
	if err := h.DeleteTask(ctx, task.ID, alice); err != nil {
		t.Fatalf("delete by the owner: %v", err)
	}
	if _, err := h.GetTask(ctx, task.ID); !domain.IsNotFound(err) {
		t.Fatalf("deleted task still there: %v", err)
	}
}

func TestProcessTasks(t *testing.T) {
	h, rec := setup(t)
	ctx := context.Background()
	u := domain.User{ID: "carol", Roles: []string{"admin"}}
	a, _ := h.CreateTask(ctx, CreateTaskCommand{Title: "a", Priority: "low"}, u)
	b, _ := h.CreateTask(ctx, CreateTaskCommand{Title: "b", Priority: "low"}, u)
	results, err := h.ProcessTasks(ctx, []string{a.ID, b.ID, "missing"})
	if err == nil || results[0] != nil || results[1] != nil || !domain.IsNotFound(results[2]) {
		t.Fatalf("results %v, err %v", results, err)
	}
	// Processed tasks are completed; a second round fails them.
	results, _ = h.ProcessTasks(ctx, []string{a.ID})
	if results[0] == nil {
		t.Fatal("processing a completed task succeeded")
	}
	singles := 0
	for _, s := range rec.Ended() {
		if s.Name() == "process_single_task" {
			singles++
		}
	}
	if singles != 4 {
		t.Errorf("%d process_single_task spans", singles)
	}
}
