package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/api"
	"github.com/ariadne-tracing/ariadne/internal/auth"
	"github.com/ariadne-tracing/ariadne/internal/config"
	"github.com/ariadne-tracing/ariadne/internal/ingest"
	"github.com/ariadne-tracing/ariadne/internal/receive"
	"github.com/ariadne-tracing/ariadne/internal/store"
)

// tenants holds one core per tenant, each in its own directory under data_dir/tenants/, opened
// on a tenant's first write (and at start for every tenant already on disk). Isolation comes
// from the layout rather than from a tenant field threaded through every record: a tenant's WAL,
// head, blocks, retention, compaction, search, metrics, linter and service graph are its own
// core's, and a read reaches only the cores the gate let it name.
type tenants struct {
	cfg   config.Config
	build api.BuildInfo
	log   *slog.Logger
	o     options
	reg   prometheus.Registerer
	dir   string
	max   int

	mu    sync.Mutex
	cores map[string]*core
	// empty answers reads of a tenant that has no data yet: an empty core, never written, so
	// that such a read neither creates a directory nor differs from a tenant with nothing found.
	empty *core
}

// DefaultMaxTenantStores is how many tenants a server opens at most.
const DefaultMaxTenantStores = 100

func openTenants(cfg config.Config, build api.BuildInfo, log *slog.Logger, o options, reg prometheus.Registerer) (*tenants, error) {
	t := &tenants{cfg: cfg, build: build, log: log, o: o, reg: reg, dir: filepath.Join(cfg.DataDir, "tenants"),
		max: cfg.MultitenancyMaxTenants, cores: map[string]*core{}}
	if t.max <= 0 {
		t.max = DefaultMaxTenantStores
	}
	if err := os.MkdirAll(t.dir, 0o755); err != nil {
		return nil, fmt.Errorf("tenants: %w", err)
	}
	// The empty core's metrics are nobody's: a throwaway registry.
	empty, err := openCore(cfg, filepath.Join(cfg.DataDir, "no-tenant"), build, log, o, prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	t.empty = empty
	entries, err := os.ReadDir(t.dir)
	if err != nil {
		t.closeAll()
		return nil, fmt.Errorf("tenants: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || !auth.ValidTenant(e.Name()) {
			continue
		}
		if _, err := t.get(e.Name(), true); err != nil {
			t.closeAll()
			return nil, err
		}
	}
	return t, nil
}

// errTooManyTenants refuses a new tenant past the cap, as a rate limit would: retry later, or
// raise multitenancy_max_tenants.
func (t *tenants) errTooManyTenants(name string) error {
	return &ingest.OverloadError{Reason: fmt.Sprintf("tenant %q refused: this server already holds %d tenants (multitenancy_max_tenants)", name, t.max),
		After: time.Minute, Limited: true}
}

// get returns a tenant's core, opening it when create is set; without create an unknown tenant
// gets nil.
func (t *tenants) get(name string, create bool) (*core, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.cores[name]; c != nil {
		return c, nil
	}
	if !create {
		return nil, nil
	}
	if !auth.ValidTenant(name) {
		return nil, fmt.Errorf("tenant %q is not a valid tenant name", name)
	}
	if len(t.cores) >= t.max {
		return nil, t.errTooManyTenants(name)
	}
	c, err := openCore(t.cfg, filepath.Join(t.dir, name), t.build, t.log, t.o,
		prometheus.WrapRegistererWith(prometheus.Labels{"tenant": name}, t.reg))
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", name, err)
	}
	if err := t.o.overrides.track(name, c); err != nil {
		c.close()
		return nil, fmt.Errorf("tenant %s: %w", name, err)
	}
	c.API.SetReady(true)
	t.cores[name] = c
	return c, nil
}

// reader is the core that answers a read of tenant name.
func (t *tenants) reader(name string) *core {
	if c, _ := t.get(name, false); c != nil {
		return c
	}
	return t.empty
}

func (t *tenants) closeAll() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for _, c := range t.cores {
		errs = append(errs, c.close())
	}
	t.cores = map[string]*core{}
	if t.empty != nil {
		errs = append(errs, t.empty.close())
	}
	return errors.Join(errs...)
}

