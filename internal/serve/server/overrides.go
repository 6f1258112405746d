package server

import (
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/serve/config"
)

// overridesCheckEvery is how often the configuration file is looked at for changed overrides.
const overridesCheckEvery = time.Second

// overrides holds the per-tenant settings in force and re-reads them from the configuration
// file when it changes, so a tenant's limits, retention and tail-sampling policies change without
// a restart. A file that no longer loads leaves the previous overrides in force and is logged.
//
// The ingest rate is asked on every export (rateFor); everything else is pushed into each
// tenant's core when it opens and again after every reload (track), because those settings live
// in the core's parts (ingester, store, sampler, query API) rather than being looked up per
// request.
type overrides struct {
	base    config.Config // the sections the overrides apply over; never changes
	path    string
	log     *slog.Logger
	current atomic.Pointer[config.Overrides]
	reloads prometheus.Counter

	mu    sync.Mutex
	cores map[string]*core // every tenant core opened, by tenant

	stop chan struct{}
	done chan struct{}
}

func newOverrides(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) *overrides {
	o := &overrides{base: cfg, path: cfg.Path, log: log, cores: map[string]*core{},
		stop: make(chan struct{}), done: make(chan struct{}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{Name: "ariadne_overrides_reloads_total",
			Help: "Times the per-tenant overrides were re-read from a changed configuration file and applied."})}
	reg.MustRegister(o.reloads)
	ov := cfg.Overrides
	o.current.Store(&ov)
	go o.watch()
	return o
}

// rateFor is the ingester's per-tenant limit lookup.
func (o *overrides) rateFor(tenant string) (float64, float64) {
	return o.current.Load().RateFor(tenant, o.base.Ingest)
}

// forTenant is what tenant runs with now.
func (o *overrides) forTenant(tenant string) config.Tenant {
	return o.current.Load().For(tenant, o.base)
}

// track applies tenant's settings to its core now and after every reload.
func (o *overrides) track(tenant string, c *core) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cores[tenant] = c
	return c.apply(o.forTenant(tenant))
}

// apply pushes the overrides in force into every tracked core.
func (o *overrides) apply() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for name, c := range o.cores {
		if err := c.apply(o.forTenant(name)); err != nil {
			// Check at load refused policies that do not build; this is a defect, not a bad file.
			o.log.Error("per-tenant overrides not applied", "tenant", name, "err", err)
		}
	}
}

func (o *overrides) watch() {
	defer close(o.done)
	if o.path == "" {
		<-o.stop
		return
	}
	stamp := fileStamp(o.path)
	t := time.NewTicker(overridesCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
		}
		st := fileStamp(o.path)
		if st == stamp {
			continue
		}
		stamp = st
		cfg, err := config.Load(o.path)
		if err != nil {
			o.log.Error("config file changed but does not load; keeping the overrides in force", "path", o.path, "err", err)
			continue
		}
		ov := cfg.Overrides
		o.current.Store(&ov)
		o.apply()
		o.reloads.Inc()
		o.log.Info("per-tenant overrides reloaded", "path", o.path, "tenants", len(ov.PerTenant))
	}
}

func (o *overrides) close() {
	if o == nil {
		return
	}
	close(o.stop)
	<-o.done
}

func fileStamp(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	// Size too: two writes within the file system's timestamp resolution still differ.
	return fi.ModTime().Add(time.Duration(fi.Size()))
}
