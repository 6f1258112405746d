package federate

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func answer(body string) Answer { return Answer{Code: 200, Header: http.Header{}, Body: []byte(body)} }

func metricsReq(q string) *http.Request {
	return httptest.NewRequest("GET", "/api/metrics/query_range?q="+url.QueryEscape(q), nil)
}

// Series with equal labels join sample by sample with the function's operation; others are
// listed side by side; functions whose answers cannot be joined are refused.
func TestMergeMetrics(t *testing.T) {
	a := answer(`{"series":[{"labels":[{"key":"k","value":{"stringValue":"x"}}],"samples":[{"timestampMs":"1000","value":2},{"timestampMs":"2000","value":5}]}],
		"metrics":{"inspectedBytes":"10"}}`)
	b := answer(`{"series":[{"labels":[{"key":"k","value":{"stringValue":"x"}}],"samples":[{"timestampMs":"2000","value":1},{"timestampMs":"3000","value":4}]},
		{"labels":[{"key":"k","value":{"stringValue":"y"}}],"samples":[{"timestampMs":"1000","value":7}]}],"metrics":{"inspectedBytes":"5"}}`)
	for q, want := range map[string]string{
		"{} | rate() by (span.k)":                  `"samples":[{"timestampMs":"1000","value":2},{"timestampMs":"2000","value":6},{"timestampMs":"3000","value":4}]`,
		"{} | min_over_time(duration) by (span.k)": `"samples":[{"timestampMs":"1000","value":2},{"timestampMs":"2000","value":1},{"timestampMs":"3000","value":4}]`,
		"{} | max_over_time(duration) by (span.k)": `{"timestampMs":"2000","value":5}`,
	} {
		got := Merge(metricsReq(q), []Answer{a, b})
		body := string(got.Body)
		if got.Code != 200 || !strings.Contains(body, want) || !strings.Contains(body, `"stringValue":"y"`) || !strings.Contains(body, `"inspectedBytes":"15"`) {
			t.Errorf("%s: %d %s, want %s", q, got.Code, body, want)
		}
		// The tenants' own answers are not changed: Merge works on its decoded copy.
		a, b = answer(string(a.Body)), answer(string(b.Body))
	}
	for _, q := range []string{"{} | quantile_over_time(duration, .9)", "{} | avg_over_time(duration)", "{} | rate() by (span.k) | topk(1)"} {
		if got := Merge(metricsReq(q), []Answer{a, b}); got.Code != 400 {
			t.Errorf("%s: %d %s, want 400", q, got.Code, got.Body)
		}
	}
}

// An error from any tenant is the answer, never a join of the others.
func TestMergeError(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/search/tags", nil)
	got := Merge(r, []Answer{answer(`{"tagNames":["a"]}`), {Code: 429, Header: http.Header{}, Body: []byte("busy")}})
	if got.Code != 429 {
		t.Errorf("%d %s", got.Code, got.Body)
	}
}
