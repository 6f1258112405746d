// Package config holds every setting of `ariadne serve`, their defaults, the YAML file form and
// the command-line flags. A flag given on the command line wins over the file, which wins over
// the default.
package config

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/headsampling"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/sampling"
	"github.com/ariadne-tracing/ariadne/internal/serve/auth"
	"github.com/ariadne-tracing/ariadne/internal/serve/tlsconfig"
)

// Config is the whole configuration. The yaml tags are the config-file keys; docs/configuration.md
// lists them with their defaults.
type Config struct {
	DataDir      string `yaml:"data_dir"`
	OTLPGRPCAddr string `yaml:"otlp_grpc_addr"`
	OTLPHTTPAddr string `yaml:"otlp_http_addr"`
	HTTPAddr     string `yaml:"http_addr"`
	LogLevel     string `yaml:"log_level"`
	// MemoryLimit is the Go runtime's soft memory limit: the garbage collector works harder as
	// the heap nears it, which keeps the process's memory flat under sustained load.
	MemoryLimit int64 `yaml:"memory_limit_bytes"`

	Retention Duration `yaml:"retention"`

	Ingest  Ingest  `yaml:"ingest"`
	Storage Storage `yaml:"storage"`

	TailSampling sampling.Config `yaml:"tail_sampling"`
	// Sampling.Remote is what the SDKs' head samplers are told (GET /api/sampling?service=).
	Sampling HeadSampling `yaml:"sampling"`

	MetricsGenerator MetricsGenerator `yaml:"metrics_generator"`

	// MultitenancyEnabled isolates tenants as Grafana Tempo does: every request names its tenant
	// (X-Scope-OrgID), and each tenant's data lives apart under data_dir/tenants/<tenant>/.
	MultitenancyEnabled bool `yaml:"multitenancy_enabled"`
	// MultitenancyMaxTenants caps the tenants a server holds (each has its own store and head).
	MultitenancyMaxTenants int `yaml:"multitenancy_max_tenants"`

	// Overrides are per-tenant settings, re-read from the file while the server runs.
	Overrides Overrides `yaml:"overrides"`
	// Path is the file the configuration was loaded from ("" for none): the server re-reads its
	// overrides section when it changes.
	Path string `yaml:"-"`

	// Auth lists the bearer tokens every listener accepts, when enabled.
	Auth auth.Config `yaml:"auth"`
	// TLS holds each listener's certificate; a listener without one speaks plain text.
	TLS TLS `yaml:"tls"`

	// PprofEnabled serves Go's profiler on the query port under /debug/pprof/ (admin role when
	// authentication is on). Off by default: profiles expose memory contents and cost CPU.
	PprofEnabled bool `yaml:"pprof_enabled"`

	Server Server `yaml:"server"`
	Query  Query  `yaml:"query"`

	// ZipkinAddr is where Zipkin v2 JSON is accepted (POST /api/v2/spans); empty disables it.
	ZipkinAddr string `yaml:"zipkin_addr"`
	// JaegerSamplingAddr is where the Jaeger agent's sampling endpoint is served (GET
	// /sampling?service=, the OpenTelemetry Go SDK's default jaeger_remote endpoint is
	// localhost:5778); empty disables it. Off by default: Ariadne is a central server, not the
	// per-host agent SDKs find on localhost, and the same strategies are on the query port.
	JaegerSamplingAddr string `yaml:"jaeger_sampling_addr"`

	// Target is the roles this process plays (cluster.go); Cluster how nodes sharing a bucket
	// work together.
	Target  string  `yaml:"target"`
	Cluster Cluster `yaml:"cluster"`
	// NATS is the JetStream ingest log's connection (ingest.log: jetstream; nats.go).
	NATS NATS `yaml:"nats"`
}

