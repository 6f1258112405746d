package analyze

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Severity ranks findings.
type Severity string

const (
	SeverityInfo    Severity = "info"
	SeverityWarning Severity = "warning"
	SeverityError   Severity = "error"
)

// Rule IDs. They are stable: dashboards and suppressions refer to them.
const (
	RuleOrphanSpan         = "context.orphan-span"
	RuleMultipleRoots      = "context.multiple-roots"
	RuleLostPropagation    = "context.lost-propagation"
	RuleLostInGoroutine    = "context.lost-in-goroutine"
	RuleUnendedParent      = "span.unended-parent"
	RuleEndBeforeStart     = "span.end-before-start"
	RuleZeroLength         = "span.zero-length"
	RuleLongerThanRoot     = "span.longer-than-root"
	RuleTinySpans          = "volume.tiny-spans"
	RuleRepeatedSiblings   = "volume.repeated-siblings"
	RuleOversizedAttribute = "attributes.oversized-value"
	RuleMissingSemconv     = "attributes.missing-semconv"
	RuleHighCardinality    = "attributes.high-cardinality"
	RuleIDInName           = "naming.id-in-name"
	RuleFreeTextName       = "naming.free-text"
	RuleNamingConvention   = "naming.convention"
	RuleErrorNoMessage     = "status.error-without-message"
	RuleExceptionNoError   = "status.exception-without-error"
)

// Finding is one lint result: a rule broken in one trace, with the spans
// that break it.
type Finding struct {
	Rule     string
	Severity Severity
	// Service is the service whose instrumentation should change.
	Service string
	Message string
	// Fix says what to do, in the guide's terms.
	Fix     string
	TraceID string
	// SpanIDs are the offending spans; at most LintConfig.MaxSpanIDs of them.
	SpanIDs []string
	// Count is how many spans (or values) broke the rule, even when SpanIDs
	// is cut short.
	Count int
}

// LintConfig tunes the rules. The zero value of a field means its default;
// DefaultLintConfig spells the defaults out.
type LintConfig struct {
	// RepeatedSiblings is how many same-named children of one parent make
	// "one span for the batch" the better design.
	RepeatedSiblings int
	// TinySpan is the duration under which a span is trivial (the guide's
	// "<1ms"); TinySpanMinCount spans of one operation must be seen, and
	// TinySpanShare of them be tiny, for the operation to be flagged.
	TinySpan         time.Duration
	TinySpanMinCount int
	TinySpanShare    float64
	// MaxAttributeBytes is the largest acceptable attribute value.
	MaxAttributeBytes int
	// LongerThanRoot flags a span lasting more than this many times its
	// trace's root: far beyond what the request waited for.
	LongerThanRoot float64
	// UnendedChildren is how many orphans sharing one missing parent make
	// that parent look never-ended rather than lost.
	UnendedChildren int
	// SpanName is the naming convention; spans following a semantic
	// convention's own naming (METHOD /route, ...) are exempt.
	SpanName *regexp.Regexp
	// PropagationGap is how soon after a client span a server root in
	// another trace must start to be taken for the same call.
	PropagationGap time.Duration
	// Cardinality is the number of distinct values per (service, span name,
	// key) over a window above which a key is reported.
	Cardinality int
	// CardinalityIgnore matches keys whose values are unique by design.
	CardinalityIgnore *regexp.Regexp
	// MaxSpanIDs caps Finding.SpanIDs.
	MaxSpanIDs int
}

// DefaultSpanName accepts the guide's convention: {verb}_{noun}, or
// {component}.{operation} with lowercase, underscore-separated words.
var DefaultSpanName = regexp.MustCompile(`^(?:[a-z][a-z0-9]*(?:_[a-z0-9]+)+|[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+)$`)

// DefaultCardinalityIgnore matches keys meant to be unique per span: IDs
// (the guide recommends task.id) and per-request semantic conventions.
var DefaultCardinalityIgnore = regexp.MustCompile(`(?:^|[._])ids?$|_ids?$|^url\.(?:full|path|query)$|^http\.(?:url|target)$|^exception\.|^(?:client|server|network\.peer|net\.peer|net\.sock\.peer)\.(?:address|port|addr|name)$|^(?:thread|process)\.|^code\.|^db\.(?:statement|query\.text)$|^messaging\.message\.|\.(?:time|timestamp|created_at|updated_at)$`)

