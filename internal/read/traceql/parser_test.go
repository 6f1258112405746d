package traceql

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseCase is a valid query and its canonical form ("" when the input is
// already canonical), or an invalid one with the error's "line:col" and a
// substring of its message.
type parseCase struct {
	in     string
	want   string
	errPos string
	errMsg string
}

func ok(in string) parseCase            { return parseCase{in: in} }
func canon(in, want string) parseCase   { return parseCase{in: in, want: want} }
func bad(in, pos, msg string) parseCase { return parseCase{in: in, errPos: pos, errMsg: msg} }
func (c parseCase) isErr() bool         { return c.errPos != "" }
func (c parseCase) canonical() string   { return cmp.Or(c.want, c.in) }

var parseCases = []parseCase{
	// Spansets.
	ok(`{ }`),
	canon(`{}`, `{ }`),
	canon(`  {   }  `, `{ }`),
	ok(`{ true }`),
	ok(`{ false }`),
	ok(`{ name = "GET /" }`),
	canon(`{name="GET /"}`, `{ name = "GET /" }`),
	canon("{\n  name = \"x\"\n}", `{ name = "x" }`),

	// The guide's queries.
	ok(`{ resource.service.name = "task-api" && status = error }`),
	ok(`{ span.db.system = "mongodb" && name = "pymongo.insert_one" && duration > 100ms }`),
	ok(`{ rootName = "POST /api/tasks" } >> { span.db.system = "mongodb" }`),
	ok(`{ } | count() > 5`),
	ok(`{ status = error } | by(resource.service.name)`),
	canon(`{ } | quantile_over_time(duration, .5, .95, .99) by (resource.service.name)`,
		`{ } | quantile_over_time(duration, 0.5, 0.95, 0.99) by (resource.service.name)`),

	// Field expressions: && binds tighter than ||; parentheses survive only
	// where needed.
	ok(`{ .a = 1 || .b = 2 && .c = 3 }`),
	canon(`{ (.a = 1 || .b = 2) && .c = 3 }`, `{ (.a = 1 || .b = 2) && .c = 3 }`),
	canon(`{ (.a = 1 && .b = 2) || .c = 3 }`, `{ .a = 1 && .b = 2 || .c = 3 }`),
	canon(`{ ((name = "x")) }`, `{ name = "x" }`),
	canon(`{ .a = 1 && (.b = 2 && .c = 3) }`, `{ .a = 1 && (.b = 2 && .c = 3) }`),
	canon(`{ (.a = 1 && .b = 2) && .c = 3 }`, `{ .a = 1 && .b = 2 && .c = 3 }`),
	canon(`{ span.cache_hit }`, `{ span.cache_hit = true }`),
	canon(`{ !span.cache_hit }`, `{ !(span.cache_hit = true) }`),
	canon(`{ .a && .b }`, `{ .a = true && .b = true }`),
	ok(`{ !(name = "x") }`),
	ok(`{ !true }`),
	ok(`{ (name = "x") = true }`),
	ok(`{ (.a = 1) != (.b = 2) }`),

	// Spanset expressions.
	ok(`{ .a = 1 } && { .b = 2 }`),
	ok(`{ .a = 1 } || { .b = 2 }`),
	ok(`({ .a = 1 } || { .b = 2 }) && { .c = 3 }`),
	canon(`({ .a = 1 } && { .b = 2 }) || { .c = 3 }`, `{ .a = 1 } && { .b = 2 } || { .c = 3 }`),
	ok(`{ .a = 1 } || { .b = 2 } && { .c = 3 }`),
	canon(`(({ }))`, `{ }`),

	// Structural operators.
	ok(`{ } >> { }`),
	ok(`{ } > { }`),
	ok(`{ } ~ { }`),
	ok(`{ } << { }`),
	ok(`{ } < { }`),
	ok(`{ } !>> { }`),
	ok(`{ } !> { }`),
	ok(`{ } !~ { }`),
	ok(`{ } !<< { }`),
	ok(`{ } !< { }`),
	ok(`{ } &>> { }`),
	ok(`{ } &> { }`),
	ok(`{ } &~ { }`),
	ok(`{ } &<< { }`),
	ok(`{ } &< { }`),
	canon(`{}>>{}`, `{ } >> { }`),
	ok(`{ .a = 1 } >> { .b = 2 } >> { .c = 3 }`),
	ok(`{ .a = 1 } >> ({ .b = 2 } > { .c = 3 })`),
	canon(`({ .a = 1 } >> { .b = 2 }) > { .c = 3 }`, `{ .a = 1 } >> { .b = 2 } > { .c = 3 }`),
	ok(`{ .a = 1 } >> { .b = 2 } && { .c = 3 } ~ { .d = 4 }`),
	ok(`({ .a = 1 } && { .b = 2 }) >> { .c = 3 }`),

	// Intrinsics, with aliases normalised.
	ok(`{ name = "x" }`),
	canon(`{ span:name = "x" }`, `{ name = "x" }`),
	ok(`{ status = ok }`),
	ok(`{ status != unset }`),
	canon(`{ span:status = error }`, `{ status = error }`),
	ok(`{ statusMessage = "boom" }`),
	canon(`{ span:statusMessage =~ "time.*" }`, `{ statusMessage =~ "time.*" }`),
	ok(`{ kind = server }`),
	ok(`{ kind = client || kind = producer || kind = consumer || kind = internal || kind = unspecified }`),
	canon(`{ span:kind != internal }`, `{ kind != internal }`),
	canon(`{ span:duration >= 1s }`, `{ duration >= 1s }`),
	ok(`{ span:id = "0102030405060708" }`),
	ok(`{ span:parentID = "0102030405060708" }`),
	canon(`{ trace:rootName = "GET /" }`, `{ rootName = "GET /" }`),
	canon(`{ trace:rootService = "api" }`, `{ rootServiceName = "api" }`),
	ok(`{ rootServiceName = "api" }`),
	canon(`{ trace:duration > 2s }`, `{ traceDuration > 2s }`),
	ok(`{ traceDuration < 1m }`),
	ok(`{ trace:id = "00000000000000000000000000000001" }`),
	ok(`{ event:name = "exception" }`),
	ok(`{ event:timeSinceStart > 10ms }`),
	ok(`{ link:traceID = "ab" }`),
	ok(`{ link:spanID = "cd" }`),
	ok(`{ instrumentation:name = "otel" }`),
	ok(`{ instrumentation:version != "1.0" }`),

	// Attributes.
	ok(`{ span.http.request.method = "GET" }`),
	ok(`{ resource.service.name = "api" }`),
	ok(`{ event.exception.message =~ ".*timeout.*" }`),
	ok(`{ link.opentracing.ref_type = "follows_from" }`),
	ok(`{ instrumentation.otel.scope.x = 1 }`),
	ok(`{ .http.status_code = 200 }`),
	ok(`{ ."http status" = 200 }`),
	canon(`{ span."with space" = 1 }`, `{ span."with space" = 1 }`),
	canon(`{ span."plain" = 1 }`, `{ span.plain = 1 }`),
	canon(`{ span."tab\there" = 1 }`, `{ span."tab\there" = 1 }`),
	canon(`{ span."q\"uote" = 1 }`, `{ span."q\"uote" = 1 }`),
	ok(`{ span.foo-bar = 1 }`),
	ok(`{ span.http/route = "/x" }`),
	ok(`{ span.k8s:pod = "p" }`),
	ok(`{ .name = "attribute, not intrinsic" }`),
	ok(`{ span.status = 1 }`),
	ok(`{ ."5xx" = 1 }`),
	ok(`{ span.5xx = 1 }`),
	ok(`{ span.ünïcode = 1 }`),
	canon(`{ span.a-1 }`, `{ span.a-1 = true }`),
	ok(`{ span.a - 1 > 0 }`),
	ok(`{ span.x != nil }`),
	bad(`{ resource.service.name = nil }`, "1:25", `every resource has a service name`),
	bad(`{ nil = resource.service.name }`, "1:7", `every resource has a service name`),
	ok(`{ resource.service.name != nil }`),

	// Literals.
	canon("{ name = `raw \\d+` }", `{ name = "raw \\d+" }`),
	canon(`{ name = "a\nb\u00e9" }`, `{ name = "a\nbé" }`),
	ok(`{ .a = 0 }`),
	ok(`{ .a = -42 }`),
	canon(`{ .a = - 42 }`, `{ .a = -42 }`),
	canon(`{ .a = --42 }`, `{ .a = 42 }`),
	ok(`{ .a = 1.5 }`),
	canon(`{ .a = .25 }`, `{ .a = 0.25 }`),
	ok(`{ .a = -0.5 }`),
	ok(`{ .a = 3.0 }`),
	ok(`{ .a = 9223372036854775807 }`),
	ok(`{ .a = true }`),
	ok(`{ .a = false }`),
	ok(`{ duration > 100ms }`),
	ok(`{ duration > 1.5s }`),
	ok(`{ duration > 2m }`),
	ok(`{ duration > 1h }`),
	ok(`{ duration > 500us }`),
	canon(`{ duration > 500µs }`, `{ duration > 500us }`),
	canon(`{ duration > 500μs }`, `{ duration > 500us }`),
	ok(`{ duration > 10ns }`),
	canon(`{ duration > 1h30m }`, `{ duration > 90m }`),
	canon(`{ duration > 60s }`, `{ duration > 1m }`),
	canon(`{ duration > 1500ms }`, `{ duration > 1.5s }`),
	ok(`{ duration > 1m30.5s }`),
	ok(`{ duration > -1s }`),
	ok(`{ duration > 0s }`),
	ok(`{ duration > 100 }`),
	ok(`{ duration > 1.5 }`),

	// Comparisons and arithmetic.
	ok(`{ .a = 1 && .b != 1 && .c > 1 && .d >= 1 && .e < 1 && .f <= 1 }`),
	ok(`{ name =~ "GET.*" }`),
	ok(`{ name !~ "GET.*" }`),
	ok(`{ .a =~ "x" }`),
	ok(`{ name > "m" }`),
	ok(`{ span.a + span.b > 10 }`),
	ok(`{ span.a + span.b * 2 > 10 }`),
	ok(`{ (span.a + span.b) * 2 > 10 }`),
	ok(`{ span.a - (span.b - 1) > 0 }`),
	canon(`{ (span.a - span.b) - 1 > 0 }`, `{ span.a - span.b - 1 > 0 }`),
	ok(`{ span.a / 2 % 3 = 1 }`),
	ok(`{ 2 ^ 3 ^ 2 = span.a }`),
	ok(`{ (2 ^ 3) ^ 2 = span.a }`),
	ok(`{ -span.a > 0 }`),
	ok(`{ -(span.a + 1) > 0 }`),
	ok(`{ -span.a ^ 2 > 0 }`),
	ok(`{ duration - 1s > traceDuration / 2 }`),
	ok(`{ 1 = 1 }`),
	ok(`{ 5 < span.x }`),

	// Pipelines.
	ok(`{ } | count() > 2`),
	ok(`{ } | count() = 2.5`),
	ok(`{ } | avg(duration) > 100ms`),
	ok(`{ } | avg(duration) > 100`),
	ok(`{ } | min(duration) <= 1s`),
	ok(`{ } | max(span.http.response.size) >= 1024`),
	ok(`{ } | sum(span.bytes) != 0`),
	ok(`{ } | avg(span.a + span.b) < -1.5`),
	ok(`{ } | by(resource.service.name, name)`),
	ok(`{ } | by(span.a + 1)`),
	ok(`{ } | select(span.http.url, duration, resource.service.name)`),
	ok(`{ } | by(name) | coalesce()`),
	ok(`{ } | { span.x = 1 }`),
	ok(`{ } | { .a = 1 } >> { .b = 2 } | count() > 1`),
	ok(`{ status = error } | by(resource.service.name) | count() > 1 | select(name)`),
	canon(`{}|count()>2|by(name)`, `{ } | count() > 2 | by(name)`),

	// Metrics queries.
	ok(`{ } | rate()`),
	ok(`{ status = error } | rate() by (resource.service.name)`),
	ok(`{ } | count_over_time()`),
	ok(`{ } | min_over_time(duration)`),
	ok(`{ } | max_over_time(span.http.response.size)`),
	ok(`{ } | avg_over_time(duration) by (name, kind)`),
	ok(`{ } | sum_over_time(span.bytes)`),
	ok(`{ } | quantile_over_time(duration, 0.5)`),
	canon(`{ } | quantile_over_time(duration, 0, 1)`, `{ } | quantile_over_time(duration, 0.0, 1.0)`),
	ok(`{ } | histogram_over_time(duration)`),
	canon(`{ } | rate() by(resource.service.name)`, `{ } | rate() by (resource.service.name)`),
	ok(`{ } | by(name) | rate()`),

	// Hints.
	ok(`{ } | rate() with(sample=true)`),
	ok(`{ } with(sample=0.1, exemplars=5, label="x", window=5m)`),
	ok(`{ } | count() > 1 with(most_recent=true)`),

	// Errors: empty input and stray tokens.
	bad(``, "1:1", "empty query"),
	bad(`   `, "1:4", "empty query"),
	bad(`name = "x"`, "1:1", `expected "{" to start a spanset, found "name"`),
	bad(`{ } }`, "1:5", `unexpected "}" after the end of the query`),
	bad(`{ } { }`, "1:5", `unexpected "{" after the end of the query`),
	bad(`{ } garbage`, "1:5", `unexpected "garbage"`),
	bad(`{ } |`, "1:6", `expected a spanset, an aggregate or a function after "|", found end of query`),
	bad(`{ } | 5`, "1:7", `found "5"`),
	bad(`{ } >>`, "1:7", `expected a spanset "{ ... }" after ">>", found end of query`),
	bad(`{ } && name`, "1:8", `expected a spanset "{ ... }" after "&&", found "name"`),

	// Errors: unbalanced braces and parentheses.
	bad(`{`, "1:2", `expected a value after "{", found end of query`),
	bad(`{ name = "x"`, "1:13", `expected "}" to close the spanset at 1:1, found end of query`),
	bad(`{ name = "x" ]`, "1:14", `unexpected character ']'`),
	bad(`({ }`, "1:5", `expected ")" to close "(" at 1:1, found end of query`),
	bad(`{ } )`, "1:5", `unexpected ")"`),
	bad(`{ (name = "x" }`, "1:15", `expected ")" to close "(" at 1:3, found "}"`),
	bad(`{ name = "x") }`, "1:13", `expected "}" to close the spanset at 1:1, found ")"`),
	bad("{\n  name = }", "2:10", `expected a value after "=", found "}"`),

	// Errors: misplaced operators.
	bad(`{ status = }`, "1:12", `expected a value after "=", found "}"`),
	bad(`{ = 1 }`, "1:3", `expected a value after "{", found "="`),
	bad(`{ .a = 1 && }`, "1:13", `expected a value after "&&", found "}"`),
	bad(`{ .a = 1 = 2 }`, "1:10", "comparisons do not chain"),
	bad(`{ .a >> 1 }`, "1:6", `expected "}" to close the spanset at 1:1, found ">>"`),
	bad(`{ .a = 1 } = { }`, "1:12", `unexpected "="`),
	bad(`{ .a & .b }`, "1:6", `unexpected "&"`),
	bad(`{ } | count() { }`, "1:15", `expected a comparison`),
	bad(`{ } | count() =~ "x"`, "1:15", `expected a comparison`),
	bad(`{ .a = 1 } ~~ { }`, "1:13", `expected a spanset "{ ... }" after "~", found "~"`),

	// Errors: strings and names.
	bad(`{ name = "abc }`, "1:10", "unterminated string"),
	bad("{ name = `abc }", "1:10", "unterminated string"),
	bad(`{ name = "\d+" }`, "1:11", "invalid escape `\\d`"),
	bad(`{ span."unterminated = 1 }`, "1:8", "unterminated string"),
	bad(`{ span. = 1 }`, "1:3", `expected an attribute name after "span."`),
	bad(`{ . = 1 }`, "1:3", `expected an attribute name after "."`),
	bad(`{ span:foo = 1 }`, "1:3", `unknown intrinsic "span:foo"`),
	bad(`{ trace:name = "x" }`, "1:3", `unknown intrinsic "trace:name"`),
	bad(`{ span: = 1 }`, "1:3", `expected an intrinsic name after "span:"`),
	bad(`{ foo = 1 }`, "1:3", `unknown intrinsic "foo"; attributes need a scope, as in ".foo" or "span.foo"`),
	bad(`{ resource = 1 }`, "1:3", `unknown intrinsic "resource"`),
	bad(`{ name = "x" @ }`, "1:14", `unexpected character '@'`),

	// Errors: numbers and durations.
	bad(`{ duration > 10d }`, "1:14", `bad duration "10d"`),
	bad(`{ duration > 5sec }`, "1:14", `bad duration "5sec"`),
	bad(`{ duration > 1.5.3s }`, "1:14", `malformed number "1.5."`),
	bad(`{ .a = 1_000 }`, "1:8", `malformed number "1_"`),
	bad(`{ .a = 99999999999999999999 }`, "1:8", "integer 99999999999999999999 out of range"),
	bad(`{ .a = 5. }`, "1:8", `malformed number "5."`),

	// Errors: static types.
	bad(`{ duration = "x" }`, "1:12", `cannot compare duration with string "x"`),
	bad(`{ duration > "1s" }`, "1:12", `cannot compare duration with string "1s"`),
	bad(`{ status = 1 }`, "1:10", `cannot compare status with int 1`),
	bad(`{ status = "error" }`, "1:10", `cannot compare status with string "error"`),
	bad(`{ kind = error }`, "1:8", `cannot compare kind with status error`),
	bad(`{ kind = 2 }`, "1:8", `cannot compare kind with int 2`),
	bad(`{ name = 5 }`, "1:8", `cannot compare name (string) with int 5`),
	bad(`{ name = true }`, "1:8", `cannot compare name (string) with bool true`),
	bad(`{ status > ok }`, "1:10", `">" cannot order status values`),
	bad(`{ .a < true }`, "1:6", `"<" cannot order bool values`),
	bad(`{ .a = error }`, "1:6", `cannot compare attribute .a with status error`),
	bad(`{ .a = server }`, "1:6", `cannot compare attribute .a with kind server`),
	bad(`{ duration =~ "1s" }`, "1:3", `"=~" matches strings, found duration`),
	bad(`{ status !~ "err" }`, "1:3", `"!~" matches strings, found status`),
	bad(`{ 5 =~ "5" }`, "1:3", `"=~" matches strings, found int 5`),
	bad(`{ name =~ span.re }`, "1:11", `the right side of "=~" must be a string literal`),
	bad(`{ name =~ "a(" }`, "1:11", `invalid regular expression "a("`),
	bad(`{ name =~ "a)|(b" }`, "1:11", `invalid regular expression "a)|(b"`),
	bad(`{ name }`, "1:3", "expected a condition, found name (string)"),
	bad(`{ 1 }`, "1:3", "expected a condition, found int 1"),
	bad(`{ span.a + 1 }`, "1:3", "expected a condition, found attribute expression span.a + 1"),
	bad(`{ !name }`, "1:4", "expected a condition, found name (string)"),
	bad(`{ name = "x" && duration }`, "1:17", "expected a condition, found duration"),
	bad(`{ name + 1 > 0 }`, "1:3", `"+" needs numbers, found name (string)`),
	bad(`{ span.a * "x" > 0 }`, "1:12", `"*" needs numbers, found string "x"`),
	bad(`{ -name = "x" }`, "1:4", `cannot negate name (string)`),
	bad(`{ -"x" = "x" }`, "1:4", `cannot negate string "x"`),

	// Errors: pipelines.
	bad(`{ } | count(duration) > 1`, "1:13", `count() takes no arguments`),
	bad(`{ } | avg() > 1`, "1:11", `expected a value after "(", found ")"`),
	bad(`{ } | avg(name) > 1`, "1:11", `avg() needs a numeric field, found name (string)`),
	bad(`{ } | avg(5) > 1`, "1:11", `avg() needs a field, found int 5`),
	bad(`{ } | count() > "x"`, "1:17", `cannot compare count() with string "x"`),
	bad(`{ } | count() > 1s`, "1:17", `cannot compare count(), a number, with duration 1s`),
	bad(`{ } | count() > span.x`, "1:17", `expected a literal after count() >, found "span.x"`),
	bad(`{ } | count > 1`, "1:13", `expected "(" after count, found ">"`),
	bad(`{ } | by()`, "1:10", `expected a value after "(", found ")"`),
	bad(`{ } | by(name`, "1:14", `expected "," or ")" in by(...), found end of query`),
	bad(`{ } | by(1)`, "1:10", `by() needs attributes or intrinsics, found int 1`),
	bad(`{ } | select(span.a + 1)`, "1:14", `select() takes attributes and intrinsics`),
	bad(`{ } | coalesce(name)`, "1:16", `coalesce() takes no arguments`),
	bad(`{ } | topk(5)`, "1:7", `topk() applies to the series of a metrics function`),

	// Errors: metrics queries.
	bad(`{ } | rate(duration)`, "1:12", `rate() takes no arguments`),
	bad(`{ } | count_over_time(x)`, "1:23", `count_over_time() takes no arguments`),
	bad(`{ } | quantile_over_time(duration)`, "1:34", `at least one quantile`),
	bad(`{ } | quantile_over_time(duration, 1.5)`, "1:36", `quantile 1.5 is outside [0, 1]`),
	bad(`{ } | quantile_over_time(duration, "x")`, "1:36", `expected a quantile between 0 and 1, found string "x"`),
	bad(`{ } | histogram_over_time(name)`, "1:27", `histogram_over_time() needs a numeric field`),
	bad(`{ } | rate() | count() > 1`, "1:16", `only topk() or bottomk() may follow rate()`),

	// Pipelines that start with an aggregate, by() or select() run over
	// every span, as if "{ } |" came first.
	canon(`count() > 1`, `{ } | count() > 1`),
	canon(`avg(span.size) > 1 | { .a }`, `{ } | avg(span.size) > 1 | { .a = true }`),
	canon(`select(span.a)`, `{ } | select(span.a)`),
	canon(`by(span.a) | { name = "x" }`, `{ } | by(span.a) | { name = "x" }`),
	bad(`coalesce() | { }`, "1:1", `expected "{" to start a spanset`),
	bad(`rate()`, "1:1", `expected "{" to start a spanset`),

	// Parenthesised pipelines as spanset operands.
	ok(`({ .a = 1 } | count() > 1) && ({ .b = 2 } | count() > 1)`),
	ok(`({ } | count() > 1 | { .x = 1 }) >> ({ } | by(name) | count() = 1)`),
	ok(`({ } | select(span.a)) || { .b = 2 }`),
	bad(`({ } | rate()) && { }`, "1:16", `unexpected "&&"`),
	// Metrics arithmetic: parenthesised metrics queries and numbers, * and / before + and -,
	// thresholds (constant expressions folded) and topk after.
	ok(`({ } | rate()) + ({ } | count_over_time())`),
	ok(`({ } | rate()) * 100`),
	canon(`100*({} | rate())`, `100 * ({ } | rate())`),
	canon(`-1.5 / ({} | rate())`, `-1.5 / ({ } | rate())`),
	canon(`({} | rate()) - -5`, `({ } | rate()) - -5`),
	canon(`5 + ({} | rate()) * 10`, `5 + (({ } | rate()) * 10)`),
	canon(`({} | rate()) - 2 * 20`, `({ } | rate()) - (2 * 20)`),
	canon(`(({} | rate()) * 100) + ({} | count_over_time() by (name))`, `(({ } | rate()) * 100) + ({ } | count_over_time() by (name))`),
	canon(`({} | rate()) > 10`, `{ } | rate() > 10`),
	canon(`({} | rate()) > 1 / 2`, `{ } | rate() > 0.5`),
	canon(`{} | rate() >= 100 * 3`, `{ } | rate() >= 300.0`),
	canon(`({} | rate() > 6) * 100 > 5`, `({ } | rate() > 6) * 100 > 5`),
	canon(`({} | rate()) + ({} | rate()) | topk(5) > 10`, `({ } | rate()) + ({ } | rate()) | topk(5) > 10`),
	canon(`({} | rate() | topk(2)) / 2 with(sample=0.1)`, `({ } | rate() | topk(2)) / 2 with(sample=0.1)`),
	bad(`2 * 3`, "1:1", `arithmetic needs a metrics query`),
	bad(`5 + {} | rate()`, "1:5", `expected a number or a parenthesised metrics query`),
	bad(`{} | rate() + 5`, "1:13", `unexpected "+"`),
	bad(`({}) + ({})`, "1:6", `unexpected "+"`),
	bad(`({} | rate()) % ({} | rate())`, "1:15", `unexpected "%"`),
	bad(`({} | rate()) + 5 100`, "1:19", `unexpected "100"`),
	bad(`({} | compare({ status = error })) * 2`, "1:1", `compare() cannot be used in arithmetic`),
	bad(`({} | rate()) * 2 | count() > 1`, "1:21", `only topk() or bottomk() may follow arithmetic`),
	bad(`({ } | count() > 1`, "1:19", `expected ")" to close "(" at 1:1`),

	// Metrics thresholds, topk and bottomk.
	ok(`{ } | rate() > 10`),
	ok(`{ } | rate() by (name) >= 0.5`),
	ok(`{ } | quantile_over_time(duration, 0.9) by (name) > 100ms`),
	ok(`{ } | count_over_time() by (name) > 1 < 100`),
	ok(`{ } | rate() by (resource.service.name) | topk(10)`),
	ok(`{ } | rate() by (resource.service.name) | bottomk(3) > 2`),
	ok(`{ } | rate() | topk(1) | bottomk(1)`),
	bad(`{ } | rate() > "x"`, "1:16", `expected a number or a duration`),
	bad(`{ } | rate() | topk(0)`, "1:21", `needs a positive whole number`),
	bad(`{ } | rate() | topk(a)`, "1:21", `needs a positive whole number`),
	bad(`{ } | rate() =~ "x"`, "1:14", `unexpected "=~"`),

	// compare().
	ok(`{ } | compare({ status = error })`),
	ok(`{ } | compare({ status = error }, 5)`),
	ok(`{ } | compare({ .a = 1 } >> { .b = 2 }, 10, 1700000000000000000, 1700000060000000000)`),
	bad(`{ } | compare({ }, 0)`, "1:20", `a whole number of at least 1`),
	bad(`{ } | compare({ }, 5, 20, 10)`, "1:27", `end must be after its start`),
	bad(`{ } | compare(5)`, "1:15", `expected a spanset "{ ... }" after "("`),

	// Newer intrinsics and literals.
	ok(`{ span:childCount > 2 }`),
	canon(`{ childCount = 0 }`, `{ span:childCount = 0 }`),
	ok(`{ nestedSetLeft > 3 }`),
	canon(`{ span:nestedSetParent = -1 }`, `{ nestedSetParent = -1 }`),
	ok(`{ } >> { kind = server } | select(nestedSetLeft, nestedSetRight, nestedSetParent)`),
	bad(`{ nestedSetLeft = "foo" }`, "1:17", `cannot compare nestedSetLeft (int) with string "foo"`),
	canon(`{ span.n > minInt && span.n < maxInt }`, `{ span.n > minInt && span.n < 9223372036854775807 }`),
	canon(`{ span.n = -9223372036854775807 - 1 }`, `{ span.n = -9223372036854775807 - 1 }`),

	// A quoted name after a dotted prefix.
	canon(`{ span.http."status_code" = 200 }`, `{ span.http.status_code = 200 }`),
	canon(`{ span.http."status code" = 200 }`, `{ span."http.status code" = 200 }`),
	canon(`{ ."a b".c = 1 }`, `{ ."a b.c" = 1 }`),
	canon(`{ resource."k8s".pod."name x" = "p" }`, `{ resource."k8s.pod.name x" = "p" }`),
	bad(`{ span.http."status }`, "1:13", `unterminated string`),

	// Intrinsics always have a value, so asking for a missing one is an error;
	// "!= nil" holds whenever the value exists. nil moves to the right.
	bad(`{ span:status = nil }`, "1:15", `cannot compare status with nil`),
	bad(`{ nil = span:status }`, "1:7", `cannot compare status with nil`),
	canon(`{ nil != name }`, `{ name != nil }`),
	ok(`{ link:spanID != nil }`),
	canon(`{ nil = span.a }`, `{ span.a = nil }`),
	ok(`{ nil = nil }`),
	ok(`{ nil != nil }`),
	// Aggregates and groups must read the span.
	bad(`max(1h + 2h) > 1`, "1:5", `max() needs a field`),
	bad(`{ } | min(1.1 - 3) > 1`, "1:11", `min() needs a field`),
	bad(`{ } | by(1 + 2)`, "1:10", `by() needs attributes or intrinsics`),
	// compare()'s series are not ranked or thresholded.
	bad(`{ } | compare({ status = error }) | topk(10)`, "1:44", `compare() cannot be followed`),
	bad(`{ } | compare({ status = error }) > 10`, "1:37", `compare() cannot be followed`),
	bad(`{ trace:rootName = nil }`, "1:18", `cannot compare rootName with nil`),
	ok(`{ span.a = nil }`),
	ok(`{ span.a != nil }`),

	// Hints.
	ok(`{ } with(most_recent=true)`),
	ok(`{ } | rate() by (name) > 1 with(sample=0.1)`),
	bad(`{ } | rate() by ()`, "1:18", `expected a value after "(", found ")"`),
	bad(`{ } | min_over_time() `, "1:21", `expected a value after "(", found ")"`),

	// Errors: hints.
	bad(`{ } with()`, "1:10", `expected a hint name in with(...), found ")"`),
	bad(`{ } with(sample)`, "1:16", `expected "=" after hint "sample"`),
	bad(`{ } with(sample=name)`, "1:17", `expected a literal value for hint "sample"`),
	bad(`{ } with(sample=true`, "1:21", `expected "," or ")" in with(...)`),
	bad(`{ } with(sample=true) | rate()`, "1:23", `unexpected "|" after the end of the query`),
}

func TestParse(t *testing.T) {
	var nOK, nErr int
	for _, c := range parseCases {
		t.Run(c.in, func(t *testing.T) {
			q, err := Parse(c.in)
			if c.isErr() {
				nErr++
				checkError(t, c, err)
				return
			}
			nOK++
			if err != nil {
				t.Fatalf("Parse(%q): %v", c.in, err)
			}
			if got := q.String(); got != c.canonical() {
				t.Fatalf("Parse(%q).String()\n got  %s\n want %s", c.in, got, c.canonical())
			}
			assertRoundTrip(t, c.in, q)
		})
	}
	t.Logf("%d cases: %d valid, %d invalid", len(parseCases), nOK, nErr)
}

func checkError(t *testing.T, c parseCase, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("Parse(%q) succeeded; want error at %s containing %q", c.in, c.errPos, c.errMsg)
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("Parse(%q) error %T %v is not a *ParseError", c.in, err, err)
	}
	if !errors.Is(err, ErrParse) {
		t.Errorf("errors.Is(%v, ErrParse) = false", err)
	}
	if pos := fmt.Sprintf("%d:%d", pe.Line, pe.Col); pos != c.errPos || !strings.Contains(pe.Msg, c.errMsg) {
		t.Fatalf("Parse(%q) error\n got  %v\n want %s: …%s…", c.in, err, c.errPos, c.errMsg)
	}
	if !strings.HasPrefix(err.Error(), c.errPos+": ") {
		t.Fatalf("error %q does not start with its position", err)
	}
	// Pos must agree with Line and Col.
	if again := newParseError(c.in, pe.Pos, nil, ""); again.Line != pe.Line || again.Col != pe.Col {
		t.Fatalf("Pos %d is %d:%d, error says %d:%d", pe.Pos, again.Line, again.Col, pe.Line, pe.Col)
	}
}

