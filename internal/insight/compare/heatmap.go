package compare

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
)

// HeatmapRequest asks for the latency distribution over time of the spans a filter keeps.
type HeatmapRequest struct {
	Filter     *traceql.Query
	Start, End time.Time
	// Columns is how many time buckets the range is cut into (60 when 0).
	Columns int
}

// Heatmap counts spans by start time (equal columns over the range) and by duration (rows on a
// log scale, RowsPerDoubling per doubling from 1µs, trimmed to the rows that hold spans), so
// that fast and slow populations a thousand times apart both show.
type Heatmap struct {
	StartUnixNano, EndUnixNano int64
	StepNanos                  int64
	// Bounds are the rows' duration edges, nanoseconds, fastest first: row i holds durations
	// in [Bounds[i], Bounds[i+1]). len(Bounds) = rows+1.
	Bounds []int64
	// Counts[c][r] is the spans of column c, row r.
	Counts [][]int64
	Total  int64
	// Max is the largest cell, for a colour scale.
	Max     int64
	Metrics search.Metrics
}

// RowsPerDoubling is the duration resolution of a heatmap: each row is 2^(1/4) ≈ 1.19 times
// the one below, fine enough to brush a slow mode apart from the fast one.
const RowsPerDoubling = 4

const (
	heatmapMinDuration = int64(time.Microsecond)
	maxHeatmapColumns  = 500
)

// rowOf is the duration row of d, counted from heatmapMinDuration (row 0 also takes anything
// faster).
func rowOf(d int64) int {
	if d <= heatmapMinDuration {
		return 0
	}
	return int(math.Floor(RowsPerDoubling * math.Log2(float64(d)/float64(heatmapMinDuration))))
}

// rowBound is the lower edge of row r, rounded to whole nanoseconds upwards so that a span of
// exactly the bound falls in the row, as rowOf puts it.
func rowBound(r int) int64 {
	return int64(math.Ceil(float64(heatmapMinDuration) * math.Exp2(float64(r)/RowsPerDoubling)))
}

// ComputeHeatmap reads the filter's spans in the range, as a search reads them: pruned by the
// filter's conditions, only the columns it tests plus times and durations.
func ComputeHeatmap(ctx context.Context, e *search.Engine, req HeatmapRequest) (*Heatmap, error) {
	if req.Filter == nil {
		return nil, errors.New("heatmap: no filter")
	}
	if !req.End.After(req.Start) {
		return nil, errors.New("heatmap: end must be after start")
	}
	cols := req.Columns
	if cols <= 0 {
		cols = 60
	}
	cols = min(cols, maxHeatmapColumns)
	lo, hi := req.Start.UnixNano(), req.End.UnixNano()
	step := max((hi-lo+int64(cols)-1)/int64(cols), 1)
	// Rows are collected sparsely first: the range of durations is known only at the end.
	counts := make([]map[int]int64, cols)
	minRow, maxRow := math.MaxInt, -1
	var total int64
	m, err := e.ScanSpans(ctx, search.SpanScanRequest{Selection: req.Filter, Start: req.Start, End: req.End, SelectedOnly: true},
		func(s *search.ScannedSpan) {
			c := int((s.StartUnixNano - lo - 1) / step) // starts are in (lo, hi]
			c = min(max(c, 0), cols-1)
			r := rowOf(s.DurationNanos)
			if counts[c] == nil {
				counts[c] = map[int]int64{}
			}
			counts[c][r]++
			minRow, maxRow = min(minRow, r), max(maxRow, r)
			total++
		})
	if err != nil {
		return nil, fmt.Errorf("heatmap: %w", err)
	}
	h := &Heatmap{StartUnixNano: lo, EndUnixNano: hi, StepNanos: step, Counts: make([][]int64, cols), Total: total, Metrics: m}
	if maxRow < 0 {
		minRow, maxRow = 0, -1
	}
	for r := minRow; r <= maxRow+1; r++ {
		b := rowBound(r)
		if r == 0 {
			b = 0 // row 0 holds everything up to its upper edge
		}
		h.Bounds = append(h.Bounds, b)
	}
	for c := range cols {
		h.Counts[c] = make([]int64, maxRow-minRow+1)
		for r, n := range counts[c] {
			h.Counts[c][r-minRow] = n
			h.Max = max(h.Max, n)
		}
	}
	return h, nil
}