// DefaultLintConfig returns the defaults.
func DefaultLintConfig() LintConfig {
	return LintConfig{
		RepeatedSiblings:  100,
		TinySpan:          time.Millisecond,
		TinySpanMinCount:  100,
		TinySpanShare:     0.8,
		MaxAttributeBytes: 1024,
		LongerThanRoot:    10,
		UnendedChildren:   2,
		SpanName:          DefaultSpanName,
		PropagationGap:    10 * time.Millisecond,
		Cardinality:       100,
		CardinalityIgnore: DefaultCardinalityIgnore,
		MaxSpanIDs:        20,
	}
}

func (c LintConfig) withDefaults() LintConfig {
	d := DefaultLintConfig()
	if c.RepeatedSiblings > 0 {
		d.RepeatedSiblings = c.RepeatedSiblings
	}
	if c.TinySpan > 0 {
		d.TinySpan = c.TinySpan
	}
	if c.TinySpanMinCount > 0 {
		d.TinySpanMinCount = c.TinySpanMinCount
	}
	if c.TinySpanShare > 0 {
		d.TinySpanShare = c.TinySpanShare
	}
	if c.MaxAttributeBytes > 0 {
		d.MaxAttributeBytes = c.MaxAttributeBytes
	}
	if c.LongerThanRoot > 0 {
		d.LongerThanRoot = c.LongerThanRoot
	}
	if c.UnendedChildren > 0 {
		d.UnendedChildren = c.UnendedChildren
	}
	if c.SpanName != nil {
		d.SpanName = c.SpanName
	}
	if c.PropagationGap > 0 {
		d.PropagationGap = c.PropagationGap
	}
	if c.Cardinality > 0 {
		d.Cardinality = c.Cardinality
	}
	if c.CardinalityIgnore != nil {
		d.CardinalityIgnore = c.CardinalityIgnore
	}
	if c.MaxSpanIDs > 0 {
		d.MaxSpanIDs = c.MaxSpanIDs
	}
	return d
}

// Fixes, in the guide's words and pointing at its sections.
const (
	fixOrphan          = "Start child spans from the current context (start_as_current_span) and propagate traceparent across processes (guide: Broken Trace Context)"
	fixMultipleRoots   = "Start only the entry span without a parent; start the others from the current context, not tracer.start_span with no parent (guide: Broken Trace Context)"
	fixLostPropagation = "Instrument the HTTP client so it injects traceparent (e.g. HTTPXClientInstrumentor) and the server extracts it (guide: Cross-Service Tracing)"
	fixLostInGoroutine = "Pass the context explicitly to the background task instead of starting from an empty one (guide: Broken Trace Context, Async context lost)"
	fixUnended         = "End every span: use the context manager (with tracer.start_as_current_span) or end it in a finally block (guide: Span Not Ending)"
	fixEndBeforeStart  = "Let the SDK take start and end times from one clock, or pass both from the same clock (guide: Span Not Ending)"
	fixZeroLength      = "Wrap the work itself in the span, or record an event on the enclosing span instead (guide: Span Granularity)"
	fixTiny            = "Don't create spans for very fast operations (<1ms); add an attribute or event to the enclosing span (guide: Span Granularity)"
	fixRepeated        = "Use one span for the batch with an items.count attribute instead of one span per item (guide: High Memory Usage)"
	fixOversized       = "Truncate or omit large values, e.g. a 100-character *_preview attribute (guide: High Memory Usage, Limit attribute size)"
	fixSemconv         = "Set the semantic-convention attributes (http.request.method, http.response.status_code, http.route; db.system; rpc.system; messaging.system) (guide: Attribute Guidelines)"
	fixCardinality     = "Avoid unique free-text values; use a categorical value, or an ID key (guide: Attribute Guidelines, Avoid high cardinality)"
	fixIDInName        = "Keep IDs out of span names: use a stable name (METHOD /route, {verb}_{noun}) and put the ID in an attribute such as task.id (guide: Span Naming)"
	fixFreeText        = "Use a short stable name and put the text in an attribute (guide: Span Naming)"
	fixNaming          = "Name spans {verb}_{noun} or {component}.{operation}, lowercase with underscores (guide: Span Naming)"
	fixErrorNoMessage  = `Give the error status a description: Status(StatusCode.ERROR, "Validation failed") (guide: Span Status)`
	fixExceptionStatus = "After record_exception, set Status(StatusCode.ERROR, ...) if the exception failed the operation (guide: Handle Errors)"
)