// Overrides are Grafana Tempo-style per-tenant settings. Defaults applies to every tenant, and a
// tenant's per_tenant entry over it; a setting both leave out takes its section's value (ingest,
// query, retention, tail_sampling). The whole section is re-read while the server runs.
type Overrides struct {
	Defaults  TenantOverrides            `yaml:"defaults"`
	PerTenant map[string]TenantOverrides `yaml:"per_tenant"`
}

// TenantOverrides is one tenant's entry. Nil means "not overridden here".
type TenantOverrides struct {
	RateLimitSpans *float64 `yaml:"rate_limit_spans_per_second"`
	RateBurstSpans *float64 `yaml:"rate_burst_spans"`

	// The ingest section's span limits (-1: none).
	MaxSpansPerTrace       *int `yaml:"max_spans_per_trace"`
	MaxAttributeValueBytes *int `yaml:"max_attribute_value_bytes"`
	MaxAttributesPerSpan   *int `yaml:"max_attributes_per_span"`
	MaxEventsPerSpan       *int `yaml:"max_events_per_span"`
	MaxLinksPerSpan        *int `yaml:"max_links_per_span"`

	// Retention of the tenant's blocks.
	Retention *Duration `yaml:"retention"`
	// TailSampling replaces the tail_sampling section's policies for the tenant (an empty
	// section keeps everything). Its decision_wait and decision_cache stay the server's: they
	// shape the head, which is not re-made while running.
	TailSampling *sampling.Config `yaml:"tail_sampling"`
	// Query holds the query section's per-query limits.
	Query QueryOverrides `yaml:"query"`
}

// QueryOverrides are the query section's per-query limits a tenant may have of its own.
type QueryOverrides struct {
	Timeout                   *Duration `yaml:"timeout"`
	MaxResultLimit            *int      `yaml:"max_result_limit"`
	MaxSpansPerSpanSet        *int      `yaml:"max_spans_per_span_set"`
	MaxDuration               *Duration `yaml:"max_duration"`
	MetricsMaxDuration        *Duration `yaml:"metrics_max_duration"`
	MaxResponseSeries         *int      `yaml:"max_response_series"`
	MaxBytesPerTrace          *int64    `yaml:"max_bytes_per_trace"`
	MaxBytesPerTagValuesQuery *int64    `yaml:"max_bytes_per_tag_values_query"`
	MaxTracesPerLintReport    *int      `yaml:"max_traces_per_lint_report"`
}

// Tenant are the settings one tenant runs with: the sections' values with the overrides applied.
type Tenant struct {
	RateLimitSpans, RateBurstSpans float64
	Ingest                         Ingest // only the span limits and the rate differ per tenant
	Query                          Query  // only the per-query limits differ per tenant
	Retention                      Duration
	TailSampling                   sampling.Config
}

// For is what tenant runs with, given the sections of cfg (only Ingest, Query, Retention and
// TailSampling are read; the overrides are o, not cfg's, since they change while cfg does not).
func (o Overrides) For(tenant string, cfg Config) Tenant {
	t := Tenant{Ingest: cfg.Ingest, Query: cfg.Query, Retention: cfg.Retention, TailSampling: cfg.TailSampling}
	t.RateLimitSpans, t.RateBurstSpans = cfg.Ingest.RateLimitSpans, cfg.Ingest.RateBurstSpans
	t.apply(o.Defaults)
	if e, ok := o.PerTenant[tenant]; ok {
		t.apply(e)
	}
	t.Ingest.RateLimitSpans, t.Ingest.RateBurstSpans = t.RateLimitSpans, t.RateBurstSpans
	return t
}

