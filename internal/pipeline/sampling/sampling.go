// Package sampling decides, when a trace is complete, whether it is kept: tail sampling.
//
// The guide's production strategy (keep every error, keep every slow request, keep a ratio of
// the rest) needs the whole trace, which the SDK's head sampler never has. Ariadne's head holds
// every live trace anyway, so the decision is made there, with no collector in between.
//
// Policies follow the OpenTelemetry Collector's tail-sampling processor in spirit: a trace is
// kept when any policy keeps it. Probabilistic sampling uses the trace ID exactly as the SDK's
// TraceIdRatioBased sampler does, so a trace kept here is kept by every SDK and collector using
// the same ratio. Decisions are remembered, so late spans follow their trace.
package sampling

import (
	"encoding/binary"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is the tail-sampling section of the configuration file. Disabled (the zero value)
// keeps everything.
type Config struct {
	// The guide's strategy in three lines.
	KeepErrors     bool          `yaml:"keep_errors"`
	KeepSlowerThan time.Duration `yaml:"keep_slower_than"`
	KeepRatio      *float64      `yaml:"keep_ratio"`

	// Policies are the general form; the three keys above add to them.
	Policies []PolicyConfig `yaml:"policies"`

	// DecisionWait is how long a trace must be idle before it is decided (default 10s).
	DecisionWait time.Duration `yaml:"decision_wait"`
	// DecisionCache bounds how many decided trace IDs are remembered for late spans
	// (default 100000).
	DecisionCache int `yaml:"decision_cache"`
}

// PolicyConfig is one policy. Type selects which of the other fields apply.
type PolicyConfig struct {
	Name string `yaml:"name"`
	// Type: status_code, latency, probabilistic, string_attribute, numeric_attribute,
	// span_count, always_sample, and, composite.
	Type string `yaml:"type"`

	StatusCodes []string       `yaml:"status_codes"` // status_code: default [ERROR]
	Threshold   time.Duration  `yaml:"threshold"`    // latency: trace or any span longer than this
	Ratio       float64        `yaml:"ratio"`        // probabilistic: 0..1
	Percentage  float64        `yaml:"sampling_percentage"`
	Key         string         `yaml:"key"`    // *_attribute: span or resource attribute
	Values      []string       `yaml:"values"` // string_attribute: exact values
	Regex       bool           `yaml:"enabled_regex_matching"`
	Invert      bool           `yaml:"invert_match"`
	Min         *float64       `yaml:"min_value"` // numeric_attribute bounds, inclusive
	Max         *float64       `yaml:"max_value"`
	MinSpans    int            `yaml:"min_spans"` // span_count
	MaxSpans    int            `yaml:"max_spans"`
	Policies    []PolicyConfig `yaml:"policies"` // and, composite

	// MaxSpansPerSecond caps the spans this policy may keep per second (0: no cap). In a
	// composite, a policy over its cap passes the trace on to the next one.
	MaxSpansPerSecond float64 `yaml:"max_spans_per_second"`
}

// Enabled reports whether any policy is configured.
func (c Config) Enabled() bool {
	return c.KeepErrors || c.KeepSlowerThan > 0 || c.KeepRatio != nil || len(c.Policies) > 0
}

// Trace is what a policy sees of a complete trace.
type Trace struct {
	ID                    [16]byte
	Start, End            uint64 // unix nanos
	SpanCount, ErrorCount int
	// Spans calls fn with each span's Resource and Span message bytes.
	Spans func(fn func(resource, span []byte))
}

// Decision is the outcome for one trace.
type Decision struct {
	Keep bool
	// Ratio is the probability the trace had of being kept: 1 for a deterministic policy, the
	// ratio for a probabilistic one. Counts over kept traces scale back by 1/Ratio.
	Ratio  float64
	Policy string // the policy that kept it, or why it was dropped
}

type policy struct {
	name  string
	match func(t *Trace) (bool, float64)
	limit *limiter
}

// Sampler makes and remembers decisions. Safe for concurrent use.
type Sampler struct {
	// policies are swapped whole by Update, so a decision runs one set of policies throughout.
	// Nil keeps every trace (the configuration enables no policy).
	policies atomic.Pointer[[]policy]

	mu     sync.Mutex
	cache  map[[16]byte]Decision
	order  [][16]byte // FIFO of cached IDs
	next   int
	capHit bool

	decisions *prometheus.CounterVec
	late      *prometheus.CounterVec
}

// New builds a sampler; reg may be nil.
func New(cfg Config, reg prometheus.Registerer) (*Sampler, error) {
	ps, err := buildPolicies(cfg)
	if err != nil {
		return nil, err
	}
	s := &Sampler{cache: map[[16]byte]Decision{}}
	s.policies.Store(&ps)
	size := cfg.DecisionCache
	if size <= 0 {
		size = 100_000
	}
	s.order = make([][16]byte, size)
	s.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ariadne_sampling_decisions_total",
		Help: "Complete traces decided by tail sampling, by the policy that kept them (or none) and decision."}, []string{"policy", "decision"})
	s.late = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ariadne_sampling_late_traces_total",
		Help: "Parts of traces that arrived after their trace was decided, by the decision they followed."}, []string{"decision"})
	if reg != nil {
		for _, c := range []prometheus.Collector{s.decisions, s.late} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("sampling: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Update replaces the policies with cfg's (a tenant's overrides changed); traces decided before
// keep their decision, so their late spans still follow it. A cfg enabling no policy keeps
// every trace from now on. The decision cache keeps its size.
func (s *Sampler) Update(cfg Config) error {
	if !cfg.Enabled() {
		s.policies.Store(nil)
		return nil
	}
	ps, err := buildPolicies(cfg)
	if err != nil {
		return err
	}
	s.policies.Store(&ps)
	return nil
}

func buildPolicies(cfg Config) ([]policy, error) {
	var pcs []PolicyConfig
	if cfg.KeepErrors {
		pcs = append(pcs, PolicyConfig{Name: "keep-errors", Type: "status_code"})
	}
	if cfg.KeepSlowerThan > 0 {
		pcs = append(pcs, PolicyConfig{Name: "keep-slow", Type: "latency", Threshold: cfg.KeepSlowerThan})
	}
	if cfg.KeepRatio != nil {
		pcs = append(pcs, PolicyConfig{Name: "keep-ratio", Type: "probabilistic", Ratio: *cfg.KeepRatio})
	}
	pcs = append(pcs, cfg.Policies...)
	ps := make([]policy, 0, len(pcs))
	for i, pc := range pcs {
		p, err := build(pc, fmt.Sprintf("policy-%d", i+1))
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	// Deterministic policies first: a trace that is an error or slow is kept at ratio 1 even
	// when the probabilistic policy would also have taken it.
	sortDeterministicFirst(ps, pcs)
	return ps, nil
}

func sortDeterministicFirst(ps []policy, pcs []PolicyConfig) {
	prob := make([]bool, len(ps))
	for i := range pcs {
		prob[i] = pcs[i].Type == "probabilistic"
	}
	var det, rest []policy
	for i, p := range ps {
		if prob[i] {
			rest = append(rest, p)
		} else {
			det = append(det, p)
		}
	}
	copy(ps, append(det, rest...))
}

func build(pc PolicyConfig, fallback string) (policy, error) {
	name := pc.Name
	if name == "" {
		name = pc.Type + "-" + strings.TrimPrefix(fallback, "policy-")
	}
	p := policy{name: name}
	if pc.MaxSpansPerSecond > 0 {
		p.limit = newLimiter(pc.MaxSpansPerSecond)
	}
	switch pc.Type {
	case "always_sample":
		p.match = func(*Trace) (bool, float64) { return true, 1 }
	case "status_code":
		codes := pc.StatusCodes
		if len(codes) == 0 {
			codes = []string{"ERROR"}
		}
		wantErr, wantOther := false, false
		for _, c := range codes {
			switch strings.ToUpper(c) {
			case "ERROR":
				wantErr = true
			case "OK", "UNSET":
				wantOther = true
			default:
				return p, fmt.Errorf("sampling: policy %s: unknown status code %q (ERROR, OK, UNSET)", name, c)
			}
		}
		p.match = func(t *Trace) (bool, float64) {
			if wantErr && t.ErrorCount > 0 {
				return true, 1
			}
			return wantOther && t.ErrorCount < t.SpanCount, 1
		}
	case "latency":
		if pc.Threshold <= 0 {
			return p, fmt.Errorf("sampling: policy %s: latency needs a positive threshold", name)
		}
		th := uint64(pc.Threshold)
		p.match = func(t *Trace) (bool, float64) {
			if t.End > t.Start && t.End-t.Start > th {
				return true, 1
			}
			slow := false
			t.Spans(func(_, span []byte) {
				if !slow {
					s, e, _, _ := spanTimesAndFlags(span)
					slow = e > s && e-s > th
				}
			})
			return slow, 1
		}
	case "probabilistic":
		r := pc.Ratio
		if pc.Percentage > 0 {
			r = pc.Percentage / 100
		}
		if r < 0 || r > 1 || math.IsNaN(r) {
			return p, fmt.Errorf("sampling: policy %s: ratio %v outside 0..1", name, r)
		}
		p.match = func(t *Trace) (bool, float64) { return TraceIDRatio(t.ID, r), r }
	case "string_attribute":
		if pc.Key == "" || len(pc.Values) == 0 {
			return p, fmt.Errorf("sampling: policy %s: string_attribute needs key and values", name)
		}
		var res []*regexp.Regexp
		set := map[string]bool{}
		for _, v := range pc.Values {
			if pc.Regex {
				re, err := regexp.Compile("^(?:" + v + ")$")
				if err != nil {
					return p, fmt.Errorf("sampling: policy %s: %w", name, err)
				}
				res = append(res, re)
			} else {
				set[v] = true
			}
		}
		match := func(v value) bool {
			if v.kind != 1 {
				return false
			}
			if set[string(v.str)] {
				return true
			}
			for _, re := range res {
				if re.Match(v.str) {
					return true
				}
			}
			return false
		}
		p.match = func(t *Trace) (bool, float64) { return anyAttr(t, pc.Key, match) != pc.Invert, 1 }
	case "numeric_attribute":
		if pc.Key == "" || (pc.Min == nil && pc.Max == nil) {
			return p, fmt.Errorf("sampling: policy %s: numeric_attribute needs key and min_value or max_value", name)
		}
		lo, hi := math.Inf(-1), math.Inf(1)
		if pc.Min != nil {
			lo = *pc.Min
		}
		if pc.Max != nil {
			hi = *pc.Max
		}
		match := func(v value) bool { return (v.kind == 3 || v.kind == 4) && v.num >= lo && v.num <= hi }
		p.match = func(t *Trace) (bool, float64) { return anyAttr(t, pc.Key, match) != pc.Invert, 1 }
	case "span_count":
		if pc.MinSpans <= 0 && pc.MaxSpans <= 0 {
			return p, fmt.Errorf("sampling: policy %s: span_count needs min_spans or max_spans", name)
		}
		p.match = func(t *Trace) (bool, float64) {
			return t.SpanCount >= pc.MinSpans && (pc.MaxSpans <= 0 || t.SpanCount <= pc.MaxSpans), 1
		}
	case "and", "composite":
		if len(pc.Policies) == 0 {
			return p, fmt.Errorf("sampling: policy %s: %s needs policies", name, pc.Type)
		}
		var subs []policy
		for i, sc := range pc.Policies {
			sp, err := build(sc, fmt.Sprintf("%s-%d", name, i+1))
			if err != nil {
				return p, err
			}
			subs = append(subs, sp)
		}
		if pc.Type == "and" {
			p.match = func(t *Trace) (bool, float64) {
				ratio := 1.0
				for _, sp := range subs {
					ok, r := sp.match(t)
					if !ok {
						return false, 0
					}
					ratio = min(ratio, r)
				}
				return true, ratio
			}
		} else {
			p.match = func(t *Trace) (bool, float64) {
				for _, sp := range subs {
					if ok, r := sp.match(t); ok && sp.limit.take(t.SpanCount) {
						return true, r
					}
				}
				return false, 0
			}
		}
	default:
		return p, fmt.Errorf("sampling: policy %s: unknown type %q", name, pc.Type)
	}
	return p, nil
}

func anyAttr(t *Trace, key string, match func(value) bool) bool {
	found := false
	seenRes := map[string]bool{}
	t.Spans(func(res, span []byte) {
		if found {
			return
		}
		if !seenRes[string(res)] {
			seenRes[string(res)] = true
			if eachAttr(res, resourceAttributesField, key, match) {
				found = true
				return
			}
		}
		found = eachAttr(span, spanAttributesField, key, match)
	})
	return found
}

// TraceIDRatio is the OpenTelemetry TraceIdRatioBased rule: the trace is sampled when the last
// eight bytes of its ID, read big-endian and shifted right by one, are below ratio × 2^63.
func TraceIDRatio(id [16]byte, ratio float64) bool {
	if ratio >= 1 {
		return true
	}
	bound := uint64(ratio * (1 << 63))
	return binary.BigEndian.Uint64(id[8:16])>>1 < bound
}

// headSampledOut reports whether the SDK's own sampler marked every span of the trace as not
// sampled (W3C flag 0x01 clear): such a trace is never kept, whatever the policies say.
func headSampledOut(t *Trace) bool {
	out := true
	t.Spans(func(_, span []byte) {
		if out {
			_, _, flags, has := spanTimesAndFlags(span)
			out = has && flags&0x01 == 0
		}
	})
	return out
}

// Decide returns the decision for a complete trace: the remembered one if the trace was decided
// before (its late spans follow it), otherwise a new one.
func (s *Sampler) Decide(t *Trace) Decision {
	s.mu.Lock()
	d, ok := s.cache[t.ID]
	s.mu.Unlock()
	if ok {
		s.late.WithLabelValues(keepLabel(d.Keep)).Inc()
		return d
	}
	d = s.decide(t)
	s.decisions.WithLabelValues(d.Policy, keepLabel(d.Keep)).Inc()
	s.mu.Lock()
	if old := s.order[s.next]; s.capHit {
		delete(s.cache, old)
	}
	s.order[s.next] = t.ID
	s.cache[t.ID] = d
	s.next++
	if s.next == len(s.order) {
		s.next, s.capHit = 0, true
	}
	s.mu.Unlock()
	return d
}

func (s *Sampler) decide(t *Trace) Decision {
	ps := s.policies.Load()
	if ps == nil {
		return Decision{Keep: true, Ratio: 1, Policy: "no-policy"}
	}
	if headSampledOut(t) {
		return Decision{Policy: "head-sampled-out"}
	}
	for _, p := range *ps {
		ok, r := p.match(t)
		if ok && p.limit.take(t.SpanCount) {
			return Decision{Keep: true, Ratio: r, Policy: p.name}
		}
	}
	return Decision{Policy: "none"}
}

func keepLabel(k bool) string {
	if k {
		return "kept"
	}
	return "dropped"
}

// limiter is a token bucket in spans per second with one second of burst.
type limiter struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newLimiter(rate float64) *limiter { return &limiter{rate: rate, tokens: rate, last: time.Now()} }

// take spends n spans' worth of budget; a nil limiter always allows.
func (l *limiter) take(n int) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	if l.tokens < float64(n) {
		return false
	}
	l.tokens -= float64(n)
	return true
}
