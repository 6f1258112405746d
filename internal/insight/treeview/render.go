// Package treeview draws a trace as the tracing guide does (box-drawing span
// tree, durations, errors, events and attributes) for `ariadne trace <id>`,
// and fetches the trace from an Ariadne server.
package treeview

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Options select what Render prints.
type Options struct {
	// Attributes lists each span's attributes. Event attributes are not
	// shown, as in the guide's drawings; exceptions get their type and message.
	Attributes bool
	// Events lists each span's events with their offset from the span start.
	Events bool
	// Color adds ANSI colours: red for errors, dim for durations. The CLI sets
	// it only when stdout is a terminal.
	Color bool
	// Width is the column limit; longer names and values are cut with "…".
	// Zero means 80.
	Width int
}

// DefaultWidth is the width used when Options.Width is zero.
const DefaultWidth = 80

// ErrNoSpans is returned by Render for a trace without spans.
var ErrNoSpans = errors.New("treeview: trace has no spans")

type node struct {
	span     *tracepb.Span
	service  string
	children []*node
	// flag explains why a span with a parent is drawn as a root.
	flag   string
	parent *node
	order  int
}

func (n *node) start() uint64 { return n.span.GetStartTimeUnixNano() }

func (n *node) duration() time.Duration {
	return time.Duration(int64(n.span.GetEndTimeUnixNano()) - int64(n.span.GetStartTimeUnixNano()))
}

func (n *node) isError() bool {
	return n.span.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR
}

type renderer struct {
	w       io.Writer
	err     error
	width   int
	color   bool
	opts    Options
	slowest *node
}

// Render writes td as a span tree. Spans whose parent is absent from td are
// drawn as extra roots flagged "(parent <id> missing)", after the real roots.
// The span marked "← slowest" is the span with the largest self time (its
// duration minus the time covered by its children), the earliest-starting one
// on a tie: that is where the time went, as the guide marks pymongo.insert_one
// rather than the repository call that waits on it.
func Render(w io.Writer, td *tracepb.TracesData, opts Options) error {
	nodes := collect(td)
	if len(nodes) == 0 {
		return ErrNoSpans
	}
	roots := link(nodes)

	r := &renderer{w: w, width: cmp.Or(opts.Width, DefaultWidth), color: opts.Color, opts: opts}
	r.slowest = slowest(nodes)
	r.header(nodes, roots)
	r.line()
	for _, n := range roots {
		r.span(n, "", "", true)
	}
	return r.err
}

func collect(td *tracepb.TracesData) []*node {
	var nodes []*node
	for _, rs := range td.GetResourceSpans() {
		svc := "unknown_service"
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				if s, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
					svc = s.StringValue
				}
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				nodes = append(nodes, &node{span: sp, service: clean(svc), order: len(nodes)})
			}
		}
	}
	return nodes
}