// fixIn rewrites a fix whose guide wording is Python's into the idiom of the SDK language that
// produced the spans (telemetry.sdk.language). Fixes without language-specific wording, and
// languages without a translation here, keep the guide's words.
var fixIn = map[string]map[string]string{
	"go": {
		fixOrphan:          "Start child spans from the context that carries the parent (tracer.Start(ctx, ...) with the ctx it returned) and propagate traceparent across processes, e.g. with otelhttp (guide: Broken Trace Context)",
		fixMultipleRoots:   "Start only the entry span without a parent; start the others with the request's ctx, not context.Background() (guide: Broken Trace Context)",
		fixLostPropagation: "Wrap the HTTP client's transport with otelhttp.NewTransport so it injects traceparent, and the server's handler with otelhttp.NewHandler so it extracts it (guide: Cross-Service Tracing)",
		fixLostInGoroutine: "Pass ctx to the goroutine and start its spans from it, not from context.Background() (guide: Broken Trace Context, Async context lost)",
		fixUnended:         "End every span: defer span.End() right after tracer.Start (guide: Span Not Ending)",
		fixErrorNoMessage:  `Give the error status a description: span.SetStatus(codes.Error, "validation failed") (guide: Span Status)`,
		fixExceptionStatus: "After span.RecordError(err), call span.SetStatus(codes.Error, err.Error()) if the error failed the operation (guide: Handle Errors)",
	},
	"java": {
		fixOrphan:          "Start child spans while the parent is current (try (Scope s = parent.makeCurrent()) { ... }) and propagate traceparent across processes (guide: Broken Trace Context)",
		fixUnended:         "End every span: call span.end() in a finally block (guide: Span Not Ending)",
		fixErrorNoMessage:  `Give the error status a description: span.setStatus(StatusCode.ERROR, "Validation failed") (guide: Span Status)`,
		fixExceptionStatus: "After span.recordException(e), call span.setStatus(StatusCode.ERROR, ...) if the exception failed the operation (guide: Handle Errors)",
	},
	"nodejs": {
		fixOrphan:         "Start child spans inside tracer.startActiveSpan(...) or with context.with(trace.setSpan(...)), and propagate traceparent across processes (guide: Broken Trace Context)",
		fixUnended:        "End every span: call span.end() in a finally block, or use tracer.startActiveSpan and end it there (guide: Span Not Ending)",
		fixErrorNoMessage: `Give the error status a description: span.setStatus({ code: SpanStatusCode.ERROR, message: "Validation failed" }) (guide: Span Status)`,
	},
}

// Lint checks each trace in td against the guide's practices and returns
// the findings ordered by trace, then rule, then first span.
func Lint(td *tracepb.TracesData, cfg LintConfig) []Finding {
	cfg = cfg.withDefaults()
	var out []Finding
	for _, t := range Trees(td) {
		l := &linter{t: t, cfg: cfg}
		l.context()
		l.timing()
		l.volume()
		l.perSpan()
		out = append(out, l.out...)
	}
	sortFindings(out)
	return out
}

type linter struct {
	t   *Tree
	cfg LintConfig
	out []Finding
}

func (l *linter) add(rule string, sev Severity, service, fix string, spans []*Span, count int, msg string, args ...any) {
	ids := make([]string, 0, min(len(spans), l.cfg.MaxSpanIDs))
	for _, s := range spans[:min(len(spans), l.cfg.MaxSpanIDs)] {
		ids = append(ids, s.ID)
	}
	if count == 0 {
		count = len(spans)
	}
	if len(spans) > 0 {
		if f, ok := fixIn[spans[0].Language][fix]; ok {
			fix = f
		}
	}
	l.out = append(l.out, Finding{
		Rule: rule, Severity: sev, Service: service, Message: fmt.Sprintf(msg, args...),
		Fix: fix, TraceID: l.t.TraceID, SpanIDs: ids, Count: count,
	})
}