// ConsumeTraces sends a request to its tenant's ingester.
func (t *tenants) ConsumeTraces(ctx context.Context, body []byte) (receive.Result, error) {
	res, err := t.consume(ctx, receive.Tenant(ctx), body)
	return receive.Result{RejectedSpans: res.RejectedSpans, Message: res.Message}, err
}

func (t *tenants) consume(ctx context.Context, tenant string, body []byte) (ingest.Result, error) {
	c, err := t.get(tenant, true)
	if err != nil {
		return ingest.Result{}, err
	}
	return c.in.Consume(ctx, tenant, body)
}

// refusedRequest counts receiver refusals that came before a tenant was known.
func (t *tenants) refusedRequest(reason string) { t.empty.in.RefusedRequest(reason) }

// handler routes the query port: paths that read trace data go to the tenant's core (the gate
// has already put the tenant it may read in the header), everything else to root.
func (t *tenants) handler(root http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !queryRule(r).Tenant {
			root.ServeHTTP(w, r)
			return
		}
		names := auth.Tenants(r.Header.Get(auth.TenantHeader))
		if len(names) == 1 {
			t.reader(names[0]).API.ServeHTTP(w, r)
			return
		}
		t.federated(w, r, names)
	})
}

// federated answers a read of several tenants (a|b) from each tenant's core: trace by ID takes
// the tenants' parts of the trace, search merges their results. Other endpoints refuse it.
func (t *tenants) federated(w http.ResponseWriter, r *http.Request, names []string) {
	p := r.URL.Path
	var answers []*httptest.ResponseRecorder
	ask := func() {
		for _, n := range names {
			rec := httptest.NewRecorder()
			t.reader(n).API.ServeHTTP(rec, r.Clone(r.Context()))
			answers = append(answers, rec)
		}
	}
	switch {
	case strings.HasPrefix(p, "/api/traces/") || strings.HasPrefix(p, "/api/v2/traces/"):
		ask()
		// A trace ID is the sender's: two tenants holding the same ID is a collision, not one
		// trace. The first tenant (in the order asked) that has it answers.
		for _, a := range answers {
			if a.Code != http.StatusNotFound {
				copyAnswer(w, a)
				return
			}
		}
		copyAnswer(w, answers[0])
	case p == "/api/search":
		ask()
		merged, err := mergeSearch(answers, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(merged)
	default:
		http.Error(w, "federated reads (X-Scope-OrgID a|b) are answered for trace by ID and /api/search; ask each tenant for "+p, http.StatusBadRequest)
	}
}

func copyAnswer(w http.ResponseWriter, a *httptest.ResponseRecorder) {
	for k, v := range a.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(a.Code)
	w.Write(a.Body.Bytes())
}

// mergeSearch joins Tempo search answers: traces newest first, up to the request's limit.
func mergeSearch(answers []*httptest.ResponseRecorder, r *http.Request) ([]byte, error) {
	var traces []json.RawMessage
	for _, a := range answers {
		if a.Code != http.StatusOK {
			return a.Body.Bytes(), nil
		}
		var res struct {
			Traces []json.RawMessage `json:"traces"`
		}
		if err := json.Unmarshal(a.Body.Bytes(), &res); err != nil {
			return nil, fmt.Errorf("federated search: %w", err)
		}
		traces = append(traces, res.Traces...)
	}
	start := func(m json.RawMessage) int64 {
		var v struct {
			Start json.Number `json:"startTimeUnixNano"`
		}
		json.NewDecoder(bytes.NewReader(m)).Decode(&v)
		n, _ := strconv.ParseInt(v.Start.String(), 10, 64)
		return n
	}
	sort.SliceStable(traces, func(i, j int) bool { return start(traces[i]) > start(traces[j]) })
	limit := 20
	if l, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && l > 0 {
		limit = l
	}
	if len(traces) > limit {
		traces = traces[:limit]
	}
	if traces == nil {
		traces = []json.RawMessage{}
	}
	return json.Marshal(map[string]any{"traces": traces})
}

// TenantStore is the store holding tenant's data: with multi-tenancy off the one store whatever
// the name, on the tenant's (nil for a tenant that has sent nothing). Tests flush through it.
func (s *Server) TenantStore(tenant string) *store.Store {
	if s.tenants == nil {
		return s.Store
	}
	if c, _ := s.tenants.get(tenant, false); c != nil {
		return c.Store
	}
	return nil
}
