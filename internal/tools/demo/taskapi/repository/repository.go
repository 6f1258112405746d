// Package repository stores tasks in SQLite, the demo's stand-in for the guide's Motor/MongoDB
// repository. Each method is one task_repository.* span whose children are the traced statements,
// so a trace shows which repository call a slow query belongs to.
package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	// Registers the pure-Go "sqlite" driver: the demo must build without cgo.
	_ "modernc.org/sqlite"

	"github.com/ariadne-tracing/ariadne/internal/tools/demo/sqltrace"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/domain"
)

// TracerName identifies the repository's spans.
const TracerName = "ariadne/demo/taskapi/repository"

const schema = `
CREATE TABLE IF NOT EXISTS tasks (
	id TEXT PRIMARY KEY,
	title TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	priority TEXT NOT NULL,
	status TEXT NOT NULL,
	assignee_id TEXT NOT NULL DEFAULT '',
	department TEXT NOT NULL DEFAULT '',
	created_by TEXT NOT NULL,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	indexed_at TEXT
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status);
CREATE INDEX IF NOT EXISTS tasks_assignee ON tasks (assignee_id);
CREATE TABLE IF NOT EXISTS task_events (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	task_id TEXT NOT NULL,
	name TEXT NOT NULL,
	detail TEXT NOT NULL DEFAULT '',
	at TEXT NOT NULL
);
-- The archive deliberately has no index on department: it is the guide's
-- "missing index on department field" that makes searching it slow.
CREATE TABLE IF NOT EXISTS tasks_archive (
	id INTEGER PRIMARY KEY,
	title TEXT NOT NULL,
	description TEXT NOT NULL,
	priority TEXT NOT NULL,
	status TEXT NOT NULL,
	department TEXT NOT NULL,
	created_at TEXT NOT NULL
);
`

// Repository is the task store.
type Repository struct {
	db     *sqltrace.DB
	tracer trace.Tracer
}

// Open opens (creating if needed) the database at path. A nil provider means the global one.
func Open(path string, tp trace.TracerProvider) (*Repository, error) {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	// WAL lets the fast requests keep reading and writing while the slow archive scan runs; the
	// busy timeout turns the remaining writer contention into waiting instead of errors.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)"
	raw, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	raw.SetMaxOpenConns(8)
	if _, err := raw.Exec(schema); err != nil {
		raw.Close()
		return nil, fmt.Errorf("create schema in %s: %w", path, err)
	}
	return &Repository{db: sqltrace.Wrap(raw, tp), tracer: tp.Tracer(TracerName)}, nil
}

// Close closes the database.
func (r *Repository) Close() error { return r.db.Close() }

func (r *Repository) start(ctx context.Context, op string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return r.tracer.Start(ctx, "task_repository."+op, trace.WithAttributes(attrs...))
}