// link builds the tree and returns the spans to draw as roots: true roots
// by start time, then orphans, then spans caught in a parent cycle.
func link(nodes []*node) []*node {
	byID := make(map[string]*node, len(nodes))
	for _, n := range nodes {
		id := string(n.span.GetSpanId())
		if _, dup := byID[id]; !dup {
			byID[id] = n
		}
	}
	var roots, orphans []*node
	for _, n := range nodes {
		pid := n.span.GetParentSpanId()
		if len(pid) == 0 || allZero(pid) {
			roots = append(roots, n)
			continue
		}
		p, ok := byID[string(pid)]
		if !ok || p == n {
			n.flag = "(parent " + hex.EncodeToString(pid) + " missing)"
			if p == n {
				n.flag = "(parent " + hex.EncodeToString(pid) + " in a cycle)"
			}
			orphans = append(orphans, n)
			continue
		}
		n.parent = p
		p.children = append(p.children, n)
	}
	for _, n := range nodes {
		sortByStart(n.children)
	}
	sortByStart(roots)
	sortByStart(orphans)
	roots = append(roots, orphans...)

	// Spans whose ancestry loops never reach a root; break each loop at its
	// earliest span so nothing the server sent goes unseen.
	seen := map[*node]bool{}
	var mark func(*node)
	mark = func(n *node) {
		seen[n] = true
		for _, c := range n.children {
			if !seen[c] {
				mark(c)
			}
		}
	}
	for _, n := range roots {
		mark(n)
	}
	rest := slices.DeleteFunc(slices.Clone(nodes), func(n *node) bool { return seen[n] })
	sortByStart(rest)
	for _, n := range rest {
		if seen[n] {
			continue
		}
		n.parent.children = slices.DeleteFunc(n.parent.children, func(c *node) bool { return c == n })
		n.flag = "(parent " + hex.EncodeToString(n.span.GetParentSpanId()) + " in a cycle)"
		n.parent = nil
		roots = append(roots, n)
		mark(n)
	}
	return roots
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func sortByStart(ns []*node) {
	slices.SortStableFunc(ns, func(a, b *node) int {
		if c := cmp.Compare(a.start(), b.start()); c != 0 {
			return c
		}
		return cmp.Compare(a.order, b.order)
	})
}

func slowest(nodes []*node) *node {
	var best *node
	var bestSelf time.Duration
	for _, n := range nodes {
		self := n.selfTime()
		if best == nil || self > bestSelf ||
			(self == bestSelf && (n.start() < best.start() ||
				(n.start() == best.start() && n.order < best.order))) {
			best, bestSelf = n, self
		}
	}
	return best
}

// selfTime is the span's duration not covered by any child, with overlapping (concurrent)
// children counted once and children clipped to the span.
func (n *node) selfTime() time.Duration {
	start, end := n.start(), n.span.GetEndTimeUnixNano()
	if end <= start {
		return 0
	}
	type iv struct{ s, e uint64 }
	var ivs []iv
	for _, c := range n.children {
		s, e := max(c.start(), start), min(c.span.GetEndTimeUnixNano(), end)
		if e > s {
			ivs = append(ivs, iv{s, e})
		}
	}
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].s < ivs[j].s })
	covered, curS, curE := uint64(0), uint64(0), uint64(0)
	for i, v := range ivs {
		if i == 0 || v.s > curE {
			covered += curE - curS
			curS, curE = v.s, v.e
		} else if v.e > curE {
			curE = v.e
		}
	}
	covered += curE - curS
	return time.Duration(end - start - covered)
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func (r *renderer) header(nodes, roots []*node) {
	first, last := nodes[0].start(), nodes[0].span.GetEndTimeUnixNano()
	errs := 0
	for _, n := range nodes {
		first = min(first, n.start())
		last = max(last, n.span.GetEndTimeUnixNano())
		if n.isError() {
			errs++
		}
	}
	root := roots[0]
	errColor := ""
	if errs > 0 {
		errColor = ansiRed
	}
	id := []seg{{text: "Trace "}, {text: hex.EncodeToString(root.span.GetTraceId())}}
	summary := []seg{
		{text: root.service, shrink: 1, min: 8},
		{text: " · "},
		{text: formatDuration(time.Duration(int64(last) - int64(first))), color: ansiDim},
		{text: " · " + plural(len(nodes), "span") + " · "},
		{text: plural(errs, "error"), color: errColor},
	}
	all := slices.Concat(id, []seg{{text: " · "}}, summary)
	// On a narrow terminal the counts matter more than one line.
	if segsWidth(fit(slices.Clone(all), r.width)) == segsWidth(all) || segsWidth(id) > r.width {
		r.line(all...)
		return
	}
	r.line(id...)
	r.line(summary...)
}

func segsWidth(segs []seg) int {
	n := 0
	for _, s := range segs {
		n += width(s.text)
	}
	return n
}

