// Package taskapi is the guide's task service in Go: an HTTP JSON API whose server spans come from
// otelhttp, over the command handlers, a SQLite repository traced at the database/sql level, and
// an otelhttp client calling the notification service.
package taskapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/commands"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/domain"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/repository"
)

// ServiceName is the task service's default service.name.
const ServiceName = "task-api"

// DefaultArchiveRows is the archive size that makes the department search take a few hundred
// milliseconds on a small machine.
const DefaultArchiveRows = 200_000

// TraceResponseHeader carries the request's trace context back to the caller, in the format of
// W3C Trace Context Level 2, so clients (the traffic generator, curl users) can look a request up.
const TraceResponseHeader = "traceresponse"

// Options configure a Service.
type Options struct {
	// DBPath is the SQLite file. Empty means a file in a fresh temporary folder removed by Close.
	DBPath string
	// NotificationURL is the notification service's base URL, e.g. http://127.0.0.1:8081.
	NotificationURL string
	// ArchiveRows is the size of the unindexed archive; 0 means DefaultArchiveRows, negative
	// means none.
	ArchiveRows int
	// TracerProvider defaults to the global one.
	TracerProvider trace.TracerProvider
}

// Service is a ready task API.
type Service struct {
	repo     *repository.Repository
	handlers *commands.Handlers
	handler  http.Handler
	tmpDir   string
}

// New opens the database, seeds the archive and builds the HTTP handler.
func New(ctx context.Context, o Options) (*Service, error) {
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	s := &Service{}
	path := o.DBPath
	if path == "" {
		dir, err := os.MkdirTemp("", "ariadne-demo-")
		if err != nil {
			return nil, fmt.Errorf("temporary database folder: %w", err)
		}
		s.tmpDir = dir
		path = filepath.Join(dir, "tasks.db")
	}
	repo, err := repository.Open(path, tp)
	if err != nil {
		s.removeTemp()
		return nil, err
	}
	s.repo = repo
	rows := o.ArchiveRows
	if rows == 0 {
		rows = DefaultArchiveRows
	}
	if rows > 0 {
		if err := repo.SeedArchive(ctx, rows); err != nil {
			s.Close()
			return nil, err
		}
	}
	var notifier commands.Notifier
	if o.NotificationURL != "" {
		notifier = &httpNotifier{
			url: strings.TrimRight(o.NotificationURL, "/") + "/api/notify",
			client: &http.Client{Transport: otelhttp.NewTransport(http.DefaultTransport,
				otelhttp.WithTracerProvider(tp),
				// The path is fixed here, so it is a template in the semantic conventions' sense
				// and names the client span better than the bare method.
				otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }),
			), Timeout: 10 * time.Second},
		}
	}
	s.handlers = commands.New(repo, notifier, tp)
	s.handler = otelhttp.NewHandler(withTraceResponse(s.routes()), ServiceName,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/health" }))
	return s, nil
}

// Handler serves the API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close closes the database and removes a temporary one.
func (s *Service) Close() error {
	var err error
	if s.repo != nil {
		err = s.repo.Close()
	}
	s.removeTemp()
	return err
}

func (s *Service) removeTemp() {
	if s.tmpDir != "" {
		os.RemoveAll(s.tmpDir)
	}
}

func withTraceResponse(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sc := trace.SpanContextFromContext(r.Context()); sc.IsValid() {
			w.Header().Set(TraceResponseHeader, fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags()))
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Service) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /api/tasks", s.create)
	mux.HandleFunc("GET /api/tasks", s.list)
	mux.HandleFunc("GET /api/tasks/archive", s.searchArchive)
	mux.HandleFunc("GET /api/tasks/{id}", s.get)
	mux.HandleFunc("PATCH /api/tasks/{id}", s.update)
	mux.HandleFunc("DELETE /api/tasks/{id}", s.delete)
	mux.HandleFunc("POST /api/tasks/{id}/notify", s.notify)
	mux.HandleFunc("POST /api/tasks/{id}/reindex", s.reindex)
	mux.HandleFunc("POST /api/tasks/process", s.process)
	return mux
}

// user reads the caller from X-User-ID and X-User-Roles. The demo has no real authentication; the
// headers stand in for a verified token's claims.
func user(r *http.Request) domain.User {
	u := domain.User{ID: r.Header.Get("X-User-ID")}
	if u.ID == "" {
		u.ID = "anonymous"
	}
	for _, role := range strings.Split(r.Header.Get("X-User-Roles"), ",") {
		if role = strings.TrimSpace(role); role != "" {
			u.Roles = append(u.Roles, role)
		}
	}
	trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("user.id", u.ID))
	return u
}

