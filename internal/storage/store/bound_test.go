package store

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
)

// simulateBlocks drives the compaction planner with a simulated clock over days of ingest at
// spansPerSec, with the default block cutting (BlockMaxBytes of span bytes in memory, or
// BlockMaxWait), retention and compaction settings, assuming each merge completes before the
// next block is cut (compaction keeps pace; see docs/architecture.md for what that costs). It
// returns the most blocks that existed at once, the blocks a closed day settles into, and how
// many blocks were cut per day.
//
// A closed window whose merges are done never changes again (the planner works per window), so
// it is set aside and only counted: that keeps the simulation of millions of cut blocks fast.
func simulateBlocks(t *testing.T, spansPerSec float64, days int) (maxBlocks, settledPerDay int, blocksPerDay float64) {
	const (
		wireBytesPerSpan = 150  // span bytes in the head, which BlockMaxBytes counts
		diskBytesPerSpan = 21.6 // measured on disk (BENCHMARKS.md)
	)
	var o Options
	o.defaults()
	p := (&Store{opts: o}).policy()
	interval := time.Duration(float64(o.BlockMaxBytes) / (spansPerSec * wireBytesPerSpan) * float64(time.Second))
	interval = min(interval, o.BlockMaxWait)
	spansPerBlock := spansPerSec * interval.Seconds()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(time.Duration(days) * 24 * time.Hour)
	var metas []block.Meta
	var settled []block.Meta // closed windows, fully merged
	seq := 0
	cut := 0
	for now := start; now.Before(end); now = now.Add(interval) {
		seq++
		cut++
		metas = append(metas, block.Meta{ID: fmt.Sprintf("%020d-%09d", now.UnixNano(), seq), Created: now,
			MaxEnd: now.UnixNano(), Bytes: int64(spansPerBlock * diskBytesPerSpan)})
		for {
			run := planCompaction(metas, now, p)
			if run == nil {
				break
			}
			m := block.Meta{Created: metas[run[0]].Created}
			first := metas[run[0]]
			for _, i := range run {
				x := metas[i]
				m.Bytes += x.Bytes
				m.Level = max(m.Level, x.Level+1)
				m.MaxEnd = max(m.MaxEnd, x.MaxEnd)
				if x.Created.After(m.Created) {
					m.Created = x.Created
				}
				if x.ID < first.ID {
					first = x
				}
			}
			seq++
			m.ID = fmt.Sprintf("%s-%09d", first.ID[:20], seq)
			inRun := map[int]bool{}
			for _, i := range run {
				inRun[i] = true
			}
			kept := metas[:0:0]
			for i, x := range metas {
				if !inRun[i] {
					kept = append(kept, x)
				}
			}
			metas = append(kept, m)
		}
		// With no run left, blocks of a closed window are settled.
		closedBefore := now.Add(-compactWindowGrace).Truncate(p.window)
		active := metas[:0]
		for _, x := range metas {
			if x.Created.Before(closedBefore) {
				settled = append(settled, x)
				settledPerDay = max(settledPerDay, countWindow(settled, x.Created, p.window))
			} else {
				active = append(active, x)
			}
		}
		metas = active
		cutoff := now.Add(-o.Retention)
		kept := settled[:0]
		for _, x := range settled {
			if !(x.MaxEnd < cutoff.UnixNano() && x.Created.Before(cutoff)) {
				kept = append(kept, x)
			}
		}
		settled = kept
		maxBlocks = max(maxBlocks, len(metas)+len(settled))
	}
	return maxBlocks, settledPerDay, float64(cut) / float64(days)
}

func countWindow(metas []block.Meta, t time.Time, window time.Duration) int {
	w := t.Truncate(window)
	n := 0
	for _, x := range metas {
		if x.Created.Truncate(window).Equal(w) {
			n++
		}
	}
	return n
}

// The number of blocks stays bounded over 14 days (the default retention) at the ingest rates
// docs/architecture.md gives the bound for. 10k spans/s is simulated for 16 days, past the
// point where retention starts deleting. 100k spans/s cuts 77k blocks a day, so it is simulated
// for two days, the open window and one closed one; the 14-day figure follows, since every
// closed day at a steady rate settles into the same blocks.
func TestBlockCountBounded(t *testing.T) {
	for _, tc := range []struct {
		spansPerSec float64
		days        int
		bound       int // from docs/architecture.md
	}{
		{10_000, 16, 120},
		{100_000, 2, 1100},
	} {
		t.Run(fmt.Sprint(tc.spansPerSec), func(t *testing.T) {
			got, perClosedDay, perDay := simulateBlocks(t, tc.spansPerSec, tc.days)
			// Retention keeps 14 days, and the day past its end until its last block expires.
			if tc.days < 15 {
				got += 14 * perClosedDay
			}
			t.Logf("%.0f spans/s: %.0f blocks cut per day, a closed day settles into %d, at most %d blocks at once over 14 days",
				tc.spansPerSec, perDay, perClosedDay, got)
			if got > tc.bound {
				t.Fatalf("%d blocks at once, bound %d", got, tc.bound)
			}
			// Without compaction the same run would hold retention's worth of cut blocks.
			if uncompacted := int(math.Round(perDay * 14)); got*10 > uncompacted {
				t.Fatalf("%d blocks is not far below the %d that would pile up uncompacted", got, uncompacted)
			}
		})
	}
}