// span draws n and its subtree. prefix is what precedes n's connector,
// connector is "├─ ", "└─ " or "" for a root.
func (r *renderer) span(n *node, prefix, connector string, showService bool) {
	segs := []seg{
		{text: prefix + connector},
		{text: clean(n.span.GetName()), shrink: 1, min: 8},
	}
	if showService {
		segs = append(segs, seg{text: " ["}, seg{text: n.service, shrink: 2, min: 6}, seg{text: "]"})
	}
	segs = append(segs, seg{text: " (" + formatDuration(n.duration()) + ")", color: ansiDim})
	if n.isError() {
		label := " ✗ ERROR"
		msg := clean(n.span.GetStatus().GetMessage())
		if msg != "" {
			label += ": "
		}
		segs = append(segs, seg{text: label, color: ansiRed}, seg{text: msg, color: ansiRed, shrink: 3, min: 10})
	}
	if n == r.slowest {
		segs = append(segs, seg{text: " ← slowest"})
	}
	if n.flag != "" {
		segs = append(segs, seg{text: " " + n.flag})
	}
	r.line(segs...)

	childPrefix := prefix
	switch connector {
	case "├─ ":
		childPrefix += "│  "
	case "└─ ":
		childPrefix += "   "
	}
	detail := childPrefix
	if len(n.children) > 0 {
		// Keep the trunk to the children visible beside the details.
		detail += "│  "
	}
	if r.opts.Events && len(n.span.GetEvents()) > 0 {
		r.events(n, detail)
	}
	if r.opts.Attributes && len(n.span.GetAttributes()) > 0 {
		r.attributes(n.span.GetAttributes(), detail)
	}
	for i, c := range n.children {
		conn := "├─ "
		if i == len(n.children)-1 {
			conn = "└─ "
		}
		r.span(c, childPrefix, conn, c.service != n.service)
	}
}

func itemConnector(i, total int) string {
	if i == total-1 {
		return "└─ "
	}
	return "├─ "
}

func (r *renderer) events(n *node, prefix string) {
	r.line(seg{text: prefix + "Events:"})
	evs := slices.Clone(n.span.GetEvents())
	slices.SortStableFunc(evs, func(a, b *tracepb.Span_Event) int {
		return cmp.Compare(a.GetTimeUnixNano(), b.GetTimeUnixNano())
	})
	for i, ev := range evs {
		offset := time.Duration(int64(ev.GetTimeUnixNano()) - int64(n.start()))
		segs := []seg{
			{text: prefix + itemConnector(i, len(evs))},
			{text: clean(ev.GetName()), shrink: 1, min: 8},
			{text: " (t=" + formatDuration(offset) + ")"},
		}
		if ev.GetName() == "exception" {
			segs = append(segs, seg{text: " " + exceptionText(ev), color: ansiRed, shrink: 3, min: 12})
			segs[1].color = ansiRed
		}
		r.line(segs...)
	}
}

// exceptionText gives the type and message; the stack trace is too long for
// a tree line and is left to the JSON output.
func exceptionText(ev *tracepb.Span_Event) string {
	var typ, msg string
	for _, kv := range ev.GetAttributes() {
		switch kv.GetKey() {
		case "exception.type":
			typ = kv.GetValue().GetStringValue()
			// Go names types by full import path, which would crowd the
			// message out of the line; the last element is enough to read.
			typ = typ[strings.LastIndex(typ, "/")+1:]
		case "exception.message":
			msg = kv.GetValue().GetStringValue()
		}
	}
	switch {
	case typ != "" && msg != "":
		return clean(typ + ": " + msg)
	case typ != "":
		return clean(typ)
	default:
		return clean(msg)
	}
}

func (r *renderer) attributes(kvs []*commonpb.KeyValue, prefix string) {
	r.line(seg{text: prefix + "Attributes:"})
	for i, kv := range kvs {
		r.line(
			seg{text: prefix + itemConnector(i, len(kvs))},
			seg{text: clean(kv.GetKey()), shrink: 1, min: 10},
			seg{text: ": "},
			seg{text: clean(formatValue(kv.GetValue())), shrink: 3, min: 8},
		)
	}
}