// assertRoundTrip checks that q's canonical form parses to an equal AST and
// is a fixed point of String.
func assertRoundTrip(t *testing.T, in string, q *Query) {
	t.Helper()
	s := q.String()
	q2, err := Parse(s)
	if err != nil {
		t.Fatalf("canonical form of %q does not parse: %q: %v", in, s, err)
	}
	if !reflect.DeepEqual(q, q2) {
		t.Fatalf("round trip of %q changed the AST:\n first  %#v\n second %#v", in, q, q2)
	}
	if s2 := q2.String(); s2 != s {
		t.Fatalf("String is not a fixed point for %q:\n first  %s\n second %s", in, s, s2)
	}
}

func TestParseAST(t *testing.T) {
	q, err := Parse(`{ resource.service.name = "task-api" && status = error } >> { span:duration > 1.5s } | by(name) | quantile_over_time(duration, .9) by (resource.service.name) with(sample=true)`)
	if err != nil {
		t.Fatal(err)
	}
	want := &Query{
		Stages: []Stage{
			&SpansetOp{
				Op: Descendant,
				LHS: &SpansetFilter{Cond: &BinaryOp{
					Op:  OpAnd,
					LHS: &BinaryOp{Op: OpEq, LHS: Attribute{Scope: ScopeResource, Name: "service.name"}, RHS: Static{Type: TypeString, Str: "task-api"}},
					RHS: &BinaryOp{Op: OpEq, LHS: IntrinsicStatus, RHS: Static{Type: TypeStatus, Status: StatusError}},
				}},
				RHS: &SpansetFilter{Cond: &BinaryOp{Op: OpGt, LHS: IntrinsicDuration, RHS: Static{Type: TypeDuration, Dur: 1500 * time.Millisecond}}},
			},
			&GroupBy{Fields: []FieldExpr{IntrinsicName}},
		},
		Metrics: &MetricsAggregate{
			Func:      MetricsQuantileOverTime,
			Field:     IntrinsicDuration,
			Quantiles: []float64{0.9},
			By:        []FieldExpr{Attribute{Scope: ScopeResource, Name: "service.name"}},
		},
		Hints: []Hint{{Name: "sample", Value: Static{Type: TypeBool, Bool: true}}},
	}
	if !reflect.DeepEqual(q, want) {
		t.Fatalf("got  %#v\nwant %#v", q, want)
	}
	if !q.IsMetrics() {
		t.Error("IsMetrics() = false for a metrics query")
	}
	if q2, _ := Parse(`{ } | count() > 1`); q2.IsMetrics() {
		t.Error("IsMetrics() = true for a search query")
	}
}

