// Package traffic drives the task API with the guide's stories: mostly quick creates, reads,
// lists and updates, with now and then the slow archive search, a delete refused for lack of
// permission, a batch in which some tasks fail, a call that crosses into the notification service,
// and a request to the deliberately mis-instrumented reindex endpoint.
package traffic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi/repository"
)

// Story names a kind of request.
type Story string

// The stories.
const (
	StoryCreate           Story = "create-task"
	StoryGet              Story = "get-task"
	StoryList             Story = "list-tasks"
	StoryUpdate           Story = "update-task"
	StoryNotify           Story = "cross-service-notify"
	StorySlowQuery        Story = "slow-query"
	StoryPermissionDenied Story = "permission-denied"
	StoryBatch            Story = "batch-with-failures"
	StoryBroken           Story = "broken-instrumentation"
	// StoryOrphan is not a request but its consequence: a trace whose root is not a server span,
	// as the broken reindex endpoint's background work produces. demo.Run reports it.
	StoryOrphan Story = "orphan-root"
)

// Interesting reports whether a story's traces are worth pointing a user at; the others are the
// background of ordinary requests.
func (s Story) Interesting() bool {
	switch s {
	case StoryNotify, StorySlowQuery, StoryPermissionDenied, StoryBatch, StoryBroken, StoryOrphan:
		return true
	}
	return false
}

// Description says what to look for in a story's trace.
func (s Story) Description() string {
	switch s {
	case StoryCreate:
		return "POST /api/tasks: create_task_entity, task_repository.add, record_metrics"
	case StoryGet:
		return "GET /api/tasks/{id}: get_task, task_repository.get_by_id"
	case StoryList:
		return "GET /api/tasks: list_tasks, task_repository.find"
	case StoryUpdate:
		return "PATCH /api/tasks/{id}: update_task with fetch_task, validate_updates, apply_updates, save_task"
	case StoryNotify:
		return "task-api calls notification-service: one trace across both services"
	case StorySlowQuery:
		return "archive search: the unindexed department scan of tasks_archive is the slowest span"
	case StoryPermissionDenied:
		return "delete by a non-owner: PermissionError recorded on check_authorization and delete_task"
	case StoryBatch:
		return "process_multiple_tasks: concurrent process_single_task spans, some failing"
	case StoryBroken:
		return "reindex: reindex_task is never ended, rebuild_search_index starts a separate trace"
	case StoryOrphan:
		return "a trace rooted in an internal span: context was dropped on the way (see reindex)"
	}
	return string(s)
}

// Trace is one request the generator made.
type Trace struct {
	Story    Story
	TraceID  string // hex, empty if the service did not answer with a trace context
	Status   int
	Duration time.Duration
}

// Options configure Run.
type Options struct {
	// BaseURL is the task API, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Rate is the number of requests started per second; 0 means 5.
	Rate float64
	// Client defaults to a plain client: the generator stands for outside callers, which do not
	// send trace context.
	Client *http.Client
	// OnTrace, if set, is called after every request, from several goroutines at once.
	OnTrace func(Trace)
}

// order is the first round: every story once, quickly, so that a short run shows them all. The
// slow search goes last so it does not hold up the others.
var order = []Story{StoryCreate, StoryCreate, StoryCreate, StoryGet, StoryList, StoryUpdate, StoryNotify,
	StoryPermissionDenied, StoryBatch, StoryBroken, StorySlowQuery}

// weights shape the steady state: mostly fast requests.
var weights = []struct {
	story Story
	n     int
}{
	{StoryCreate, 25}, {StoryGet, 20}, {StoryList, 15}, {StoryUpdate, 15},
	{StoryNotify, 6}, {StorySlowQuery, 4}, {StoryPermissionDenied, 5}, {StoryBatch, 5}, {StoryBroken, 3},
}

const maxInFlight = 8