func (t *Tenant) apply(e TenantOverrides) {
	t.applyRate(e)
	set(&t.Ingest.MaxSpansPerTrace, e.MaxSpansPerTrace)
	set(&t.Ingest.MaxAttributeValueBytes, e.MaxAttributeValueBytes)
	set(&t.Ingest.MaxAttributesPerSpan, e.MaxAttributesPerSpan)
	set(&t.Ingest.MaxEventsPerSpan, e.MaxEventsPerSpan)
	set(&t.Ingest.MaxLinksPerSpan, e.MaxLinksPerSpan)
	set(&t.Retention, e.Retention)
	if e.TailSampling != nil {
		ts := *e.TailSampling
		ts.DecisionWait, ts.DecisionCache = t.TailSampling.DecisionWait, t.TailSampling.DecisionCache
		t.TailSampling = ts
	}
	q := e.Query
	set(&t.Query.Timeout, q.Timeout)
	set(&t.Query.MaxResultLimit, q.MaxResultLimit)
	set(&t.Query.MaxSpansPerSpanSet, q.MaxSpansPerSpanSet)
	set(&t.Query.MaxDuration, q.MaxDuration)
	set(&t.Query.MetricsMaxDuration, q.MetricsMaxDuration)
	set(&t.Query.MaxResponseSeries, q.MaxResponseSeries)
	set(&t.Query.MaxBytesPerTrace, q.MaxBytesPerTrace)
	set(&t.Query.MaxBytesPerTagValuesQuery, q.MaxBytesPerTagValuesQuery)
	set(&t.Query.MaxTracesPerLintReport, q.MaxTracesPerLintReport)
}

