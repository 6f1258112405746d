package server

import (
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
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/intake/receive"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/ingest"
	"github.com/ariadne-tracing/ariadne/internal/read/federate"
	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/auth"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/tempogrpc"
	"github.com/ariadne-tracing/ariadne/internal/storage/store"
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
	t.serveStreaming(empty)
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
	o := t.o
	o.tenant = name // its part of the bucket, on a cluster node
	c, err := openCore(t.cfg, filepath.Join(t.dir, name), t.build, t.log, o,
		prometheus.WrapRegistererWith(prometheus.Labels{"tenant": name}, t.reg))
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", name, err)
	}
	if err := t.o.overrides.track(name, c); err != nil {
		c.close()
		return nil, fmt.Errorf("tenant %s: %w", name, err)
	}
	t.serveStreaming(c)
	c.API.SetReady(true)
	t.cores[name] = c
	return c, nil
}

// serveStreaming gives a tenant's core its own Tempo streaming gRPC API, over its own engine,
// so a gRPC search or metrics query reaches only the tenant the gate resolved.
func (t *tenants) serveStreaming(c *core) {
	c.stream = tempogrpc.NewServer(c.API.Engine(), t.log)
	c.serve = tempogrpc.Handler(c.stream, c.API)
}

// stopStreaming ends every core's open streams, which would otherwise hold the query listener's
// graceful shutdown until they finish.
func (t *tenants) stopStreaming() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.cores {
		c.stream.Stop()
	}
	t.empty.stream.Stop()
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
			t.reader(names[0]).serve.ServeHTTP(w, r)
			return
		}
		t.federated(w, r, names)
	})
}

// federated answers a read of several tenants (a|b) from each tenant's core (federatedRead).
func (t *tenants) federated(w http.ResponseWriter, r *http.Request, names []string) {
	federatedRead(w, r, names, func(n string) http.Handler { return t.reader(n).API })
}

// federatedRead answers a read of several tenants (a|b) from each tenant's handler, asked the
// same request as if alone, and joins the answers (package federate). An endpoint whose answers
// cannot be joined is refused before any tenant is asked.
func federatedRead(w http.ResponseWriter, r *http.Request, names []string, serve func(tenant string) http.Handler) {
	if ok, why := federate.Federated(r.URL.Path); !ok {
		http.Error(w, "federated reads (X-Scope-OrgID a|b) are not answered here: "+why, http.StatusBadRequest)
		return
	}
	answers := make([]federate.Answer, 0, len(names))
	for _, n := range names {
		rec := httptest.NewRecorder()
		rr := r.Clone(r.Context())
		// Each tenant's core sees a read of its own tenant: its query queue, its limits.
		rr.Header.Set(auth.TenantHeader, n)
		serve(n).ServeHTTP(rec, rr)
		answers = append(answers, federate.Answer{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()})
	}
	a := federate.Merge(r, answers)
	for k, v := range a.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(a.Code)
	w.Write(a.Body)
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

// tenantList answers GET /api/status/tenants: whether multi-tenancy is on, whether a token is
// needed, and the tenants the caller may read (those holding data, and those its token names),
// which the UI offers in its tenant picker. With authentication off everyone may read every
// tenant anyway, so the list is every tenant with data.
func (s *Server) tenantList(authn *auth.Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		names := []string{}
		if s.tenants != nil {
			p, err := authn.Check(r.Header.Get("Authorization"), auth.RoleRead)
			if err != nil {
				// The gate let the request through, so it does not happen; answer as it would.
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			seen := map[string]bool{}
			s.tenants.mu.Lock()
			for n := range s.tenants.cores {
				if p == nil || p.MayActFor(n) {
					seen[n] = true
				}
			}
			s.tenants.mu.Unlock()
			if p != nil {
				bound, _ := p.Tenants()
				for _, n := range bound {
					seen[n] = true
				}
			}
			for n := range seen {
				names = append(names, n)
			}
			sort.Strings(names)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"multitenancy": s.tenants != nil, "auth": authn.Enabled(), "tenants": names})
	})
}
