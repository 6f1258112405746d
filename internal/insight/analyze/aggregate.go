package analyze

import (
	"cmp"
	"slices"
	"strings"
)

// RuleCount sums one rule's findings for a service.
type RuleCount struct {
	Rule     string
	Severity Severity // the worst seen
	Findings int
	Count    int // sum of Finding.Count
	Traces   int // distinct traces
	// An example to open: the first finding's trace and span.
	ExampleTraceID string
	ExampleSpanID  string
	Fix            string
}

// ServiceReport is what one service's owners need to read.
type ServiceReport struct {
	Service  string
	Findings int
	Rules    []RuleCount // worst severity first, then most findings
}

var severityRank = map[Severity]int{SeverityInfo: 1, SeverityWarning: 2, SeverityError: 3}

// Aggregate groups findings per service and rule. Services are in name
// order; the examples are those of the first finding in the input.
func Aggregate(findings []Finding) []ServiceReport {
	type key struct{ service, rule string }
	idx := map[key]int{}
	traces := map[key]map[string]bool{}
	bySvc := map[string]*ServiceReport{}
	for _, f := range findings {
		r, ok := bySvc[f.Service]
		if !ok {
			r = &ServiceReport{Service: f.Service}
			bySvc[f.Service] = r
		}
		r.Findings++
		k := key{f.Service, f.Rule}
		i, ok := idx[k]
		if !ok {
			i = len(r.Rules)
			idx[k] = i
			traces[k] = map[string]bool{}
			r.Rules = append(r.Rules, RuleCount{Rule: f.Rule, Severity: f.Severity,
				ExampleTraceID: f.TraceID, ExampleSpanID: first(f.SpanIDs), Fix: f.Fix})
		}
		rc := &r.Rules[i]
		rc.Findings++
		rc.Count += max(f.Count, 1)
		if severityRank[f.Severity] > severityRank[rc.Severity] {
			rc.Severity = f.Severity
		}
		if f.TraceID != "" && !traces[k][f.TraceID] {
			traces[k][f.TraceID] = true
			rc.Traces++
		}
	}
	out := make([]ServiceReport, 0, len(bySvc))
	for _, r := range bySvc {
		slices.SortStableFunc(r.Rules, func(a, b RuleCount) int {
			return cmp.Or(severityRank[b.Severity]-severityRank[a.Severity],
				b.Findings-a.Findings, strings.Compare(a.Rule, b.Rule))
		})
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b ServiceReport) int { return strings.Compare(a.Service, b.Service) })
	return out
}
