package queryscheduler

import (
	"context"
	"testing"
	"time"
)

// A paced query pauses once it has worked a slice while ingest is busy, and only then: not
// outside a paced context, not when ingest is idle, not with pacing off. A cancelled query's
// pause ends with it.
func TestYieldPausesOnlyForIngest(t *testing.T) {
	work := func() { time.Sleep(2 * paceSlice) } // a slice of work, as far as Yield can tell

	s := New(Config{MaxConcurrent: 1})
	ctx := s.Pace(context.Background())
	work()
	Yield(ctx)
	if p := s.Stats().Paused; p != 0 {
		t.Fatalf("paused %v with ingest idle", p)
	}

	s.NoteIngest()
	Yield(context.Background()) // not a paced query
	if p := s.Stats().Paused; p != 0 {
		t.Fatalf("paused %v outside a paced query", p)
	}
	work()
	Yield(ctx)
	if p := s.Stats().Paused; p <= 0 {
		t.Fatal("no pause after a slice of work while ingest is busy")
	}
	before := s.Stats().Paused
	Yield(ctx) // no work since the pause
	if p := s.Stats().Paused; p != before {
		t.Fatalf("paused again without working: %v then %v", before, p)
	}

	cctx, cancel := context.WithCancel(s.Pace(context.Background()))
	cancel()
	work()
	Yield(cctx) // returns at once; a hang here fails the test by its timeout

	off := New(Config{MaxConcurrent: 1, CPUShare: 1})
	off.NoteIngest()
	octx := off.Pace(context.Background())
	work()
	Yield(octx)
	if p := off.Stats().Paused; p != 0 {
		t.Fatalf("paused %v with pacing off", p)
	}
}
