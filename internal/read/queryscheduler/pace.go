package queryscheduler

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
)

// Bounding how many queries run does not bound what they take from ingest: one query is a
// goroutine that never blocks, and on a 2-core machine it takes a whole core, while the
// receivers' goroutines wait their turn behind it (Go has no goroutine priorities). So queries
// pace themselves: the loops that read traces call Yield between units of work (a batch of rows,
// a trace), and while ingest is busy Yield sleeps long enough that the query works only its
// share of the time; when ingest is idle it only lets other goroutines run. Yield is cheap to
// call often: it acts at most once per slice of work.

const (
	// paceSlice is the least work between two pauses: short enough that the receivers wait at
	// most this long for a processor a query holds, long enough that pausing costs little.
	paceSlice = 2 * time.Millisecond
	// maxPause bounds one pause, whatever the slice of work before it was.
	maxPause = 50 * time.Millisecond
	// ingestBusyFor is how long after an ingest request ingest counts as busy.
	ingestBusyFor = time.Second
)

// NoteIngest records that ingest is receiving data: for the next second, running queries
// yield the CPU to it (see Yield). Receivers call it once per request; it is one atomic store.
func (s *Scheduler) NoteIngest() {
	s.ingestAt.Store(nanotime())
}

func (s *Scheduler) ingestBusy(now int64) bool {
	at := s.ingestAt.Load()
	return at != 0 && now-at < int64(ingestBusyFor)
}

type paceKey struct{}

// pace is one query's pacing state.
type pace struct {
	s    *Scheduler
	last atomic.Int64 // end of the last pause, nanotime
}

// Pace returns ctx carrying the pacing of one query admitted by s, for Yield.
func (s *Scheduler) Pace(ctx context.Context) context.Context {
	if s.cfg.CPUShare >= 1 {
		return ctx
	}
	p := &pace{s: s}
	p.last.Store(nanotime())
	return context.WithValue(ctx, paceKey{}, p)
}

// Yield is where a query gives ingest its share of the CPU: called between units of work, it
// pauses the query once it has worked paceSlice since its last pause, for as long as keeps its
// work to Config.CPUShare of the time while ingest is busy, and otherwise lets other goroutines
// run. A pause ends early when ctx does. Outside a paced query (no Pace in ctx) it does nothing.
//
// It returns ctx's error once ctx is done (checked at least every paceSlice of work), and the
// caller stops there: the loops that call Yield are the ones that run long, so this is where a
// query whose client went away or whose timeout passed stops reading.
func Yield(ctx context.Context) error {
	p, _ := ctx.Value(paceKey{}).(*pace)
	if p == nil {
		return ctx.Err()
	}
	now := nanotime()
	ran := now - p.last.Load()
	if ran < int64(paceSlice) {
		return nil
	}
	if !p.s.ingestBusy(now) {
		runtime.Gosched()
		p.last.Store(nanotime())
		return ctx.Err()
	}
	share := p.s.cfg.CPUShare
	pause := time.Duration(min(float64(ran)*(1-share)/share, float64(maxPause)))
	t := time.NewTimer(pause)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	end := nanotime()
	p.s.paused.Add(end - now)
	p.last.Store(end)
	return ctx.Err()
}

var epoch = time.Now()

// nanotime is a monotonic clock reading.
func nanotime() int64 { return int64(time.Since(epoch)) }
