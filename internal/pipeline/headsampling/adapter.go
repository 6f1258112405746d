package headsampling

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Counts reads cumulative span counts by service and span name: the span metrics.
type Counts func() map[string]map[string]uint64

// Adapter recomputes per-operation probabilities so that each operation sends about
// TargetTracesPerSecond.
//
// The spans Ariadne counts are the ones the SDKs already kept, so an operation's real rate is
// the counted rate divided by the probability it was served: p' = p × target / counted. The new
// probability is bounded to a factor MaxStep of the old one (smoothing) and to
// [MinProbability, 1]; an operation with no spans in an interval keeps its probability, since
// nothing was learnt about it. Probabilities are saved to a JSON file after each step and
// loaded at start, so a restart does not send every SDK back to sampling everything.
type Adapter struct {
	cfg    Adaptive
	static Config
	counts Counts
	path   string
	log    *slog.Logger

	mu    sync.Mutex
	state state
	// based is set once a step has read counts in this process: counters start over with the
	// process, so the saved ones are no base for a difference.
	based bool

	stop chan struct{}
	done chan struct{}
}

// state is what the file holds.
type state struct {
	// At is when Calls were read.
	At       time.Time                     `json:"at"`
	Services map[string]map[string]opState `json:"services"`
}

type opState struct {
	Probability float64 `json:"probability"`
	// Calls is the cumulative count read at the last step, to take the next difference from.
	Calls uint64 `json:"calls"`
}

// StateFile is the adapter's file in the data directory.
const StateFile = "head_sampling.json"

// NewAdapter loads the state saved in dir (when there is one) and reads counts at each Step.
// An operation seen for the first time is taken to have been sampled with its service's static
// probability from static, which is what the SDK was served for it.
func NewAdapter(static Config, counts Counts, dir string, log *slog.Logger) (*Adapter, error) {
	cfg := static.Adaptive
	if cfg.TargetTracesPerSecond == 0 {
		cfg.TargetTracesPerSecond = 1
	}
	if cfg.MinProbability == 0 {
		cfg.MinProbability = 0.0001
	}
	if cfg.MaxStep == 0 {
		cfg.MaxStep = 2
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Minute
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Adapter{cfg: cfg, static: static, counts: counts, path: filepath.Join(dir, StateFile), log: log,
		state: state{Services: map[string]map[string]opState{}}}
	b, err := os.ReadFile(a.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("head sampling: read state: %w", err)
	default:
		var st state
		if err := json.Unmarshal(b, &st); err != nil {
			// A damaged file costs one adaptation, not the server: start over from the defaults.
			log.Warn("head sampling: state file unreadable, starting over", "path", a.path, "err", err)
		} else if st.Services != nil {
			a.state = st
		}
	}
	return a, nil
}

// Probabilities are the current per-operation probabilities of service.
func (a *Adapter) Probabilities(service string) map[string]float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	ops := a.state.Services[service]
	out := make(map[string]float64, len(ops))
	for op, s := range ops {
		out[op] = s.Probability
	}
	return out
}

// Step reads the counts and recomputes every operation's probability from what arrived since the
// last step, as of now. The first step (or one after a restart whose counters started over)
// only records where the counts stand. The state is then saved.
func (a *Adapter) Step(now time.Time) error {
	counts := a.counts()
	a.mu.Lock()
	dt := now.Sub(a.state.At).Seconds()
	first := !a.based || dt <= 0
	a.based = true
	for service, ops := range counts {
		known := a.state.Services[service]
		if known == nil {
			known = map[string]opState{}
			a.state.Services[service] = known
		}
		for op, calls := range ops {
			s, seen := known[op]
			if !seen {
				s.Probability = a.static.serviceProbability(service)
			}
			if seen && !first && calls >= s.Calls {
				s.Probability = a.next(s.Probability, float64(calls-s.Calls)/dt)
			}
			// Counters below the saved ones started over (a restart): take them as the new base.
			s.Calls = calls
			known[op] = s
		}
	}
	a.state.At = now
	b, err := json.Marshal(a.state)
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("head sampling: encode state: %w", err)
	}
	return a.save(b)
}

// next is the probability after an interval in which rate spans per second arrived at p.
func (a *Adapter) next(p, rate float64) float64 {
	if rate <= 0 || p <= 0 {
		return p
	}
	want := p * a.cfg.TargetTracesPerSecond / rate
	want = math.Min(math.Max(want, p/a.cfg.MaxStep), p*a.cfg.MaxStep)
	return math.Min(math.Max(want, a.cfg.MinProbability), 1)
}

// save writes the state atomically: a crash leaves the old file or the new one, never half.
func (a *Adapter) save(b []byte) error {
	tmp := a.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("head sampling: save state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, a.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("head sampling: save state: %w", err)
	}
	return nil
}

// Start steps every Interval until Stop.
func (a *Adapter) Start() {
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(a.done)
		t := time.NewTicker(a.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-a.stop:
				return
			case now := <-t.C:
				if err := a.Step(now); err != nil {
					a.log.Warn("head sampling: adaptation step failed", "err", err)
				}
			}
		}
	}()
}

// Stop ends the background steps started by Start.
func (a *Adapter) Stop() {
	if a.stop != nil {
		close(a.stop)
		<-a.done
		a.stop = nil
	}
}
