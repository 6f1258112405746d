package analyze

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Typical knows how long an operation usually takes, e.g. its recent median
// from the metrics the backend derives from spans.
type Typical interface {
	Typical(service, spanName string) (time.Duration, bool)
}

// DominantShare is the share of the critical path above which one span is
// named as the cause. Below it the path is spread out: naming the top span
// would send the reader after one suspect when, by construction, more than
// half of the time is elsewhere. 40% rather than 50% because the remainder
// is usually split among several spans, each well behind the top one.
const DominantShare = 0.40

// slowFactor is how much longer than usual a span must be to be called out
// as slower than usual rather than in line with it.
const slowFactor = 1.5

// Contributor is one span's share of the critical path.
type Contributor struct {
	SpanID  string
	Service string
	Name    string
	// Label is Name with the semantic-convention context a reader needs.
	Label string
	Self  time.Duration
	Share float64 // of Total, 0..1
}

// Explanation says why a trace took as long as it did.
type Explanation struct {
	// Sentence is the whole explanation in one line.
	Sentence    string
	Root        string // root span name
	RootService string
	Total       time.Duration
	// SingleCause is true when the top span holds at least DominantShare of
	// the critical path.
	SingleCause bool
	// TopSpanID and Share describe the span with the most self time on the
	// critical path.
	TopSpanID string
	Share     float64
	// Factor is the top span's duration over its typical duration; 0 when
	// no typical duration is known.
	Factor  float64
	Typical time.Duration
	// RootTypical is the root operation's usual duration, 0 when unknown; WithinUsual is true
	// when it is known and the trace took no longer than slowFactor times it: nothing to explain.
	RootTypical time.Duration
	WithinUsual bool
	// Top holds up to three spans with the most self time on the path.
	Top         []Contributor
	Adjustments []Adjustment
}

// WhySlow explains the trace's latency from its critical path: spans are
// ranked by their self time on the path, and the top one is named if it
// dominates (DominantShare). typical may be nil.
func WhySlow(td *tracepb.TracesData, typical Typical) Explanation {
	t := NewTree(td)
	path := criticalPath(t, t.AdjustSkew())
	root := t.Root()
	if root == nil {
		return Explanation{Sentence: "the trace has no root span, so its latency is unknown"}
	}
	e := Explanation{Root: root.Name, RootService: root.Service, Total: path.Total, Adjustments: path.Adjustments}
	if typical != nil {
		if d, ok := typical.Typical(root.Service, root.Name); ok && d > 0 {
			e.RootTypical = d
			e.WithinUsual = float64(path.Total) <= slowFactor*float64(d)
		}
	}
	for _, seg := range path.Segments {
		if seg.Self <= 0 {
			continue
		}
		s := t.ByID[seg.SpanID]
		c := Contributor{SpanID: s.ID, Service: s.Service, Name: s.Name, Label: Label(s), Self: seg.Self}
		if s.Service != root.Service {
			c.Label += " in " + s.Service
		}
		if path.Total > 0 {
			c.Share = float64(seg.Self) / float64(path.Total)
		}
		e.Top = append(e.Top, c)
	}
	slices.SortStableFunc(e.Top, func(a, b Contributor) int {
		if c := cmp.Compare(b.Self, a.Self); c != 0 {
			return c
		}
		return strings.Compare(a.SpanID, b.SpanID)
	})
	e.Top = e.Top[:min(3, len(e.Top))]

	head := fmt.Sprintf("%s took %s", root.Name, formatDuration(path.Total))
	if len(e.Top) == 0 {
		e.Sentence = head + "; no span has time of its own on the critical path"
		return e
	}
	top := e.Top[0]
	e.TopSpanID, e.Share = top.SpanID, top.Share
	if typical != nil {
		s := t.ByID[top.SpanID]
		if d, ok := typical.Typical(s.Service, s.Name); ok && d > 0 {
			e.Typical = d
			e.Factor = float64(s.Duration()) / float64(d)
		}
	}
	e.SingleCause = top.Share >= DominantShare
	if !e.SingleCause {
		parts := make([]string, len(e.Top))
		for i, c := range e.Top {
			parts[i] = fmt.Sprintf("%s %s (%s)", c.Label, formatDuration(c.Self), percent(c.Share))
		}
		e.Sentence = fmt.Sprintf("%s; no single cause: the critical path is spread over %s",
			head, strings.Join(parts, ", "))
		return e
	}
	what := "is " + top.Label
	if top.SpanID == root.ID {
		what = "is " + top.Label + "'s own time"
	}
	e.Sentence = fmt.Sprintf("%s; %s (%s) %s on the critical path", head, formatDuration(top.Self), percent(top.Share), what)
	if e.Typical > 0 {
		if e.Factor >= slowFactor {
			e.Sentence += fmt.Sprintf(", %s its usual %s", factor(e.Factor), formatDuration(e.Typical))
		} else {
			e.Sentence += fmt.Sprintf(", in line with its usual %s", formatDuration(e.Typical))
		}
	}
	return e
}

func percent(f float64) string { return fmt.Sprintf("%d%%", int(math.Round(f*100))) }

func factor(f float64) string {
	if f >= 10 {
		return fmt.Sprintf("%.0fx", f)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0") + "x"
}