// context finds broken parent links. Orphans sharing a missing parent are
// told apart from lone ones: several children of one absent span mean the
// parent ran (it had children) but never ended, so it was never exported,
// whereas a lone orphan is just as likely a parent lost in transit.
func (l *linter) context() {
	if len(l.t.Roots) > 1 {
		l.add(RuleMultipleRoots, SeverityWarning, l.t.Roots[0].Service, fixMultipleRoots, l.t.Roots, 0,
			"trace has %d root spans (%s); all but one lost their parent context", len(l.t.Roots), names(l.t.Roots, 3))
	}
	byParent := map[string][]*Span{}
	var parents []string
	for _, o := range l.t.Orphans {
		if _, ok := byParent[o.ParentID]; !ok {
			parents = append(parents, o.ParentID)
		}
		byParent[o.ParentID] = append(byParent[o.ParentID], o)
	}
	var lone []*Span
	for _, p := range parents {
		kids := byParent[p]
		if len(kids) < l.cfg.UnendedChildren {
			lone = append(lone, kids...)
			continue
		}
		l.add(RuleUnendedParent, SeverityError, kids[0].Service, fixUnended, kids, 0,
			"span %s never arrived although %d spans (%s) name it as parent: it was probably never ended",
			p, len(kids), names(kids, 3))
	}
	if len(lone) > 0 {
		l.add(RuleOrphanSpan, SeverityWarning, lone[0].Service, fixOrphan, lone, 0,
			"%s (%s) %s a parent that is not in the trace", plural(len(lone), "span"), names(lone, 3),
			map[bool]string{true: "has", false: "have"}[len(lone) == 1])
	}
}

// timing checks each span's window against itself and against the root.
func (l *linter) timing() {
	root := l.t.Root()
	for _, s := range l.t.Spans {
		switch {
		case s.End.Before(s.Start):
			l.add(RuleEndBeforeStart, SeverityError, s.Service, fixEndBeforeStart, []*Span{s}, 0,
				"span %q ends %s before it starts", s.Name, formatDuration(s.Start.Sub(s.End)))
		case s.End.Equal(s.Start):
			l.add(RuleZeroLength, SeverityWarning, s.Service, fixZeroLength, []*Span{s}, 0,
				"span %q has zero duration", s.Name)
		case root != nil && s != root && root.Duration() > 0 &&
			float64(s.Duration()) > l.cfg.LongerThanRoot*float64(root.Duration()):
			l.add(RuleLongerThanRoot, SeverityWarning, s.Service, fixUnended, []*Span{s}, 0,
				"span %q lasts %s, %s its root %q (%s): it was probably not ended when its work finished",
				s.Name, formatDuration(s.Duration()), factor(float64(s.Duration())/float64(root.Duration())),
				root.Name, formatDuration(root.Duration()))
		}
	}
}

// volume looks for spans too small or too numerous to be worth their cost.
func (l *linter) volume() {
	type op struct{ service, name string }
	tiny := map[op][]*Span{}
	total := map[op]int{}
	var ops []op
	for _, s := range l.t.Spans {
		k := op{s.Service, s.Name}
		if _, ok := total[k]; !ok {
			ops = append(ops, k)
		}
		total[k]++
		if s.End.After(s.Start) && s.Duration() < l.cfg.TinySpan {
			tiny[k] = append(tiny[k], s)
		}
	}
	for _, k := range ops {
		n, small := total[k], tiny[k]
		if n < l.cfg.TinySpanMinCount || float64(len(small)) < l.cfg.TinySpanShare*float64(n) {
			continue
		}
		l.add(RuleTinySpans, SeverityWarning, k.service, fixTiny, small, 0,
			"%d of %d %q spans (%s) last under %s", len(small), n, k.name,
			percent(float64(len(small))/float64(n)), formatDuration(l.cfg.TinySpan))
	}
	for _, p := range l.t.Spans {
		byName := map[string][]*Span{}
		var order []string
		for _, c := range p.Children {
			if _, ok := byName[c.Name]; !ok {
				order = append(order, c.Name)
			}
			byName[c.Name] = append(byName[c.Name], c)
		}
		for _, name := range order {
			if kids := byName[name]; len(kids) >= l.cfg.RepeatedSiblings {
				l.add(RuleRepeatedSiblings, SeverityWarning, kids[0].Service, fixRepeated, kids, 0,
					"%q has %d children named %q", p.Name, len(kids), name)
			}
		}
	}
}

// perSpan runs the rules that look at one span at a time.
func (l *linter) perSpan() {
	for _, s := range l.t.Spans {
		l.attributes(s)
		l.naming(s)
		l.status(s)
	}
}

// stacktraceKey is exempt from the size limit: a stack trace is long by
// nature, and the semantic conventions put it in an exception event.
const stacktraceKey = "exception.stacktrace"

