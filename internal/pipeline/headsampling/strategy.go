// Package headsampling tells the SDKs' head samplers how much to sample: it serves sampling
// strategies in the Jaeger remote-sampling protocol, which the OpenTelemetry SDKs read through
// their jaeger_remote sampler (Go: go.opentelemetry.io/contrib/samplers/jaegerremote).
//
// A strategy is static (per service and operation, from the configuration) or adaptive: an
// Adapter recomputes per-operation probabilities from the span metrics Ariadne already counts,
// so each operation sends about a target number of traces per second. Data flows one way: the
// adapter reads span-metrics counters, nothing here writes to them.
package headsampling

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// Config is the sampling.remote section of the configuration file.
type Config struct {
	// DefaultProbability is served to services and operations with nothing better (default 1:
	// sample everything, as an SDK without a server would).
	DefaultProbability *float64 `yaml:"default_probability"`
	// LowerBoundTracesPerSecond is the rate the SDK samples each operation at, at least, whatever
	// its probability: the floor that keeps rare operations from being starved. Default 1/60.
	LowerBoundTracesPerSecond *float64 `yaml:"lower_bound_traces_per_second"`
	// Services holds static strategies by service name.
	Services map[string]Service `yaml:"services"`
	// Adaptive turns on per-operation probabilities computed from span metrics.
	Adaptive Adaptive `yaml:"adaptive"`
}

// Service is one service's static strategy.
type Service struct {
	// Probability is the service's default; unset means Config.DefaultProbability.
	Probability *float64 `yaml:"probability"`
	// Operations are probabilities by span name. They win over adaptive ones.
	Operations map[string]float64 `yaml:"operations"`
}

// Adaptive configures the Adapter.
type Adaptive struct {
	Enabled bool `yaml:"enabled"`
	// TargetTracesPerSecond is what each operation should send (default 1).
	TargetTracesPerSecond float64 `yaml:"target_traces_per_second"`
	// MinProbability is the lowest probability ever served (default 0.0001).
	MinProbability float64 `yaml:"min_probability"`
	// MaxStep bounds how much one recomputation may change a probability: by at most this
	// factor up or down (default 2), so one noisy interval does not swing an SDK.
	MaxStep float64 `yaml:"max_step"`
	// Interval is how often probabilities are recomputed (default 1m).
	Interval time.Duration `yaml:"interval"`
}

const (
	defaultProbability = 1.0
	defaultLowerBound  = 1.0 / 60
)

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	prob := func(what string, p float64) error {
		if !(p >= 0 && p <= 1) {
			return fmt.Errorf("sampling.remote: %s %v is not a probability between 0 and 1", what, p)
		}
		return nil
	}
	if c.DefaultProbability != nil {
		if err := prob("default_probability", *c.DefaultProbability); err != nil {
			return err
		}
	}
	if lb := c.LowerBoundTracesPerSecond; lb != nil && !(*lb >= 0) {
		return fmt.Errorf("sampling.remote: lower_bound_traces_per_second %v is negative", *lb)
	}
	for name, s := range c.Services {
		if s.Probability != nil {
			if err := prob("services."+name+".probability", *s.Probability); err != nil {
				return err
			}
		}
		for op, p := range s.Operations {
			if err := prob("services."+name+".operations."+op, p); err != nil {
				return err
			}
		}
	}
	a := c.Adaptive
	if a.TargetTracesPerSecond < 0 || a.MinProbability < 0 || a.MinProbability > 1 || (a.MaxStep != 0 && a.MaxStep < 1) || a.Interval < 0 {
		return fmt.Errorf("sampling.remote.adaptive: target_traces_per_second and interval must be positive, min_probability a probability, max_step at least 1")
	}
	return nil
}

func (c Config) defaultProbability() float64 {
	if c.DefaultProbability != nil {
		return *c.DefaultProbability
	}
	return defaultProbability
}

// serviceProbability is what service's operations get without an operation of their own.
func (c Config) serviceProbability(service string) float64 {
	if s, ok := c.Services[service]; ok && s.Probability != nil {
		return *s.Probability
	}
	return c.defaultProbability()
}

