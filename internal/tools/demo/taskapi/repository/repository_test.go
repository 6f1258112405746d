package repository

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/domain"
)

// TestArchiveScan seeds a small archive and checks that the department search is answered by a
// traced full scan. ARIADNE_DEMO_ARCHIVE_ROWS=200000 reproduces the demo's size to time it.
func TestArchiveScan(t *testing.T) {
	rows := 5000
	if v, err := strconv.Atoi(os.Getenv("ARIADNE_DEMO_ARCHIVE_ROWS")); err == nil {
		rows = v
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	r, err := Open(filepath.Join(t.TempDir(), "tasks.db"), tp)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	start := time.Now()
	if err := r.SeedArchive(ctx, rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d rows in %v", rows, time.Since(start))
	var plan string
	var a, b, c int
	if err := r.db.Raw().QueryRow(`EXPLAIN QUERY PLAN SELECT id FROM tasks_archive WHERE lower(department) = lower(?1) OR lower(description) LIKE ?1 ORDER BY created_at DESC LIMIT 100`, "sales").Scan(&a, &b, &c, &plan); err != nil {
		t.Fatal(err)
	}
	if plan != "SCAN tasks_archive" {
		t.Fatalf("the archive search must scan the table, plan is %q", plan)
	}
	for i := 0; i < 2; i++ {
		start = time.Now()
		got, err := r.FindArchivedByDepartment(ctx, "Engineering", 100)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("search returned %d rows in %v", len(got), time.Since(start))
		if len(got) != 100 && rows > 2000 {
			t.Fatalf("got %d rows", len(got))
		}
	}
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	if len(names) != 4 || names[0] != "SELECT tasks_archive" || names[1] != "task_repository.find_archived_by_department" {
		t.Fatalf("spans %v", names)
	}

	task, err := domain.NewTask("t", "", domain.PriorityHigh, "", "", "", "alice", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(ctx, task); err != nil {
		t.Fatal(err)
	}
	back, err := r.GetByID(ctx, task.ID)
	if err != nil || back.Title != "t" || back.CreatedBy != "alice" {
		t.Fatalf("%+v %v", back, err)
	}
	if _, err := r.GetByID(ctx, "nope"); !domain.IsNotFound(err) {
		t.Fatalf("want not found, got %v", err)
	}
}
