package search_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
)

// TestMetricsSemantics checks TraceQL metrics over the conformance data set, laid out in the
// head, in a block and split across blocks and the head. Trace i of the data set starts at
// base + i seconds, and its spans at the offsets dataset_test.go gives, so with one-second
// steps from base−1s every step's count is known: (base−1s, base] holds checkout's root
// (which starts exactly at base), (base, base+1s] checkout's other three spans and orphan's
// root, and so on.
func TestMetricsSemantics(t *testing.T) {
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	reqs := dataset(t, base)
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	for _, lay := range layouts {
		t.Run(lay.name, func(t *testing.T) {
			st := openStore(t)
			for i, r := range reqs {
				if err := st.Append(r); err != nil {
					t.Fatal(err)
				}
				if lay.flushAfter(i, len(reqs)) {
					if err := st.Flush(); err != nil {
						t.Fatal(err)
					}
				}
			}
			e := search.New(st)
			run := func(q string, exemplars int) []search.Series {
				t.Helper()
				pq, err := traceql.Parse(q)
				if err != nil {
					t.Fatal(err)
				}
				res, err := e.QueryRange(context.Background(), search.MetricsRequest{Query: pq,
					Start: base.Add(-time.Second), End: base.Add(6 * time.Second), Step: time.Second, Exemplars: exemplars})
				if err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				return res.Series
			}

			// Each step is stamped at its end and holds (end−step, end].
			s := run(`{ } | count_over_time()`, 0)
			want := []search.Sample{{ms(0), 1}, {ms(time.Second), 4}, {ms(2 * time.Second), 2},
				{ms(3 * time.Second), 5}, {ms(4 * time.Second), 2}, {ms(5 * time.Second), 1}}
			if len(s) != 1 || !slices.Equal(s[0].Samples, want) {
				t.Fatalf("count_over_time: %+v\nwant samples %v", s, want)
			}
			// An unlabelled series is named by its function.
			if got := s[0].PromLabels(); got != `{__name__="count_over_time"}` {
				t.Errorf("unlabelled series labels %s", got)
			}

			// Spans without the by() value form the group labelled "nil".
			totals := map[string]float64{}
			for _, sr := range run(`{ } | count_over_time() by (span.flag)`, 0) {
				totals[sr.PromLabels()] = sum(sr)
			}
			if fmt.Sprint(totals) != `map[{span.flag="false"}:1 {span.flag="nil"}:13 {span.flag="true"}:1]` {
				t.Errorf("by(span.flag): %v", totals)
			}

			// A threshold keeps only the samples passing it.
			if s := run(`{ } | count_over_time() > 3`, 0); len(s) != 1 || !slices.Equal(s[0].Samples, []search.Sample{{ms(time.Second), 4}, {ms(3 * time.Second), 5}}) {
				t.Errorf("count_over_time() > 3: %+v", s)
			}
			if s := run(`{ } | max_over_time(duration) by (resource.service.name) >= 1s`, 0); len(s) != 1 || s[0].PromLabels() != `{resource.service.name="backend"}` {
				t.Errorf("max_over_time(duration) >= 1s keeps %+v, want backend's slow request only", s)
			}

			// topk and bottomk rank the series at every step.
			byService := map[int64]map[string]float64{}
			for _, sr := range run(`{ } | count_over_time() by (resource.service.name)`, 0) {
				for _, smp := range sr.Samples {
					if byService[smp.TimestampMs] == nil {
						byService[smp.TimestampMs] = map[string]float64{}
					}
					byService[smp.TimestampMs][sr.PromLabels()] = smp.Value
				}
			}
			for _, bottom := range []bool{false, true} {
				q := `{ } | count_over_time() by (resource.service.name) | topk(1)`
				if bottom {
					q = strings.Replace(q, "topk", "bottomk", 1)
				}
				perStep := map[int64]int{}
				for _, sr := range run(q, 0) {
					for _, smp := range sr.Samples {
						perStep[smp.TimestampMs]++
						for other, v := range byService[smp.TimestampMs] {
							if (!bottom && v > smp.Value) || (bottom && v < smp.Value) {
								t.Errorf("%s at %d: kept %s=%v over %s=%v", q, smp.TimestampMs, sr.PromLabels(), smp.Value, other, v)
							}
						}
					}
				}
				for ts := range byService {
					if perStep[ts] != 1 {
						t.Errorf("%s: %d series at %d, want 1", q, perStep[ts], ts)
					}
				}
			}

			// Exemplars: one span per step at most, spread over the steps, with the sample's
			// value for counting functions and the span's own value otherwise.
			if s := run(`{ } | count_over_time()`, 0); len(s[0].Exemplars) != 0 {
				t.Errorf("exemplars not asked for: %v", s[0].Exemplars)
			}
			s = run(`{ } | count_over_time()`, 100)
			if len(s[0].Exemplars) != 6 {
				t.Fatalf("%d exemplars, want one per step (6)", len(s[0].Exemplars))
			}
			for i, ex := range s[0].Exemplars {
				if _, ok := datasetIDs[nameOf(ex.TraceID)]; !ok || len(ex.SpanID) != 8 || ex.Value != s[0].Samples[i].Value {
					t.Errorf("exemplar %d: %+v for sample %+v", i, ex, s[0].Samples[i])
				}
				if ex.TimestampMs > s[0].Samples[i].TimestampMs || ex.TimestampMs <= s[0].Samples[i].TimestampMs-1000 {
					t.Errorf("exemplar %d at %d outside its step ending %d", i, ex.TimestampMs, s[0].Samples[i].TimestampMs)
				}
			}
			if s := run(`{ } | count_over_time()`, 2); len(s[0].Exemplars) != 2 || s[0].Exemplars[0].TimestampMs >= ms(0)+1 || s[0].Exemplars[1].TimestampMs <= ms(2*time.Second) {
				t.Errorf("two exemplars should come from the first and a later step: %+v", s[0].Exemplars)
			}
			s = run(`{ name = "sleep" } | max_over_time(duration)`, 5)
			if len(s) != 1 || len(s[0].Exemplars) != 1 || s[0].Exemplars[0].Value != 1.9 || nameOf(s[0].Exemplars[0].TraceID) != "slow" {
				t.Errorf("max_over_time exemplar %+v, want the sleep span, 1.9s", s)
			}

			// Arithmetic: a number applies to every sample, series pair by labels, an
			// unlabelled series with each of the other side's, and thresholds and topk apply
			// to the result.
			if s := run(`({ } | count_over_time()) * 2 > 6`, 0); len(s) != 1 || s[0].PromLabels() != `{__name__="(count_over_time * 2)"}` ||
				!slices.Equal(s[0].Samples, []search.Sample{{ms(time.Second), 8}, {ms(3 * time.Second), 10}}) {
				t.Errorf("count_over_time() * 2 > 6: %+v", s)
			}
			if s := run(`({ } | count_over_time()) - ({ } | count_over_time())`, 0); len(s) != 1 || sum(s[0]) != 0 || len(s[0].Samples) != 6 {
				t.Errorf("a query minus itself: %+v", s)
			}
			shares := map[int64]float64{}
			byName := run(`({ } | count_over_time() by (resource.service.name)) / ({ } | count_over_time())`, 0)
			for _, sr := range byName {
				if strings.Contains(sr.PromLabels(), "__name__") {
					t.Errorf("a labelled share is named: %s", sr.PromLabels())
				}
				for _, smp := range sr.Samples {
					shares[smp.TimestampMs] += smp.Value
				}
			}
			if len(byName) != 4 || len(shares) != 6 {
				t.Errorf("shares by service: %d series over %d steps, want 4 over 6", len(byName), len(shares))
			}
			for ts, v := range shares {
				if math.Abs(v-1) > 1e-9 {
					t.Errorf("shares by service at %d add up to %v, want 1", ts, v)
				}
			}
			if s := run(`100 * ({ } | count_over_time() by (resource.service.name)) / ({ } | count_over_time()) | topk(1)`, 0); len(s) == 0 {
				t.Errorf("topk after arithmetic kept nothing")
			}

			// compare(): every attribute value split into the selection and the baseline.
			cmp := map[string]float64{}
			for _, sr := range run(`{ } | compare({ status = error })`, 0) {
				cmp[sr.PromLabels()] = sum(sr)
			}
			for labels, want := range map[string]float64{
				`{__meta_type="selection", name="POST /pay"}`:                1,
				`{__meta_type="selection", span.http.status_code="500"}`:     1,
				`{__meta_type="selection_total", name="nil"}`:                1,
				`{__meta_type="baseline_total", name="nil"}`:                 14,
				`{__meta_type="baseline", resource.service.name="frontend"}`: 9,
				`{__meta_type="baseline", kind="internal"}`:                  7,
			} {
				if cmp[labels] != want {
					t.Errorf("compare %s = %v, want %v", labels, cmp[labels], want)
				}
			}
			if _, ok := cmp[`{__meta_type="baseline", name="POST /pay"}`]; ok {
				t.Errorf("the error span counted in the baseline too")
			}
			n := 0
			for labels := range cmp {
				if strings.HasPrefix(labels, `{__meta_type="baseline", name=`) {
					n++
				}
			}
			if n != 10 {
				t.Errorf("%d baseline values of name, want the top 10 of 14", n)
			}
		})
	}
}

func sum(s search.Series) float64 {
	var v float64
	for _, smp := range s.Samples {
		v += smp.Value
	}
	return v
}