func (c Config) lowerBound() float64 {
	if c.LowerBoundTracesPerSecond != nil {
		return *c.LowerBoundTracesPerSecond
	}
	return defaultLowerBound
}

// Response is the strategy document of the Jaeger remote-sampling protocol, as the Jaeger agent
// and collector serve it at /sampling?service= (JSON field names of api_v2
// SamplingStrategyResponse, enums as strings).
type Response struct {
	StrategyType          string                 `json:"strategyType"`
	ProbabilisticSampling *ProbabilisticSampling `json:"probabilisticSampling,omitempty"`
	OperationSampling     *OperationSampling     `json:"operationSampling,omitempty"`
}

// ProbabilisticSampling samples a trace with probability SamplingRate.
type ProbabilisticSampling struct {
	SamplingRate float64 `json:"samplingRate"`
}

// OperationSampling gives probabilities per operation (span name of the root span).
type OperationSampling struct {
	DefaultSamplingProbability       float64             `json:"defaultSamplingProbability"`
	DefaultLowerBoundTracesPerSecond float64             `json:"defaultLowerBoundTracesPerSecond"`
	PerOperationStrategies           []OperationStrategy `json:"perOperationStrategies"`
}

// OperationStrategy is one operation's probability.
type OperationStrategy struct {
	Operation             string                `json:"operation"`
	ProbabilisticSampling ProbabilisticSampling `json:"probabilisticSampling"`
}

// Strategies answers strategies from the static configuration and, when set, an Adapter.
type Strategies struct {
	cfg     Config
	adapter *Adapter
}

// NewStrategies serves cfg's static strategies; adapter may be nil.
func NewStrategies(cfg Config, adapter *Adapter) *Strategies {
	return &Strategies{cfg: cfg, adapter: adapter}
}

// For is the strategy of service. A service the configuration does not name, and that the
// adapter has not seen, gets the default probability.
func (s *Strategies) For(service string) Response {
	def := s.cfg.serviceProbability(service)
	static := s.cfg.Services[service]
	ops := map[string]float64{}
	if s.adapter != nil {
		for op, p := range s.adapter.Probabilities(service) {
			ops[op] = p
		}
	}
	for op, p := range static.Operations {
		ops[op] = p
	}
	r := Response{StrategyType: "PROBABILISTIC", ProbabilisticSampling: &ProbabilisticSampling{SamplingRate: def}}
	if len(ops) == 0 {
		return r
	}
	os := &OperationSampling{DefaultSamplingProbability: def, DefaultLowerBoundTracesPerSecond: s.cfg.lowerBound(),
		PerOperationStrategies: make([]OperationStrategy, 0, len(ops))}
	for op, p := range ops {
		os.PerOperationStrategies = append(os.PerOperationStrategies, OperationStrategy{Operation: op, ProbabilisticSampling: ProbabilisticSampling{SamplingRate: p}})
	}
	slices.SortFunc(os.PerOperationStrategies, func(a, b OperationStrategy) int { return cmp.Compare(a.Operation, b.Operation) })
	r.OperationSampling = os
	return r
}

// ServeHTTP answers GET ?service=<name>. A request without a service gets 400 and a message, as
// Jaeger's collector answers it; an unknown service gets the default strategy.
func (s *Strategies) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, "malformed query string: "+err.Error(), http.StatusBadRequest)
		return
	}
	// Two services in one request would get one of them silently; say so instead.
	if len(q["service"]) != 1 || q.Get("service") == "" {
		http.Error(w, "'service' parameter must be provided once, e.g. "+r.URL.Path+"?service=checkout", http.StatusBadRequest)
		return
	}
	service := q.Get("service")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.For(service))
}

// AgentHandler serves GET /sampling?service= as the Jaeger agent does on :5778, where the
// OpenTelemetry Go SDK's jaegerremote sampler asks by default; each request is answered from
// lookup's strategies (the caller's tenant's).
func AgentHandler(lookup func(*http.Request) *Strategies) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /sampling", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lookup(r).ServeHTTP(w, r)
	}))
	return mux
}
