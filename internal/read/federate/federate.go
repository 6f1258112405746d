// Package federate answers a read of several tenants at once (X-Scope-OrgID "a|b", Tempo's
// cross-tenant query) from each tenant's own answer to the same request.
//
// Merging answers rather than data keeps tenants apart in storage and query code: each tenant's
// answer is computed by its own core exactly as a single-tenant read, and only the shapes are
// joined here. The price is that only what can be joined from answers is federated: lists are
// unions, counts are sums, a trace by ID is the first tenant holding it, and TraceQL metrics are
// joined series by series when their function allows it (rate, count, sum, min, max,
// histogram). Answers that cannot be joined exactly (quantiles, averages, topk, a statistical
// comparison, a diff of two traces) are refused with a clear message rather than approximated.
package federate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
)

// Answer is one HTTP answer: a tenant's, or the merged one.
type Answer struct {
	Code   int
	Header http.Header
	Body   []byte
}

// PartialHeader marks an answer as partial (package partial's header); a merged answer is partial
// when any tenant's was.
const PartialHeader = "X-Ariadne-Partial"

// kind is how a route's answers join.
type kind int

const (
	refuse      kind = iota
	byID             // the first tenant that has the trace
	tempoSearch      // traces newest first, up to limit
	union            // lists joined without duplicates, numbers summed
	metrics          // TraceQL metrics series joined by labels
	dependencies
	serviceGraph
	operations // Ariadne's per-operation RED summary
	lints
	first       // the same for every tenant (Jaeger's min step)
	jaegerCalls // Jaeger's calls per second, summed per series and timestamp
)

// kindOf is how answers to path join, and why not when they cannot.
func kindOf(path string) (kind, string) {
	p := strings.TrimPrefix(path, "/jaeger")
	switch {
	case strings.HasPrefix(p, "/api/traces/") || strings.HasPrefix(p, "/api/v2/traces/") ||
		strings.HasPrefix(p, "/api/v3/traces/") || strings.HasPrefix(p, "/api/analysis/traces/"):
		return byID, ""
	case p == "/api/search":
		return tempoSearch, ""
	case p == "/api/search/tags", p == "/api/v2/search/tags",
		strings.HasPrefix(p, "/api/search/tag/"), strings.HasPrefix(p, "/api/v2/search/tag/"),
		p == "/api/services", p == "/api/operations", p == "/api/traces",
		p == "/api/v3/services", p == "/api/v3/operations", p == "/api/v3/traces", p == "/api/v3/trace-summaries":
		return union, ""
	case strings.HasPrefix(p, "/api/services/") && strings.HasSuffix(p, "/operations"):
		if strings.HasPrefix(path, "/jaeger") {
			return union, ""
		}
		return operations, ""
	case p == "/api/metrics/query_range", p == "/api/metrics/query":
		return metrics, ""
	case p == "/api/dependencies", p == "/api/v3/dependencies":
		return dependencies, ""
	case p == "/api/servicegraph":
		return serviceGraph, ""
	case p == "/api/analysis/lints":
		return lints, ""
	case p == "/api/metrics/minstep":
		return first, ""
	case p == "/api/analysis/diff":
		return refuse, "a diff compares two traces by ID: ask the tenant holding them"
	case p == "/api/analysis/compare":
		return refuse, "a comparison's statistics cannot be joined from each tenant's: ask each tenant"
	case p == "/api/metrics/calls":
		return jaegerCalls, ""
	case strings.HasPrefix(p, "/api/metrics/"):
		return refuse, "Jaeger's latencies and error rates cannot be joined from each tenant's: ask each tenant"
	}
	return refuse, "this endpoint is answered for one tenant at a time"
}

// Federated reports whether answers to path can be joined; when not, why.
func Federated(path string) (bool, string) {
	k, why := kindOf(path)
	return k != refuse, why
}