func (l *linter) attributes(s *Span) {
	check := func(where, key string, size int) {
		if size > l.cfg.MaxAttributeBytes && key != stacktraceKey {
			l.add(RuleOversizedAttribute, SeverityWarning, s.Service, fixOversized, []*Span{s}, 0,
				"%s %q on span %q is %d bytes (limit %d)", where, key, s.Name, size, l.cfg.MaxAttributeBytes)
		}
	}
	for _, kv := range s.Raw.GetAttributes() {
		check("attribute", kv.GetKey(), valueSize(kv.GetValue()))
	}
	for _, ev := range s.Raw.GetEvents() {
		for _, kv := range ev.GetAttributes() {
			check("event "+strconv.Quote(ev.GetName())+" attribute", kv.GetKey(), valueSize(kv.GetValue()))
		}
	}
	if missing, family := missingSemconv(s); len(missing) > 0 {
		l.add(RuleMissingSemconv, SeverityWarning, s.Service, fixSemconv, []*Span{s}, 0,
			"%s span %q lacks %s", family, s.Name, strings.Join(missing, ", "))
	}
}

// missingSemconv decides a span's convention family from its kind and the
// convention attributes it does carry, then lists the required ones it
// lacks. An INTERNAL span with an http.* attribute is not an HTTP span: the
// guide's own notify_external_service records the call's status that way.
func missingSemconv(s *Span) (missing []string, family string) {
	hasPrefix := func(prefixes ...string) bool {
		for _, kv := range s.Raw.GetAttributes() {
			for _, p := range prefixes {
				if strings.HasPrefix(kv.GetKey(), p) {
					return true
				}
			}
		}
		return false
	}
	need := func(label string, keys ...string) {
		if s.firstAttr(keys...) == "" {
			missing = append(missing, label)
		}
	}
	remote := s.Kind == kindClient || s.Kind == kindServer
	switch {
	case (remote || s.Kind == kindProducer || s.Kind == kindConsumer) && hasPrefix("messaging."):
		family = "messaging"
		need("messaging.system", keysMsgSystem...)
	case remote && hasPrefix("rpc."):
		family = "RPC"
		need("rpc.system", keysRPCSystem...)
	case s.Kind == kindClient && hasPrefix("db."):
		family = "database"
		need("db.system", keysDBSystem...)
	case remote && hasPrefix("http.", "url."):
		family = "HTTP"
		need("http.request.method", keysHTTPMethod...)
		// A request that failed before any response has error.type instead.
		if s.StringAttr("error.type") == "" {
			need("http.response.status_code", keysHTTPStatus...)
		}
		if s.Kind == kindServer {
			need("http.route or url.path", keysHTTPRoute...)
		} else {
			need("url.full", append(slices.Clone(keysHTTPURL), keysHTTPRoute...)...)
		}
	}
	return missing, family
}

