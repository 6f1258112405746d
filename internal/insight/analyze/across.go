package analyze

import (
	"cmp"
	"slices"
	"strings"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// LintAcross runs the rules that need several traces: context lost between
// services and context lost inside a service. Give it a window of traces
// close in time (those of the last minute, say); per-trace rules are Lint's.
func LintAcross(traces []*tracepb.TracesData, cfg LintConfig) []Finding {
	cfg = cfg.withDefaults()
	var trees []*Tree
	for _, td := range traces {
		trees = append(trees, Trees(td)...)
	}
	var out []Finding
	out = append(out, lostPropagation(trees, cfg)...)
	out = append(out, lostInGoroutine(trees, cfg)...)
	sortFindings(out)
	return out
}

// lostPropagation pairs a CLIENT span that has no child in another service
// (a client library may add local children of its own) with a SERVER span
// of another service that starts a trace of its own within
// cfg.PropagationGap after the client started, and before it ended: the
// call arrived, but its traceparent did not. Database clients are left out,
// since databases do not report spans of their own. Each client and each
// server root is used once, closest pairs first, so two concurrent calls
// cannot both claim one server span.
func lostPropagation(trees []*Tree, cfg LintConfig) []Finding {
	var clients, servers []*Span
	for _, t := range trees {
		for _, s := range t.Spans {
			if s.Kind == kindClient && !hasRemoteChild(s) && !s.hasPrefix("db.") {
				clients = append(clients, s)
			}
		}
		for _, r := range t.Roots {
			if r.Kind == kindServer {
				servers = append(servers, r)
			}
		}
	}
	type pair struct{ c, s *Span }
	var pairs []pair
	for _, srv := range servers {
		for _, c := range clients {
			gap := srv.Start.Sub(c.Start)
			if c.TraceID == srv.TraceID || c.Service == srv.Service || gap < 0 || gap > cfg.PropagationGap || srv.Start.After(c.End) {
				continue
			}
			pairs = append(pairs, pair{c, srv})
		}
	}
	slices.SortStableFunc(pairs, func(a, b pair) int {
		return cmp.Or(cmp.Compare(a.s.Start.Sub(a.c.Start), b.s.Start.Sub(b.c.Start)),
			strings.Compare(a.c.ID, b.c.ID), strings.Compare(a.s.ID, b.s.ID))
	})
	used := map[*Span]bool{}
	var out []Finding
	for _, p := range pairs {
		if used[p.c] || used[p.s] {
			continue
		}
		used[p.c], used[p.s] = true, true
		l := &linter{t: &Tree{TraceID: p.c.TraceID}, cfg: cfg}
		l.add(RuleLostPropagation, SeverityError, p.c.Service, fixLostPropagation, []*Span{p.c, p.s}, 1,
			"client span %q of %s has no child, and %s span %q started %s later as the root of trace %s: the trace context did not cross the call",
			p.c.Name, p.c.Service, p.s.Service, p.s.Name, formatDuration(p.s.Start.Sub(p.c.Start)), p.s.TraceID)
		out = append(out, l.out...)
	}
	return out
}

// lostInGoroutine finds work that a request handed to a goroutine or
// background task without its context, so the work started a trace of its
// own. The heuristic, over a window of traces: a root span that is not an
// entry span (INTERNAL, the kind a span started from an empty context
// usually gets, or CLIENT/PRODUCER for a call made from such a goroutine;
// SERVER and CONSUMER roots are requests and messages arriving) is reported
// when
//
//   - it starts inside the window of a span of the same service in exactly
//     one other trace; with several candidates the service is busy and the
//     owner cannot be told, so nothing is said;
//   - and it was created by the same instrumentation scope (the same module,
//     in the guide's one-tracer-per-module practice) as that span or one of
//     its ancestors in that service.
//
// The second condition keeps a scheduler's root span (the guide's
// process_multiple_tasks) from being blamed on a request that happened to
// be running: schedulers live in modules of their own.
func lostInGoroutine(trees []*Tree, cfg LintConfig) []Finding {
	byService := map[string][]*Span{}
	for _, t := range trees {
		for _, s := range t.Spans {
			byService[s.Service] = append(byService[s.Service], s)
		}
	}
	var out []Finding
	for _, t := range trees {
		for _, r := range t.Roots {
			if r.Kind == kindServer || r.Kind == kindConsumer {
				continue
			}
			var inner *Span
			owners := map[string]bool{}
			for _, p := range byService[r.Service] {
				if p.TraceID == r.TraceID || p.Start.After(r.Start) || p.End.Before(r.Start) {
					continue
				}
				owners[p.TraceID] = true
				// The latest-starting enclosing span is the innermost one.
				if inner == nil || byStart(inner, p) < 0 {
					inner = p
				}
			}
			if len(owners) != 1 || !sameScopeAbove(inner, r) {
				continue
			}
			l := &linter{t: t, cfg: cfg}
			l.add(RuleLostInGoroutine, SeverityWarning, r.Service, fixLostInGoroutine, []*Span{r, inner}, 1,
				"root span %q of %s started %s into %q of trace %s, from the same module, without a parent: its context was probably dropped when the work moved to a goroutine or background task",
				r.Name, r.Service, formatDuration(r.Start.Sub(inner.Start)), inner.Name, inner.TraceID)
			out = append(out, l.out...)
		}
	}
	return out
}

// sameScopeAbove reports whether p or one of its ancestors in the same
// service was created by r's instrumentation scope.
func sameScopeAbove(p, r *Span) bool {
	for s := p; s != nil && s.Service == r.Service; s = s.Parent {
		if s.Scope == r.Scope {
			return true
		}
	}
	return false
}

func hasRemoteChild(s *Span) bool {
	for _, c := range s.Children {
		if c.Service != s.Service || hasRemoteChild(c) {
			return true
		}
	}
	return false
}

func (s *Span) hasPrefix(prefix string) bool {
	for _, kv := range s.Raw.GetAttributes() {
		if strings.HasPrefix(kv.GetKey(), prefix) {
			return true
		}
	}
	return false
}