func TestRegexIsAnchored(t *testing.T) {
	q, err := Parse(`{ name =~ "GET|POST" }`)
	if err != nil {
		t.Fatal(err)
	}
	re := q.Stages[0].(*SpansetFilter).Cond.(*BinaryOp).Regex
	for s, want := range map[string]bool{"GET": true, "POST": true, "GET /x": false, "xPOST": false} {
		if got := re.MatchString(s); got != want {
			t.Errorf("%q matches %q = %v, want %v", re, s, got, want)
		}
	}
}

func TestParseErrorUnwraps(t *testing.T) {
	_, err := Parse(`{ duration > 10d }`)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Err == nil {
		t.Fatalf("want a *ParseError wrapping time.ParseDuration's error, got %#v", err)
	}
	if pe.Pos != 13 {
		t.Errorf("Pos = %d, want 13", pe.Pos)
	}
}

func TestErrorColumnCountsRunes(t *testing.T) {
	_, err := Parse(`{ span.é = "ü" && }`)
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v", err)
	}
	if pe.Col != 19 || pe.Pos != len(`{ span.é = "ü" && `) {
		t.Errorf("got Pos %d Col %d, want byte offset %d and column 19", pe.Pos, pe.Col, len(`{ span.é = "ü" && `))
	}
}

