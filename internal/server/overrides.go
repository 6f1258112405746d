package server

import (
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/config"
)

// overridesCheckEvery is how often the configuration file is looked at for changed overrides.
const overridesCheckEvery = time.Second

// overrides holds the per-tenant settings in force and re-reads them from the configuration
// file when it changes, so a tenant's limits change without a restart. A file that no longer
// parses leaves the previous overrides in force and is logged.
type overrides struct {
	ingest  config.Ingest
	path    string
	log     *slog.Logger
	current atomic.Pointer[config.Overrides]
	stop    chan struct{}
	done    chan struct{}
}

func newOverrides(cfg config.Config, log *slog.Logger) *overrides {
	o := &overrides{ingest: cfg.Ingest, path: cfg.Path, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	ov := cfg.Overrides
	o.current.Store(&ov)
	go o.watch()
	return o
}

// rateFor is the ingester's per-tenant limit lookup.
func (o *overrides) rateFor(tenant string) (float64, float64) {
	return o.current.Load().RateFor(tenant, o.ingest)
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