func taskID(r *http.Request) string {
	id := r.PathValue("id")
	trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("task.id", id))
	return id
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case domain.IsValidation(err):
		status = http.StatusBadRequest
	case domain.IsNotFound(err):
		status = http.StatusNotFound
	case domain.IsPermission(err):
		status = http.StatusForbidden
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		return &domain.ValidationError{Field: "body", Reason: err.Error()}
	}
	return nil
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) {
	var cmd commands.CreateTaskCommand
	if err := decode(r, &cmd); err != nil {
		writeError(w, err)
		return
	}
	t, err := s.handlers.CreateTask(r.Context(), cmd, user(r))
	if err != nil {
		writeError(w, err)
		return
	}
	trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("task.id", t.ID), attribute.String("task.priority", string(t.Priority)))
	writeJSON(w, http.StatusCreated, t)
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	t, err := s.handlers.GetTask(r.Context(), taskID(r))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	tasks, err := s.handlers.ListTasks(r.Context(), commands.ListTasksQuery{
		Status: q.Get("status"), Priority: q.Get("priority"), AssigneeID: q.Get("assignee_id"), Limit: limit,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	if tasks == nil {
		tasks = []*domain.Task{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": tasks})
}

func (s *Service) searchArchive(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	out, err := s.handlers.SearchArchive(r.Context(), r.URL.Query().Get("department"), limit)
	if err != nil {
		writeError(w, err)
		return
	}
	if out == nil {
		out = []repository.ArchivedTask{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": out})
}

func (s *Service) update(w http.ResponseWriter, r *http.Request) {
	var updates map[string]string
	if err := decode(r, &updates); err != nil {
		writeError(w, err)
		return
	}
	t, err := s.handlers.UpdateTask(r.Context(), taskID(r), updates, user(r))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Service) delete(w http.ResponseWriter, r *http.Request) {
	if err := s.handlers.DeleteTask(r.Context(), taskID(r), user(r)); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) notify(w http.ResponseWriter, r *http.Request) {
	status, err := s.handlers.NotifyTask(r.Context(), taskID(r))
	if err != nil {
		if domain.IsNotFound(err) {
			writeError(w, err)
			return
		}
		// Whatever else went wrong went wrong downstream.
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error(), "upstream_status": strconv.Itoa(status)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"notified": true})
}

// ProcessRequest is the body of POST /api/tasks/process.
type ProcessRequest struct {
	TaskIDs []string `json:"task_ids"`
}

// ProcessResult is one entry of its answer.
type ProcessResult struct {
	TaskID string `json:"task_id"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

func (s *Service) process(w http.ResponseWriter, r *http.Request) {
	var req ProcessRequest
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if len(req.TaskIDs) == 0 || len(req.TaskIDs) > 100 {
		writeError(w, &domain.ValidationError{Field: "task_ids", Reason: "between 1 and 100 ids"})
		return
	}
	results, err := s.handlers.ProcessTasks(r.Context(), req.TaskIDs)
	out := make([]ProcessResult, len(results))
	for i, e := range results {
		out[i] = ProcessResult{TaskID: req.TaskIDs[i], OK: e == nil}
		if e != nil {
			out[i].Error = e.Error()
		}
	}
	status := http.StatusOK
	if err != nil {
		// Some tasks failed, the request as a whole did not.
		status = http.StatusMultiStatus
	}
	writeJSON(w, status, map[string]any{"results": out})
}

func (s *Service) reindex(w http.ResponseWriter, r *http.Request) {
	job, err := s.handlers.ReindexTask(r.Context(), taskID(r))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"job_id": job})
}

// httpNotifier calls the notification service through an otelhttp transport, which starts the
// CLIENT span and injects traceparent with the global propagator.
type httpNotifier struct {
	url    string
	client *http.Client
}

// NotifyRequest is the notification service's request body.
type NotifyRequest struct {
	TaskID   string `json:"task_id"`
	Priority string `json:"priority"`
	Title    string `json:"title"`
	Assignee string `json:"assignee_id,omitempty"`
}

func (n *httpNotifier) Notify(ctx context.Context, t *domain.Task) (int, error) {
	body, err := json.Marshal(NotifyRequest{TaskID: t.ID, Priority: string(t.Priority), Title: t.Title, Assignee: t.AssigneeID})
	if err != nil {
		return 0, fmt.Errorf("encode notification: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("notification request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post %s: %w", n.url, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