// Merge joins the tenants' answers to r, in the order the tenants were named.
func Merge(r *http.Request, answers []Answer) Answer {
	k, why := kindOf(r.URL.Path)
	if k == refuse {
		return plain(http.StatusBadRequest, "federated reads (X-Scope-OrgID a|b) are not answered here: "+why)
	}
	if k == byID {
		// A trace ID is the sender's: two tenants holding the same ID is a collision, not one
		// trace. The first tenant (in the order named) that has it answers.
		for _, a := range answers {
			if a.Code != http.StatusNotFound {
				return a
			}
		}
		return answers[0]
	}
	// An error from any tenant (a bad query, a timeout, 429) is the answer: a join of some
	// tenants would look complete.
	for _, a := range answers {
		if a.Code != http.StatusOK {
			return a
		}
	}
	if k == first {
		return answers[0]
	}
	docs := make([]map[string]any, len(answers))
	for i, a := range answers {
		d := json.NewDecoder(bytes.NewReader(a.Body))
		d.UseNumber()
		if err := d.Decode(&docs[i]); err != nil {
			return plain(http.StatusInternalServerError, fmt.Sprintf("federated read: a tenant's answer does not decode: %v", err))
		}
	}
	var out any
	var err error
	switch k {
	case tempoSearch:
		out = mergeSearch(docs, limitParam(r, 20))
	case union:
		m := docs[0]
		for _, d := range docs[1:] {
			m = unionValue("", m, d).(map[string]any)
		}
		if data, ok := m["data"].([]any); ok {
			// Jaeger's v1 answers: total is the data's length, limit as asked.
			if l := limitParam(r, 0); l > 0 && len(data) > l {
				m["data"] = data[:l]
			}
			m["total"] = len(m["data"].([]any))
		}
		out = m
	case metrics:
		out, err = mergeMetrics(r, docs)
	case dependencies:
		out = mergeDependencies(docs)
	case serviceGraph:
		out = mergeServiceGraph(docs)
	case operations:
		out = mergeOperations(docs)
	case lints:
		out = mergeLints(docs)
	case jaegerCalls:
		out = mergeJaegerCalls(docs)
	}
	if err != nil {
		return plain(http.StatusBadRequest, err.Error())
	}
	body, merr := json.Marshal(out)
	if merr != nil {
		return plain(http.StatusInternalServerError, "federated read: "+merr.Error())
	}
	h := http.Header{"Content-Type": {"application/json"}}
	var partial []string
	for _, a := range answers {
		if v := a.Header.Get(PartialHeader); v != "" {
			partial = append(partial, v)
		}
	}
	if len(partial) > 0 {
		h.Set(PartialHeader, strings.Join(partial, "; "))
	}
	return Answer{Code: http.StatusOK, Header: h, Body: body}
}

func plain(code int, msg string) Answer {
	return Answer{Code: code, Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, Body: []byte(msg + "\n")}
}

func limitParam(r *http.Request, def int) int {
	if l, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && l > 0 {
		return l
	}
	return def
}

// unionValue joins b into a: objects key by key, lists without duplicates (Tempo's v2 tag
// scopes by name), numbers summed (counts, inspected bytes), other scalars a's.
func unionValue(key string, a, b any) any {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			return a
		}
		for k, v := range bv {
			if x, has := av[k]; has {
				av[k] = unionValue(k, x, v)
			} else {
				av[k] = v
			}
		}
		return av
	case []any:
		bv, ok := b.([]any)
		if !ok {
			return a
		}
		if key == "scopes" {
			return unionByName(av, bv)
		}
		seen := map[string]bool{}
		for _, x := range av {
			seen[canonical(x)] = true
		}
		for _, x := range bv {
			if c := canonical(x); !seen[c] {
				seen[c] = true
				av = append(av, x)
			}
		}
		sortStrings(av)
		return av
	case json.Number:
		if bn, ok := b.(json.Number); ok {
			return addNumbers(av, bn)
		}
	case string:
		// Tempo's inspected counts are 64-bit integers, written as strings in proto3 JSON.
		if bs, ok := b.(string); ok && strings.HasPrefix(key, "inspected") {
			x, errA := strconv.ParseInt(av, 10, 64)
			y, errB := strconv.ParseInt(bs, 10, 64)
			if errA == nil && errB == nil {
				return strconv.FormatInt(x+y, 10)
			}
		}
	}
	return a
}

func unionByName(a, b []any) []any {
	idx := map[string]int{}
	for i, x := range a {
		if m, ok := x.(map[string]any); ok {
			idx[fmt.Sprint(m["name"])] = i
		}
	}
	for _, x := range b {
		m, ok := x.(map[string]any)
		if !ok {
			continue
		}
		if i, has := idx[fmt.Sprint(m["name"])]; has {
			a[i] = unionValue("", a[i], m)
		} else {
			idx[fmt.Sprint(m["name"])] = len(a)
			a = append(a, m)
		}
	}
	return a
}

// sortStrings sorts a list of strings (tag names, values, services); other lists keep their order.
func sortStrings(l []any) {
	for _, x := range l {
		if _, ok := x.(string); !ok {
			return
		}
	}
	sort.Slice(l, func(i, j int) bool { return l[i].(string) < l[j].(string) })
}

func canonical(v any) string {
	b, _ := json.Marshal(v) // maps marshal with sorted keys
	return string(b)
}