func TestStaticTypes(t *testing.T) {
	for expr, want := range map[string]Type{
		`duration`:             TypeDuration,
		`traceDuration`:        TypeDuration,
		`event:timeSinceStart`: TypeDuration,
		`status`:               TypeStatus,
		`kind`:                 TypeKind,
		`name`:                 TypeString,
		`span:id`:              TypeString,
		`span.a`:               TypeAttribute,
		`span.a + 1`:           TypeAttribute,
		`duration * 2`:         TypeDuration,
		`1 + 2.5`:              TypeFloat,
		`1 + 2`:                TypeInt,
		`-duration`:            TypeDuration,
	} {
		q, err := Parse(`{ ` + expr + ` != nil }`)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if got := q.Stages[0].(*SpansetFilter).Cond.(*BinaryOp).LHS.StaticType(); got != want {
			t.Errorf("StaticType(%s) = %v, want %v", expr, got, want)
		}
	}
}

func TestDeepNesting(t *testing.T) {
	for name, q := range map[string]string{
		"spanset parens": strings.Repeat("(", 100000) + "{ }" + strings.Repeat(")", 100000),
		"field parens":   "{ " + strings.Repeat("(", 100000) + "true" + strings.Repeat(")", 100000) + " }",
		"negations":      "{ " + strings.Repeat("!", 100000) + "true }",
		"powers":         "{ 1" + strings.Repeat(" ^ 1", 100000) + " = 1 }",
		"sums":           "{ span.a" + strings.Repeat(" + 1", 100000) + " = 1 }",
		"or chain":       "{ true" + strings.Repeat(" || true", 100000) + " }",
		"spanset chain":  "{ }" + strings.Repeat(" >> { }", 100000),
	} {
		_, err := Parse(q)
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "query too deep") {
			t.Errorf("%s: got %v, want a nesting error", name, err)
		}
	}
	// A generated query with hundreds of alternatives must still parse.
	within := "{ " + strings.Repeat(`name = "x" || `, 500) + `name = "y" }`
	q, err := Parse(within)
	if err != nil {
		t.Fatalf("500 alternatives: %v", err)
	}
	assertRoundTrip(t, within, q)
}