// end sets the span's status from err, the guide's rule that every span gets one. A missing task
// is an answer, not a failure of the repository, so it leaves the status unset for the caller to
// judge.
func end(span trace.Span, err error) {
	switch {
	case err == nil:
		span.SetStatus(codes.Ok, "")
	case domain.IsNotFound(err):
		span.SetAttributes(attribute.Bool("task.found", false))
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

const timeLayout = time.RFC3339Nano

// Add inserts a new task and publishes its events.
func (r *Repository) Add(ctx context.Context, t *domain.Task) (err error) {
	ctx, span := r.start(ctx, "add", attribute.String("task.id", t.ID), attribute.String("task.priority", string(t.Priority)))
	defer func() { end(span, err) }()

	row := r.serialize(ctx, t)
	if _, err := r.db.ExecContext(ctx,
		`INSERT INTO tasks (id, title, description, priority, status, assignee_id, department, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		row...); err != nil {
		return fmt.Errorf("insert task %s: %w", t.ID, err)
	}
	return r.publish(ctx, t.PullEvents())
}

// serialize maps the aggregate to column values. It is its own span because the guide's tree has
// one; in the Mongo original this is where documents get encoded.
func (r *Repository) serialize(ctx context.Context, t *domain.Task) []any {
	_, span := r.tracer.Start(ctx, "serialize_task", trace.WithAttributes(attribute.String("task.id", t.ID)))
	defer span.End()
	row := []any{t.ID, t.Title, t.Description, string(t.Priority), string(t.Status), t.AssigneeID, t.Department,
		t.CreatedBy, t.CreatedAt.Format(timeLayout), t.UpdatedAt.Format(timeLayout)}
	span.SetAttributes(attribute.Int("serialize.columns", len(row)))
	span.SetStatus(codes.Ok, "")
	return row
}

// publish writes the events to the outbox table, which other consumers read, in their own span
// so that slow publishing is not mistaken for a slow save.
func (r *Repository) publish(ctx context.Context, events []domain.Event) (err error) {
	ctx, span := r.tracer.Start(ctx, "publish_domain_events", trace.WithAttributes(attribute.Int("events.count", len(events))))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "publishing domain events failed")
		} else {
			span.SetStatus(codes.Ok, "")
		}
		span.End()
	}()
	if len(events) == 0 {
		return nil
	}
	now := time.Now().UTC().Format(timeLayout)
	var b strings.Builder
	args := make([]any, 0, 4*len(events))
	b.WriteString("INSERT INTO task_events (task_id, name, detail, at) VALUES ")
	for i, e := range events {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?)")
		detail := ""
		if u, ok := e.(domain.TaskUpdated); ok {
			detail = u.Field
		}
		args = append(args, e.AggregateID(), e.EventName(), detail, now)
		span.AddEvent(e.EventName(), trace.WithAttributes(attribute.String("task.id", e.AggregateID())))
	}
	if _, err := r.db.ExecContext(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("store %d domain events: %w", len(events), err)
	}
	return nil
}

const taskColumns = `id, title, description, priority, status, assignee_id, department, created_by, created_at, updated_at`

func scanTask(s interface{ Scan(...any) error }) (*domain.Task, error) {
	var t domain.Task
	var prio, status, created, updated string
	if err := s.Scan(&t.ID, &t.Title, &t.Description, &prio, &status, &t.AssigneeID, &t.Department, &t.CreatedBy, &created, &updated); err != nil {
		return nil, err
	}
	t.Priority, t.Status = domain.Priority(prio), domain.Status(status)
	var err error
	if t.CreatedAt, err = time.Parse(timeLayout, created); err != nil {
		return nil, fmt.Errorf("task %s created_at: %w", t.ID, err)
	}
	if t.UpdatedAt, err = time.Parse(timeLayout, updated); err != nil {
		return nil, fmt.Errorf("task %s updated_at: %w", t.ID, err)
	}
	return &t, nil
}

// GetByID returns the task or a *domain.NotFoundError.
func (r *Repository) GetByID(ctx context.Context, id string) (t *domain.Task, err error) {
	ctx, span := r.start(ctx, "get_by_id", attribute.String("task.id", id))
	defer func() { end(span, err) }()
	t, err = scanTask(r.db.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &domain.NotFoundError{TaskID: id}
	}
	if err != nil {
		return nil, fmt.Errorf("get task %s: %w", id, err)
	}
	span.SetAttributes(attribute.String("task.status", string(t.Status)))
	return t, nil
}

// Filter narrows Find; empty fields do not filter.
type Filter struct {
	Status     domain.Status
	Priority   domain.Priority
	AssigneeID string
	Limit      int
}

// Find lists the newest tasks matching f.
func (r *Repository) Find(ctx context.Context, f Filter) (tasks []*domain.Task, err error) {
	ctx, span := r.start(ctx, "find")
	defer func() { end(span, err) }()
	var where []string
	var args []any
	add := func(col, v string) {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
			span.SetAttributes(attribute.String("filter."+col, v))
		}
	}
	add("status", string(f.Status))
	add("priority", string(f.Priority))
	add("assignee_id", f.AssigneeID)
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 50
	}
	q := `SELECT ` + taskColumns + ` FROM tasks`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("find tasks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, fmt.Errorf("find tasks: %w", err)
		}
		tasks = append(tasks, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find tasks: %w", err)
	}
	span.SetAttributes(attribute.Int("tasks.count", len(tasks)))
	return tasks, nil
}

// Update stores every field of t and publishes its queued events.
func (r *Repository) Update(ctx context.Context, t *domain.Task) (err error) {
	ctx, span := r.start(ctx, "update", attribute.String("task.id", t.ID), attribute.String("task.priority", string(t.Priority)))
	defer func() { end(span, err) }()
	row := r.serialize(ctx, t)
	res, err := r.db.ExecContext(ctx,
		`UPDATE tasks SET title = ?, description = ?, priority = ?, status = ?, assignee_id = ?, department = ?, updated_at = ? WHERE id = ?`,
		row[1], row[2], row[3], row[4], row[5], row[6], row[9], t.ID)
	if err != nil {
		return fmt.Errorf("update task %s: %w", t.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return &domain.NotFoundError{TaskID: t.ID}
	}
	return r.publish(ctx, t.PullEvents())
}

// Delete removes t and publishes its queued events.
func (r *Repository) Delete(ctx context.Context, t *domain.Task) (err error) {
	ctx, span := r.start(ctx, "delete", attribute.String("task.id", t.ID))
	defer func() { end(span, err) }()
	res, err := r.db.ExecContext(ctx, `DELETE FROM tasks WHERE id = ?`, t.ID)
	if err != nil {
		return fmt.Errorf("delete task %s: %w", t.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return &domain.NotFoundError{TaskID: t.ID}
	}
	return r.publish(ctx, t.PullEvents())
}

// MarkIndexed records that the search index was rebuilt for a task.
func (r *Repository) MarkIndexed(ctx context.Context, id string) (err error) {
	ctx, span := r.start(ctx, "mark_indexed", attribute.String("task.id", id))
	defer func() { end(span, err) }()
	if _, err := r.db.ExecContext(ctx, `UPDATE tasks SET indexed_at = ? WHERE id = ?`, time.Now().UTC().Format(timeLayout), id); err != nil {
		return fmt.Errorf("mark task %s indexed: %w", id, err)
	}
	return nil
}

// ArchivedTask is a row of the archive.
type ArchivedTask struct {
	ID         int64     `json:"id"`
	Title      string    `json:"title"`
	Priority   string    `json:"priority"`
	Status     string    `json:"status"`
	Department string    `json:"department"`
	CreatedAt  time.Time `json:"created_at"`
}

// FindArchivedByDepartment searches the archive for a department's tasks, including those whose
// description mentions it, case-insensitively. This is the guide's slow query: with no index on
// department, the column wrapped in lower(), and a substring match on the description, SQLite
// reads and lower-cases every row of the archive (about 330 ms for 200,000 rows on the 2-core
// machine the demo was written on, without concurrent load).
func (r *Repository) FindArchivedByDepartment(ctx context.Context, department string, limit int) (out []ArchivedTask, err error) {
	ctx, span := r.start(ctx, "find_archived_by_department", attribute.String("task.department", department))
	defer func() { end(span, err) }()
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	rows, err := r.db.QueryContext(ctx,
		`SELECT id, title, priority, status, department, created_at FROM tasks_archive WHERE lower(department) = lower(?1) OR lower(description) LIKE '%' || lower(?1) || '%' ORDER BY created_at DESC LIMIT ?2`,
		department, limit)
	if err != nil {
		return nil, fmt.Errorf("search archive: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a ArchivedTask
		var created string
		if err := rows.Scan(&a.ID, &a.Title, &a.Priority, &a.Status, &a.Department, &created); err != nil {
			return nil, fmt.Errorf("search archive: %w", err)
		}
		if a.CreatedAt, err = time.Parse(timeLayout, created); err != nil {
			return nil, fmt.Errorf("archived task %d created_at: %w", a.ID, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search archive: %w", err)
	}
	span.SetAttributes(attribute.Int("tasks.count", len(out)))
	return out, nil
}

// Departments are the archive's department values; the traffic generator searches for them.
var Departments = []string{
	"engineering", "sales", "marketing", "support", "finance", "legal", "operations", "research",
	"design", "security", "platform", "data", "mobile", "infrastructure", "people", "procurement",
}

// SeedArchive fills the archive up to rows rows, untraced: startup bulk work would otherwise be
// one enormous trace. It returns quickly when an earlier run already seeded the file.
func (r *Repository) SeedArchive(ctx context.Context, rows int) error {
	raw := r.db.Raw()
	var have int
	if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM tasks_archive`).Scan(&have); err != nil {
		return fmt.Errorf("count archive: %w", err)
	}
	if have >= rows {
		return nil
	}
	tx, err := raw.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("seed archive: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO tasks_archive (title, description, priority, status, department, created_at) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("seed archive: %w", err)
	}
	defer stmt.Close()
	prios := []string{"low", "medium", "high", "critical"}
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	// Descriptions of a realistic length make the rows span many pages, which is what a scan
	// pays for.
	filler := strings.Repeat("archived work item carried over from the previous tracker; ", 4)
	for i := have; i < rows; i++ {
		dept := Departments[i%len(Departments)]
		if i%3 == 0 {
			dept = strings.ToUpper(dept[:1]) + dept[1:]
		}
		if _, err := stmt.ExecContext(ctx, fmt.Sprintf("archived task %d", i), filler+fmt.Sprint(i), prios[i%len(prios)],
			"completed", dept, base.Add(time.Duration(i)*time.Minute).Format(timeLayout)); err != nil {
			return fmt.Errorf("seed archive row %d: %w", i, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("seed archive: %w", err)
	}
	return nil
}