func addNumbers(a, b json.Number) json.Number {
	if ai, err := a.Int64(); err == nil {
		if bi, err := b.Int64(); err == nil {
			return json.Number(strconv.FormatInt(ai+bi, 10))
		}
	}
	af, _ := a.Float64()
	bf, _ := b.Float64()
	return json.Number(strconv.FormatFloat(af+bf, 'g', -1, 64))
}

func num(v any) float64 {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case string:
		f, _ := strconv.ParseFloat(x, 64)
		return f
	case float64:
		return x
	}
	return 0
}

func list(m map[string]any, key string) []any {
	l, _ := m[key].([]any)
	return l
}

// mergeSearch joins Tempo search answers: traces newest first, up to limit.
func mergeSearch(docs []map[string]any, limit int) map[string]any {
	traces := []any{}
	for _, d := range docs {
		traces = append(traces, list(d, "traces")...)
	}
	start := func(t any) float64 {
		m, _ := t.(map[string]any)
		return num(m["startTimeUnixNano"])
	}
	sort.SliceStable(traces, func(i, j int) bool { return start(traces[i]) > start(traces[j]) })
	if len(traces) > limit {
		traces = traces[:limit]
	}
	out := map[string]any{"traces": traces}
	if m, ok := docs[0]["metrics"]; ok {
		for _, d := range docs[1:] {
			m = unionValue("metrics", m, d["metrics"])
		}
		out["metrics"] = m
	}
	return out
}

// mergeMetrics joins TraceQL metrics answers series by series (equal labels), sample by sample
// (equal timestamps), with the operation the query's function allows.
func mergeMetrics(r *http.Request, docs []map[string]any) (map[string]any, error) {
	q, err := traceql.Parse(r.URL.Query().Get("q"))
	if err == nil && q.Math != nil {
		return nil, fmt.Errorf("federated reads (X-Scope-OrgID a|b) do not join metrics arithmetic: ask each tenant")
	}
	if err != nil || q.Metrics == nil {
		return nil, fmt.Errorf("invalid TraceQL metrics query") // each tenant would have refused it first
	}
	var op func(a, b float64) float64
	switch q.Metrics.Func {
	case traceql.MetricsRate, traceql.MetricsCountOverTime, traceql.MetricsSumOverTime, traceql.MetricsHistogramOverTime:
		op = func(a, b float64) float64 { return a + b }
	case traceql.MetricsMinOverTime:
		op = func(a, b float64) float64 { return min(a, b) }
	case traceql.MetricsMaxOverTime:
		op = func(a, b float64) float64 { return max(a, b) }
	}
	if op == nil || len(q.MetricsStages) > 0 {
		return nil, fmt.Errorf("federated reads (X-Scope-OrgID a|b) join rate, count_over_time, sum_over_time, min_over_time, max_over_time " +
			"and histogram_over_time without thresholds or topk; quantiles, averages and rankings cannot be joined from each tenant's answer: ask each tenant")
	}
	var order []string
	series := map[string]map[string]any{}
	for _, d := range docs {
		for _, s := range list(d, "series") {
			sm, ok := s.(map[string]any)
			if !ok {
				continue
			}
			key := canonical(sm["labels"])
			cur, has := series[key]
			if !has {
				series[key] = sm
				order = append(order, key)
				continue
			}
			if v, ok := sm["value"]; ok {
				cur["value"] = op(num(cur["value"]), num(v))
			}
			cur["samples"] = mergeSamples(list(cur, "samples"), list(sm, "samples"), op)
			if ex := list(sm, "exemplars"); len(ex) > 0 {
				cur["exemplars"] = append(list(cur, "exemplars"), ex...)
			}
		}
	}
	outSeries := make([]any, 0, len(order))
	for _, k := range order {
		outSeries = append(outSeries, series[k])
	}
	out := map[string]any{"series": outSeries}
	var m any
	for _, d := range docs {
		if m == nil {
			m = d["metrics"]
		} else {
			m = unionValue("metrics", m, d["metrics"])
		}
		if d["status"] != nil {
			out["status"], out["message"] = d["status"], d["message"]
		}
	}
	if m != nil {
		out["metrics"] = m
	}
	return out, nil
}