var (
	reUUID    = regexp.MustCompile(`(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	reEmail   = regexp.MustCompile(`[^\s@/]+@[^\s@/]+\.[a-z]{2,}`)
	rePathNum = regexp.MustCompile(`/(\d+)(?:$|[/?])`)
	reHTTP    = regexp.MustCompile(`^(?:GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|QUERY|_OTHER|HTTP)(?: /\S*)?$`)
	reRPC     = regexp.MustCompile(`^[\w.]+/\w+$`)
)

// idInName returns the part of name that looks like an identifier: a UUID,
// an e-mail address, a number standing as a path segment, a word of three
// digits or more (user_5678), or a hex word of twelve characters or more
// with a digit in it (a span or object ID). Short numbers elsewhere are
// left alone: v1, oauth2, http2 are names, not IDs.
func idInName(name string) string {
	if m := reUUID.FindString(name); m != "" {
		return m
	}
	if m := reEmail.FindString(name); m != "" {
		return m
	}
	if m := rePathNum.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	words := strings.FieldsFunc(name, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
	})
	for _, w := range words {
		digits, hexdigits := 0, 0
		for _, r := range w {
			switch {
			case '0' <= r && r <= '9':
				digits++
				hexdigits++
			case 'a' <= r && r <= 'f', 'A' <= r && r <= 'F':
				hexdigits++
			}
		}
		if digits == len(w) && digits >= 3 || hexdigits == len(w) && len(w) >= 12 && digits > 0 {
			return w
		}
	}
	return ""
}

// freeTextWords is the number of words from which a name reads as text
// rather than as an operation: semantic-convention names have at most
// three ("SELECT shop.orders", "publish orders").
const freeTextWords = 4

func (l *linter) naming(s *Span) {
	if id := idInName(s.Name); id != "" {
		l.add(RuleIDInName, SeverityWarning, s.Service, fixIDInName, []*Span{s}, 0,
			"span name %q contains an identifier (%s)", s.Name, id)
		return
	}
	if len(strings.Fields(s.Name)) >= freeTextWords || strings.ContainsAny(s.Name, "'\"") {
		l.add(RuleFreeTextName, SeverityWarning, s.Service, fixFreeText, []*Span{s}, 0,
			"span name %q reads as free text", s.Name)
		return
	}
	if l.cfg.SpanName.MatchString(s.Name) || conventionalName(s) {
		return
	}
	l.add(RuleNamingConvention, SeverityInfo, s.Service, fixNaming, []*Span{s}, 0,
		"span name %q is neither {verb}_{noun} nor {component}.{operation}", s.Name)
}

// conventionalName accepts the names the semantic conventions prescribe,
// which follow their own patterns: HTTP "METHOD /route" (or "METHOD" when
// no route is known), database "operation target", RPC "service/method",
// messaging "operation destination".
func conventionalName(s *Span) bool {
	first, _, _ := strings.Cut(s.Name, " ")
	switch {
	case s.firstAttr(keysHTTPMethod...) != "":
		return reHTTP.MatchString(s.Name)
	case s.firstAttr(keysDBSystem...) != "":
		op := s.firstAttr(keysDBOperation...)
		return (op != "" && strings.EqualFold(first, op)) || s.Name == s.firstAttr(keysDBSystem...)
	case s.firstAttr(keysRPCSystem...) != "":
		return reRPC.MatchString(s.Name)
	case s.firstAttr(keysMsgSystem...) != "":
		switch strings.ToLower(first) {
		case "publish", "create", "send", "receive", "process", "settle", "deliver":
			return true
		}
	}
	return false
}

// status checks that errors explain themselves. An error without a
// description is fine when something else on the span explains it: an
// exception event (the guide's process_single_task does exactly that), an
// HTTP status code of 400 or more, or error.type.
func (l *linter) status(s *Span) {
	var exc *tracepb.Span_Event
	for _, ev := range s.Raw.GetEvents() {
		if ev.GetName() == "exception" {
			exc = ev
			break
		}
	}
	st := s.Raw.GetStatus()
	switch st.GetCode() {
	case tracepb.Status_STATUS_CODE_ERROR:
		code, _ := strconv.Atoi(s.firstAttr(keysHTTPStatus...))
		if st.GetMessage() == "" && exc == nil && code < 400 && s.StringAttr("error.type") == "" {
			l.add(RuleErrorNoMessage, SeverityWarning, s.Service, fixErrorNoMessage, []*Span{s}, 0,
				"span %q has error status without a description", s.Name)
		}
	case tracepb.Status_STATUS_CODE_OK:
		if exc != nil {
			// Explicitly OK after an exception usually means it was handled.
			l.add(RuleExceptionNoError, SeverityInfo, s.Service, fixExceptionStatus, []*Span{s}, 0,
				"span %q recorded an exception (%s) but its status is OK", s.Name, exceptionType(exc))
		}
	default:
		if exc != nil {
			l.add(RuleExceptionNoError, SeverityWarning, s.Service, fixExceptionStatus, []*Span{s}, 0,
				"span %q recorded an exception (%s) but its status is not error", s.Name, exceptionType(exc))
		}
	}
}

func exceptionType(ev *tracepb.Span_Event) string {
	for _, kv := range ev.GetAttributes() {
		if kv.GetKey() == "exception.type" {
			return valueString(kv.GetValue())
		}
	}
	return "unknown type"
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func names(spans []*Span, n int) string {
	var parts []string
	for _, s := range spans[:min(n, len(spans))] {
		parts = append(parts, strconv.Quote(s.Name))
	}
	if len(spans) > n {
		parts = append(parts, "...")
	}
	return strings.Join(parts, ", ")
}

func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			strings.Compare(a.TraceID, b.TraceID),
			strings.Compare(a.Rule, b.Rule),
			strings.Compare(first(a.SpanIDs), first(b.SpanIDs)),
			strings.Compare(a.Message, b.Message),
		)
	})
}

func first(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}
