package headsampling

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeCounts stands in for span metrics: cumulative counters the test advances, as ingest would.
type counter map[string]map[string]uint64

func (c counter) read() map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for s, ops := range c {
		out[s] = map[string]uint64{}
		for op, n := range ops {
			out[s][op] = n
		}
	}
	return out
}

// send adds what an SDK sampling real traffic at the served probability would deliver.
func (c counter) send(a *Adapter, service, op string, real float64) {
	p, ok := a.Probabilities(service)[op]
	if !ok {
		p = 1
	}
	if c[service] == nil {
		c[service] = map[string]uint64{}
	}
	c[service][op] += uint64(math.Round(real * p))
}

func TestAdapterConvergesToTargetAndKeepsQuietOperations(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Adaptive: Adaptive{Enabled: true, TargetTracesPerSecond: 1, MaxStep: 4, MinProbability: 0.001}}
	c := counter{}
	a, err := NewAdapter(cfg, c.read, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	const interval = 10 * time.Second
	step := func() {
		now = now.Add(interval)
		if err := a.Step(now); err != nil {
			t.Fatal(err)
		}
	}
	c.send(a, "shop", "GET /busy", 20)
	c.send(a, "shop", "GET /quiet", 20)
	step() // first reading: a base only
	if p := a.Probabilities("shop")["GET /busy"]; p != 1 {
		t.Fatalf("first step changed a probability: %v", p)
	}
	for range 3 {
		c.send(a, "shop", "GET /busy", 20)
		c.send(a, "shop", "GET /quiet", 20)
		step()
	}
	// 2 traces/s against a target of 1: both settle at one half.
	for _, op := range []string{"GET /busy", "GET /quiet"} {
		if p := a.Probabilities("shop")[op]; math.Abs(p-0.5) > 0.01 {
			t.Fatalf("%s at 2/s: probability %v, want 0.5", op, p)
		}
	}
	// Traffic shift: busy becomes 50x busier (100/s). Each step may cut by at most 4x.
	prev := a.Probabilities("shop")["GET /busy"]
	for i := range 4 {
		c.send(a, "shop", "GET /busy", 1000)
		c.send(a, "shop", "GET /quiet", 20)
		step()
		p := a.Probabilities("shop")["GET /busy"]
		if p < prev/4-1e-9 || (i < 2 && p >= prev) {
			t.Fatalf("step %d: busy went from %v to %v; want a bounded fall", i, prev, p)
		}
		prev = p
	}
	if p := a.Probabilities("shop")["GET /busy"]; math.Abs(p-0.01) > 0.001 {
		t.Fatalf("busy at 100/s: probability %v, want 0.01 (1 trace/s)", p)
	}
	if p := a.Probabilities("shop")["GET /quiet"]; math.Abs(p-0.5) > 0.01 {
		t.Fatalf("quiet operation lost its sampling: %v", p)
	}

	// A restart loads the probabilities; its counters start over, and the first step is a base.
	want := a.Probabilities("shop")
	c2 := counter{}
	b, err := NewAdapter(cfg, c2.read, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2.send(b, "shop", "GET /busy", 1000)
	now = now.Add(interval)
	if err := b.Step(now); err != nil {
		t.Fatal(err)
	}
	got := b.Probabilities("shop")
	for op, p := range want {
		if got[op] != p {
			t.Fatalf("after restart %s: %v, want %v", op, got[op], p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary state file left behind: %v", err)
	}
}

func TestAdapterSurvivesDamagedStateFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := NewAdapter(Config{}, counter{"s": {"op": 5}}.read, dir, nil)
	if err != nil {
		t.Fatalf("damaged state file refused the start: %v", err)
	}
	if err := a.Step(time.Now()); err != nil {
		t.Fatal(err)
	}
	if p := a.Probabilities("s")["op"]; p != 1 {
		t.Fatalf("probability after a damaged file: %v, want the default 1", p)
	}
}

func TestStrategiesStaticWinAndDefaults(t *testing.T) {
	half, tenth := 0.5, 0.1
	cfg := Config{DefaultProbability: &tenth, Services: map[string]Service{
		"shop": {Probability: &half, Operations: map[string]float64{"GET /health": 0}},
	}}
	s := NewStrategies(cfg, nil)
	r := s.For("shop")
	if r.StrategyType != "PROBABILISTIC" || r.ProbabilisticSampling.SamplingRate != 0.5 || r.OperationSampling == nil ||
		r.OperationSampling.DefaultSamplingProbability != 0.5 || len(r.OperationSampling.PerOperationStrategies) != 1 ||
		r.OperationSampling.PerOperationStrategies[0].ProbabilisticSampling.SamplingRate != 0 {
		t.Fatalf("shop strategy: %+v", r)
	}
	if r := s.For("unknown"); r.ProbabilisticSampling.SamplingRate != 0.1 || r.OperationSampling != nil {
		t.Fatalf("unknown service: %+v", r)
	}
	bad := 1.5
	if err := (Config{DefaultProbability: &bad}).Validate(); err == nil {
		t.Fatal("probability 1.5 accepted")
	}
}