// Run sends requests until ctx is done, then waits for those in flight, which are allowed to
// finish so that their traces are complete.
func Run(ctx context.Context, o Options) error {
	if o.BaseURL == "" {
		return fmt.Errorf("traffic: no base URL")
	}
	g := &generator{o: o, base: strings.TrimRight(o.BaseURL, "/")}
	if g.o.Client == nil {
		g.o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	rate := o.Rate
	if rate <= 0 {
		rate = 5
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	// Requests outlive a cancelled ctx on purpose, bounded by this timeout.
	reqCtx := context.WithoutCancel(ctx)
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		story := g.pick(i)
		select {
		case <-ctx.Done():
			return nil
		case sem <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(reqCtx, 30*time.Second)
			defer cancel()
			g.play(rctx, story)
		})
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

type task struct{ id, owner string }

type generator struct {
	o    Options
	base string

	mu    sync.Mutex
	tasks []task
}

func (g *generator) pick(i int) Story {
	if i < len(order) {
		return order[i]
	}
	total := 0
	for _, w := range weights {
		total += w.n
	}
	n := rand.IntN(total)
	for _, w := range weights {
		if n < w.n {
			return w.story
		}
		n -= w.n
	}
	return StoryCreate
}

var (
	users       = []string{"alice", "bob", "dave"}
	priorities  = []string{"low", "medium", "medium", "high", "critical"}
	titles      = []string{"Implement feature X", "Fix login timeout", "Write release notes", "Rotate API keys", "Review dashboard", "Migrate archive"}
	assignees   = []string{"", "alice", "bob", "dave", "erin"}
	memberRoles = "member"
)

func (g *generator) randomTask() (task, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.tasks) == 0 {
		return task{}, false
	}
	return g.tasks[rand.IntN(len(g.tasks))], true
}

// existing returns a known task, creating one first when there is none yet.
func (g *generator) existing(ctx context.Context) (task, bool) {
	if t, ok := g.randomTask(); ok {
		return t, true
	}
	return g.create(ctx)
}

func (g *generator) create(ctx context.Context) (task, bool) {
	owner := users[rand.IntN(len(users))]
	body := map[string]string{
		"title":       titles[rand.IntN(len(titles))],
		"description": "created by the Ariadne demo traffic generator",
		"priority":    priorities[rand.IntN(len(priorities))],
		"assignee_id": assignees[rand.IntN(len(assignees))],
		"department":  repository.Departments[rand.IntN(len(repository.Departments))],
	}
	var out struct {
		ID string `json:"id"`
	}
	if !g.do(ctx, StoryCreate, http.MethodPost, "/api/tasks", owner, memberRoles, body, &out) || out.ID == "" {
		return task{}, false
	}
	t := task{id: out.ID, owner: owner}
	g.mu.Lock()
	g.tasks = append(g.tasks, t)
	// Bounded so batches keep hitting recent tasks rather than long-processed ones.
	if len(g.tasks) > 200 {
		g.tasks = g.tasks[len(g.tasks)-200:]
	}
	g.mu.Unlock()
	return t, true
}

func (g *generator) play(ctx context.Context, s Story) {
	switch s {
	case StoryCreate:
		g.create(ctx)
	case StoryGet:
		if t, ok := g.existing(ctx); ok {
			g.do(ctx, s, http.MethodGet, "/api/tasks/"+t.id, t.owner, memberRoles, nil, nil)
		}
	case StoryList:
		q := []string{"?status=pending", "?priority=high", "?assignee_id=alice", "?status=completed&limit=10", ""}
		g.do(ctx, s, http.MethodGet, "/api/tasks"+q[rand.IntN(len(q))], users[rand.IntN(len(users))], memberRoles, nil, nil)
	case StoryUpdate:
		if t, ok := g.existing(ctx); ok {
			upd := map[string]string{"status": "in_progress"}
			if rand.IntN(2) == 0 {
				upd["priority"] = priorities[rand.IntN(len(priorities))]
			}
			if rand.IntN(2) == 0 {
				upd["assignee_id"] = assignees[1+rand.IntN(len(assignees)-1)]
			}
			g.do(ctx, s, http.MethodPatch, "/api/tasks/"+t.id, t.owner, memberRoles, upd, nil)
		}
	case StoryNotify:
		if t, ok := g.existing(ctx); ok {
			g.do(ctx, s, http.MethodPost, "/api/tasks/"+t.id+"/notify", t.owner, memberRoles, nil, nil)
		}
	case StorySlowQuery:
		dept := repository.Departments[rand.IntN(len(repository.Departments))]
		g.do(ctx, s, http.MethodGet, "/api/tasks/archive?department="+dept, "carol", "admin", nil, nil)
	case StoryPermissionDenied:
		if t, ok := g.existing(ctx); ok {
			intruder := "mallory"
			g.do(ctx, s, http.MethodDelete, "/api/tasks/"+t.id, intruder, memberRoles, nil, nil)
		}
	case StoryBatch:
		var ids []string
		for range 4 {
			if t, ok := g.existing(ctx); ok {
				ids = append(ids, t.id)
			}
		}
		// An id that was never created, so the batch always has a failure to show.
		ids = append(ids, "00000000-0000-4000-8000-"+fmt.Sprintf("%012x", rand.Int64N(1<<48)))
		g.do(ctx, s, http.MethodPost, "/api/tasks/process", "carol", "admin", map[string][]string{"task_ids": ids}, nil)
	case StoryBroken:
		if t, ok := g.existing(ctx); ok {
			g.do(ctx, s, http.MethodPost, "/api/tasks/"+t.id+"/reindex", t.owner, memberRoles, nil, nil)
		}
	}
}

// do sends one request, reports it and decodes a JSON answer into out when given. It reports
// false when the request could not be made or did not succeed.
func (g *generator) do(ctx context.Context, s Story, method, path, userID, roles string, body, out any) bool {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return false
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.base+path, rd)
	if err != nil {
		return false
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-User-ID", userID)
	req.Header.Set("X-User-Roles", roles)
	start := time.Now()
	resp, err := g.o.Client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	decoded := true
	if out != nil && resp.StatusCode < 300 {
		decoded = json.NewDecoder(resp.Body).Decode(out) == nil
	}
	io.Copy(io.Discard, resp.Body)
	if g.o.OnTrace != nil {
		g.o.OnTrace(Trace{Story: s, TraceID: traceID(resp.Header.Get(taskapi.TraceResponseHeader)), Status: resp.StatusCode, Duration: time.Since(start)})
	}
	return decoded && resp.StatusCode < 300
}

// traceID takes the trace id out of a traceresponse (traceparent-format) header.
func traceID(h string) string {
	parts := strings.Split(h, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}