func mergeSamples(a, b []any, op func(a, b float64) float64) []any {
	at := map[string]map[string]any{}
	for _, s := range a {
		if m, ok := s.(map[string]any); ok {
			at[fmt.Sprint(m["timestampMs"])] = m
		}
	}
	for _, s := range b {
		m, ok := s.(map[string]any)
		if !ok {
			continue
		}
		ts := fmt.Sprint(m["timestampMs"])
		if cur, has := at[ts]; has {
			cur["value"] = op(num(cur["value"]), num(m["value"]))
		} else {
			at[ts] = m
			a = append(a, m)
		}
	}
	sort.SliceStable(a, func(i, j int) bool {
		return num(a[i].(map[string]any)["timestampMs"]) < num(a[j].(map[string]any)["timestampMs"])
	})
	return a
}

// mergeDependencies sums call counts by parent and child, in Jaeger's v1 ({"data": [...]}) and
// v3 ({"dependencies": [...]}, counts as strings) shapes.
func mergeDependencies(docs []map[string]any) map[string]any {
	key := "data"
	if _, ok := docs[0]["data"]; !ok {
		key = "dependencies"
	}
	_, asString := firstCallCount(docs, key)
	var order []string
	byPair := map[string]map[string]any{}
	for _, d := range docs {
		for _, x := range list(d, key) {
			m, ok := x.(map[string]any)
			if !ok {
				continue
			}
			k := fmt.Sprint(m["parent"]) + "\x00" + fmt.Sprint(m["child"])
			if cur, has := byPair[k]; has {
				n := num(cur["callCount"]) + num(m["callCount"])
				if asString {
					cur["callCount"] = strconv.FormatFloat(n, 'f', -1, 64)
				} else {
					cur["callCount"] = n
				}
				continue
			}
			byPair[k] = m
			order = append(order, k)
		}
	}
	deps := make([]any, 0, len(order))
	for _, k := range order {
		deps = append(deps, byPair[k])
	}
	out := docs[0]
	out[key] = deps
	if _, ok := out["total"]; ok {
		out["total"] = len(deps)
	}
	return out
}

func firstCallCount(docs []map[string]any, key string) (any, bool) {
	for _, d := range docs {
		for _, x := range list(d, key) {
			if m, ok := x.(map[string]any); ok {
				_, s := m["callCount"].(string)
				return m["callCount"], s
			}
		}
	}
	return nil, false
}

// mergeServiceGraph joins nodes by name and edges by client, server and connection type:
// requests, failures and rates add up; a p95 becomes the larger of the tenants', an upper bound
// on the joined traffic's.
func mergeServiceGraph(docs []map[string]any) map[string]any {
	out := map[string]any{}
	nodes := map[string]bool{}
	var nodeList, edgeList []any
	edges := map[string]map[string]any{}
	since := 0.0
	for i, d := range docs {
		if s := num(d["sinceUnix"]); i == 0 || s < since {
			since = s
		}
		for _, n := range list(d, "nodes") {
			if m, ok := n.(map[string]any); ok && !nodes[fmt.Sprint(m["name"])] {
				nodes[fmt.Sprint(m["name"])] = true
				nodeList = append(nodeList, m)
			}
		}
		for _, e := range list(d, "edges") {
			m, ok := e.(map[string]any)
			if !ok {
				continue
			}
			k := fmt.Sprint(m["client"], "\x00", m["server"], "\x00", m["connectionType"])
			cur, has := edges[k]
			if !has {
				edges[k] = m
				edgeList = append(edgeList, m)
				continue
			}
			req, failed := num(cur["requests"])+num(m["requests"]), num(cur["failed"])+num(m["failed"])
			cur["requests"], cur["failed"] = req, failed
			cur["ratePerSecond"] = num(cur["ratePerSecond"]) + num(m["ratePerSecond"])
			if req > 0 {
				cur["errorShare"] = failed / req
			}
			cur["clientP95Nanos"] = max(num(cur["clientP95Nanos"]), num(m["clientP95Nanos"]))
			cur["serverP95Nanos"] = max(num(cur["serverP95Nanos"]), num(m["serverP95Nanos"]))
		}
	}
	if nodeList == nil {
		nodeList = []any{}
	}
	if edgeList == nil {
		edgeList = []any{}
	}
	for k, v := range docs[0] {
		out[k] = v
	}
	out["sinceUnix"], out["nodes"], out["edges"] = int64(since), nodeList, edgeList
	return out
}