func (t *Tenant) applyRate(e TenantOverrides) {
	if e.RateLimitSpans != nil {
		t.RateLimitSpans = *e.RateLimitSpans
		if e.RateBurstSpans == nil {
			t.RateBurstSpans = 0 // one second's worth of the tenant's own rate, not of the default
		}
	}
	if e.RateBurstSpans != nil {
		t.RateBurstSpans = *e.RateBurstSpans
	}
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// RateFor is tenant's ingest rate and burst under these overrides, over the defaults in ic. It
// is asked on every export, so it reads only the two settings.
func (o Overrides) RateFor(tenant string, ic Ingest) (rate, burst float64) {
	t := Tenant{RateLimitSpans: ic.RateLimitSpans, RateBurstSpans: ic.RateBurstSpans}
	t.applyRate(o.Defaults)
	if e, ok := o.PerTenant[tenant]; ok {
		t.applyRate(e)
	}
	return t.RateLimitSpans, t.RateBurstSpans
}

// Check reports the first override that cannot be applied (a tail-sampling policy that does not
// build, a tenant name that cannot be one), so that a bad edit is refused as a whole.
func (o Overrides) Check() error {
	check := func(who string, e TenantOverrides) error {
		if e.TailSampling != nil && e.TailSampling.Enabled() {
			ts := *e.TailSampling
			ts.DecisionCache = 1 // only the policies are being checked
			if _, err := sampling.New(ts, nil); err != nil {
				return fmt.Errorf("overrides %s: tail_sampling: %w", who, err)
			}
		}
		return nil
	}
	if err := check("defaults", o.Defaults); err != nil {
		return err
	}
	for name, e := range o.PerTenant {
		if !auth.ValidTenant(name) {
			return fmt.Errorf("overrides: per_tenant: %q is not a tenant name", name)
		}
		if err := check(name, e); err != nil {
			return err
		}
	}
	return nil
}

// TLS is the certificate (and optional client CA, for mutual TLS) of each listener.
type TLS struct {
	OTLPGRPC tlsconfig.Server `yaml:"otlp_grpc"`
	OTLPHTTP tlsconfig.Server `yaml:"otlp_http"`
	HTTP     tlsconfig.Server `yaml:"http"`
	Zipkin   tlsconfig.Server `yaml:"zipkin"`
}

// MetricsGenerator configures the RED span metrics and the service graph computed from the
// ingest stream, with Grafana Tempo's metric names.
type MetricsGenerator struct {
	Disabled             bool     `yaml:"disabled"`
	Dimensions           []string `yaml:"span_metrics_dimensions"`
	MaxSeries            int      `yaml:"max_series"`
	ServiceGraphWait     Duration `yaml:"service_graph_wait"`
	ServiceGraphMaxItems int      `yaml:"service_graph_max_items"`
	// RemoteWriteURL, when set, receives the generated metrics with Prometheus remote write.
	RemoteWriteURL      string   `yaml:"remote_write_url"`
	RemoteWriteInterval Duration `yaml:"remote_write_interval"`
}

// Ingest are the receiving limits. Count limits take -1 for none.
type Ingest struct {
	MaxRequestBytes        int64   `yaml:"max_request_bytes"`
	MaxHeadBytes           int64   `yaml:"max_head_bytes"`
	MaxWALPendingBytes     int64   `yaml:"max_wal_pending_bytes"`
	MaxSpansPerTrace       int     `yaml:"max_spans_per_trace"`
	MaxAttributeValueBytes int     `yaml:"max_attribute_value_bytes"`
	MaxAttributesPerSpan   int     `yaml:"max_attributes_per_span"`
	MaxEventsPerSpan       int     `yaml:"max_events_per_span"`
	MaxLinksPerSpan        int     `yaml:"max_links_per_span"`
	RateLimitSpans         float64 `yaml:"rate_limit_spans_per_second"`
	RateBurstSpans         float64 `yaml:"rate_burst_spans"`
	// MaxTenants caps the tenants whose ingest rate is tracked at once.
	MaxTenants int `yaml:"max_tenants"`
	// Log is where acknowledged requests wait for a block: local (IngestLogLocal) or
	// jetstream (IngestLogJetStream, with the NATS section).
	Log string `yaml:"log"`
}

// Storage tunes when traces move from memory to blocks.
type Storage struct {
	TraceIdle     Duration `yaml:"trace_idle"`
	TraceMaxAge   Duration `yaml:"trace_max_age"`
	HeadCutBytes  int64    `yaml:"head_cut_bytes"`
	BlockMaxBytes int64    `yaml:"block_max_bytes"`
	BlockMaxWait  Duration `yaml:"block_max_wait"`
	WALSegment    int64    `yaml:"wal_segment_bytes"`
	// Compaction: see store.Options. A negative CompactMinBlocks turns it off.
	CompactMinBlocks   int      `yaml:"compact_min_blocks"`
	CompactTargetBytes int64    `yaml:"compact_target_bytes"`
	CompactWindow      Duration `yaml:"compact_window"`
	// A block from the head waits CompactFreshAge before it is merged (negative: no wait),
	// unless more than CompactFreshBlocks such blocks are waiting.
	CompactFreshAge    Duration `yaml:"compact_fresh_age"`
	CompactFreshBlocks int      `yaml:"compact_fresh_blocks"`
	// MaxDiskBytes caps the data directory's blocks and WAL; the oldest blocks go first. 0: off.
	MaxDiskBytes int64 `yaml:"max_disk_bytes"`
	// Backend is where blocks live: "local" (data_dir/blocks) or "s3" (S3 below).
	Backend string `yaml:"backend"`
	S3      S3     `yaml:"s3"`
}

// Server protects the listeners from too many, idle or slow connections. The names follow
// Grafana Tempo's server block.
type Server struct {
	HTTPReadHeaderTimeout Duration `yaml:"http_server_read_header_timeout"`
	HTTPReadTimeout       Duration `yaml:"http_server_read_timeout"`
	HTTPWriteTimeout      Duration `yaml:"http_server_write_timeout"`
	HTTPIdleTimeout       Duration `yaml:"http_server_idle_timeout"`
	// HTTPConnLimit and GRPCConnLimit cap each listener's open connections; <= 0 is no cap.
	HTTPConnLimit int `yaml:"http_listen_conn_limit"`
	GRPCConnLimit int `yaml:"grpc_listen_conn_limit"`

	GRPCMaxConcurrentStreams   uint32   `yaml:"grpc_server_max_concurrent_streams"`
	GRPCMaxConnectionIdle      Duration `yaml:"grpc_server_max_connection_idle"`
	GRPCKeepaliveTime          Duration `yaml:"grpc_server_keepalive_time"`
	GRPCKeepaliveTimeout       Duration `yaml:"grpc_server_keepalive_timeout"`
	GRPCMinTimeBetweenPings    Duration `yaml:"grpc_server_min_time_between_pings"`
	GRPCPingWithoutStreamAllow bool     `yaml:"grpc_server_ping_without_stream_allowed"`
}

// Query bounds what one query may cost and how many run at once. The names follow Grafana
// Tempo's query frontend, querier and overrides.
type Query struct {
	// MaxConcurrentQueries run at once; the rest wait in per-tenant queues. 0: half the CPUs,
	// at least one.
	MaxConcurrentQueries int `yaml:"max_concurrent_queries"`
	// MaxMemoryBytes is the memory the running queries may hold together, by their estimates.
	MaxMemoryBytes int64 `yaml:"max_memory_bytes"`
	// MaxOutstandingPerTenant queries may wait; past it the API answers 429 with Retry-After.
	MaxOutstandingPerTenant int      `yaml:"max_outstanding_per_tenant"`
	Timeout                 Duration `yaml:"timeout"`
	// CPUShare is the fraction of the time each running query works while ingest is busy; the
	// rest it pauses, so that ingest keeps its throughput under any query load. 1: no pausing.
	CPUShare float64 `yaml:"cpu_share"`

	MaxResultLimit            int      `yaml:"max_result_limit"`
	MaxSpansPerSpanSet        int      `yaml:"max_spans_per_span_set"`
	MaxDuration               Duration `yaml:"max_duration"`
	MetricsMaxDuration        Duration `yaml:"metrics_max_duration"`
	MaxResponseSeries         int      `yaml:"max_response_series"`
	MaxBytesPerTrace          int64    `yaml:"max_bytes_per_trace"`
	MaxBytesPerTagValuesQuery int64    `yaml:"max_bytes_per_tag_values_query"`
	MaxTracesPerLintReport    int      `yaml:"max_traces_per_lint_report"`
}

// Default returns the configuration with every default filled in.
func Default() Config {
	return Config{
		DataDir:      "./data",
		OTLPGRPCAddr: ":4317",
		OTLPHTTPAddr: ":4318",
		HTTPAddr:     ":3200",
		ZipkinAddr:   ":9411",
		LogLevel:     "info",
		MemoryLimit:  200 << 20,
		Retention:    Duration(14 * 24 * time.Hour),
		Ingest: Ingest{
			MaxRequestBytes:        16 << 20,
			MaxHeadBytes:           48 << 20,
			MaxWALPendingBytes:     64 << 20,
			MaxSpansPerTrace:       50000,
			MaxAttributeValueBytes: 32 << 10,
			MaxAttributesPerSpan:   128,
			MaxEventsPerSpan:       128,
			MaxLinksPerSpan:        128,
			Log:                    IngestLogLocal,
		},
		Storage: Storage{
			TraceIdle:     Duration(5 * time.Second),
			TraceMaxAge:   Duration(time.Minute),
			HeadCutBytes:  16 << 20,
			BlockMaxBytes: 16 << 20,
			BlockMaxWait:  Duration(time.Minute),
			WALSegment:    128 << 20,

			CompactMinBlocks:   8,
			CompactTargetBytes: 4 << 30,
			CompactWindow:      Duration(24 * time.Hour),
			CompactFreshAge:    Duration(2 * time.Minute),
			CompactFreshBlocks: 64,
			Backend:            "local",
		},
		Server: Server{
			HTTPReadHeaderTimeout:      Duration(10 * time.Second),
			HTTPReadTimeout:            Duration(time.Minute),
			HTTPWriteTimeout:           Duration(2 * time.Minute),
			HTTPIdleTimeout:            Duration(2 * time.Minute),
			HTTPConnLimit:              2048,
			GRPCConnLimit:              2048,
			GRPCMaxConcurrentStreams:   100,
			GRPCMaxConnectionIdle:      Duration(5 * time.Minute),
			GRPCKeepaliveTime:          Duration(2 * time.Minute),
			GRPCKeepaliveTimeout:       Duration(20 * time.Second),
			GRPCMinTimeBetweenPings:    Duration(10 * time.Second),
			GRPCPingWithoutStreamAllow: true,
		},
		Query: Query{
			MaxMemoryBytes:            64 << 20,
			MaxOutstandingPerTenant:   100,
			CPUShare:                  0.25,
			Timeout:                   Duration(30 * time.Second),
			MaxResultLimit:            1000,
			MaxSpansPerSpanSet:        100,
			MaxDuration:               Duration(168 * time.Hour),
			MetricsMaxDuration:        Duration(24 * time.Hour),
			MaxResponseSeries:         1000,
			MaxBytesPerTrace:          50 << 20,
			MaxBytesPerTagValuesQuery: 5 << 20,
			MaxTracesPerLintReport:    1000,
		},
		Target:  TargetAll,
		Cluster: defaultCluster(),
		NATS:    defaultNATS(),
	}
}

// Load reads a YAML config file over the defaults. Unknown keys are an error: a misspelt key
// silently ignored is a setting silently not applied.
func Load(path string) (Config, error) {
	cfg := Default()
	f, err := os.Open(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && err.Error() != "EOF" {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Overrides.Check(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.Path = path
	return cfg, nil
}

// RegisterFlags binds the common settings to flags on fs, with cfg's values as defaults, so
// parsing fs after loading a file leaves the file's values unless a flag is given.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the WAL and blocks")
	fs.StringVar(&c.OTLPGRPCAddr, "otlp-grpc-addr", c.OTLPGRPCAddr, "OTLP/gRPC listen address")
	fs.StringVar(&c.OTLPHTTPAddr, "otlp-http-addr", c.OTLPHTTPAddr, "OTLP/HTTP listen address")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "query API and UI listen address")
	fs.StringVar(&c.ZipkinAddr, "zipkin-addr", c.ZipkinAddr, "Zipkin v2 JSON listen address (POST /api/v2/spans); empty disables")
	fs.StringVar(&c.JaegerSamplingAddr, "jaeger-sampling-addr", c.JaegerSamplingAddr, "Jaeger agent-style sampling listen address (GET /sampling?service=), e.g. :5778; empty (default) disables")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.BoolVar(&c.MultitenancyEnabled, "multitenancy-enabled", c.MultitenancyEnabled, "require a tenant (X-Scope-OrgID) on every request and keep each tenant's data apart")
	fs.BoolVar(&c.PprofEnabled, "pprof-enabled", c.PprofEnabled, "serve Go's profiler under /debug/pprof/ on the query port")
	fs.Var(&c.Retention, "retention", "delete blocks older than this (e.g. 14d, 36h)")
	fs.Var(&c.Storage.TraceIdle, "trace-idle", "a trace with no new span for this long is complete")
	fs.Int64Var(&c.MemoryLimit, "memory-limit-bytes", c.MemoryLimit, "Go soft memory limit; 0 leaves the runtime's default")
	fs.Int64Var(&c.Ingest.MaxRequestBytes, "max-request-bytes", c.Ingest.MaxRequestBytes, "largest OTLP request accepted, after decompression")
	c.registerClusterFlags(fs)
}

// Duration is a time.Duration that also accepts days ("14d") in files and flags.
type Duration time.Duration

// ParseDuration parses Go durations plus a "d" suffix for days.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "d"), 64)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// Set implements flag.Value.
func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return d.Set(n.Value) }

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// HeadSampling holds the strategies served to the SDKs' jaeger_remote samplers.
type HeadSampling struct {
	Remote headsampling.Config `yaml:"remote"`
}