// mergeOperations joins Ariadne's per-operation summaries of one service by span name and kind:
// calls, errors and rates add up, the average is weighted by calls, and p50 and p95 become the
// larger of the tenants' (upper bounds on the joined traffic's).
func mergeOperations(docs []map[string]any) map[string]any {
	out := docs[0]
	var order []any
	ops := map[string]map[string]any{}
	for _, d := range docs {
		if s := num(d["sinceUnix"]); s < num(out["sinceUnix"]) {
			out["sinceUnix"] = d["sinceUnix"]
		}
		for _, o := range list(d, "operations") {
			m, ok := o.(map[string]any)
			if !ok {
				continue
			}
			k := fmt.Sprint(m["spanName"], "\x00", m["spanKind"])
			cur, has := ops[k]
			if !has {
				ops[k] = m
				order = append(order, m)
				continue
			}
			c1, c2 := num(cur["calls"]), num(m["calls"])
			calls, errs := c1+c2, num(cur["errors"])+num(m["errors"])
			if calls > 0 {
				cur["avgNanos"] = int64((num(cur["avgNanos"])*c1 + num(m["avgNanos"])*c2) / calls)
				cur["errorShare"] = errs / calls
			}
			cur["calls"], cur["errors"] = calls, errs
			cur["ratePerSecond"] = num(cur["ratePerSecond"]) + num(m["ratePerSecond"])
			cur["p50Nanos"] = max(num(cur["p50Nanos"]), num(m["p50Nanos"]))
			cur["p95Nanos"] = max(num(cur["p95Nanos"]), num(m["p95Nanos"]))
		}
	}
	if order == nil {
		order = []any{}
	}
	out["operations"] = order
	return out
}

// mergeLints joins lint reports: traces examined add up; a service named by several tenants
// gets their findings added up, rule by rule. Rules that look across traces ran within each
// tenant, since one trace never spans tenants.
func mergeLints(docs []map[string]any) map[string]any {
	examined := 0.0
	var order []any
	services := map[string]map[string]any{}
	for _, d := range docs {
		examined += num(d["tracesExamined"])
		for _, s := range list(d, "services") {
			m, ok := s.(map[string]any)
			if !ok {
				continue
			}
			name := fmt.Sprint(m["service"])
			cur, has := services[name]
			if !has {
				services[name] = m
				order = append(order, m)
				continue
			}
			cur["findings"] = num(cur["findings"]) + num(m["findings"])
			rules := map[string]map[string]any{}
			for _, r := range list(cur, "rules") {
				if rm, ok := r.(map[string]any); ok {
					rules[fmt.Sprint(rm["rule"])] = rm
				}
			}
			for _, r := range list(m, "rules") {
				rm, ok := r.(map[string]any)
				if !ok {
					continue
				}
				if have, ok := rules[fmt.Sprint(rm["rule"])]; ok {
					for _, f := range []string{"findings", "count", "traces"} {
						if _, present := have[f]; present {
							have[f] = num(have[f]) + num(rm[f])
						}
					}
					continue
				}
				cur["rules"] = append(list(cur, "rules"), rm)
			}
		}
	}
	if order == nil {
		order = []any{}
	}
	return map[string]any{"tracesExamined": int64(examined), "services": order}
}

// mergeJaegerCalls joins Jaeger Monitor call rates ({"metrics": [{labels, metricPoints}]}):
// series with equal labels add up timestamp by timestamp (a gap, null, adds nothing).
func mergeJaegerCalls(docs []map[string]any) map[string]any {
	out := docs[0]
	var order []string
	series := map[string]map[string]any{}
	for _, d := range docs {
		for _, m := range list(d, "metrics") {
			sm, ok := m.(map[string]any)
			if !ok {
				continue
			}
			key := canonical(sm["labels"])
			cur, has := series[key]
			if !has {
				series[key] = sm
				order = append(order, key)
				continue
			}
			at := map[string]map[string]any{}
			points := list(cur, "metricPoints")
			for _, p := range points {
				if pm, ok := p.(map[string]any); ok {
					at[fmt.Sprint(pm["timestamp"])] = pm
				}
			}
			for _, p := range list(sm, "metricPoints") {
				pm, ok := p.(map[string]any)
				if !ok {
					continue
				}
				have, ok := at[fmt.Sprint(pm["timestamp"])]
				if !ok {
					points = append(points, pm)
					continue
				}
				hv, _ := have["gaugeValue"].(map[string]any)
				pv, _ := pm["gaugeValue"].(map[string]any)
				if hv == nil || pv == nil || pv["doubleValue"] == nil {
					continue
				}
				if hv["doubleValue"] == nil {
					hv["doubleValue"] = pv["doubleValue"]
				} else {
					hv["doubleValue"] = num(hv["doubleValue"]) + num(pv["doubleValue"])
				}
			}
			cur["metricPoints"] = points
		}
	}
	merged := make([]any, 0, len(order))
	for _, k := range order {
		merged = append(merged, series[k])
	}
	out["metrics"] = merged
	return out
}
