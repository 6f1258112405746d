package traceql

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// TestTempoCorpus is a by-hand check against Grafana Tempo's own query
// corpus (pkg/traceql/test_examples.yaml). Tempo's code is AGPL, so the file
// is not in this repository: point ARIADNE_TEMPO_CORPUS at a copy and run
//
//	ARIADNE_TEMPO_CORPUS=/path/test_examples.yaml go test -run TempoCorpus -v ./internal/read/traceql
//
// It reports how many of the "valid" queries parse and how many of the
// "parse_fails" ones are refused. Without the variable it skips: the
// constructs the corpus uses are pinned by parseCases instead.
func TestTempoCorpus(t *testing.T) {
	path := os.Getenv("ARIADNE_TEMPO_CORPUS")
	if path == "" {
		t.Skip("ARIADNE_TEMPO_CORPUS not set")
	}
	sections, err := readCorpus(path)
	if err != nil {
		t.Fatal(err)
	}
	valid := sections["valid"]
	parsed := 0
	for _, q := range valid {
		if _, err := Parse(q); err != nil {
			t.Logf("valid query refused: %s\n\t%v", q, err)
			continue
		}
		parsed++
	}
	fails := sections["parse_fails"]
	refused := 0
	for _, q := range fails {
		if _, err := Parse(q); err == nil {
			t.Logf("invalid query accepted: %s", q)
			continue
		}
		refused++
	}
	vf := sections["validate_fails"]
	vrefused := 0
	for _, q := range vf {
		if _, err := Parse(q); err == nil {
			t.Logf("validate_fails query accepted: %s", q)
			continue
		}
		vrefused++
	}
	t.Logf("valid: %d/%d parse; parse_fails: %d/%d refused; validate_fails: %d/%d refused",
		parsed, len(valid), refused, len(fails), vrefused, len(vf))
	if parsed != len(valid) {
		t.Errorf("%d valid queries do not parse", len(valid)-parsed)
	}
}

// readCorpus reads the YAML's top-level lists of single-quoted strings
// without a YAML dependency: "name:" starts a section, "  - '…'" is an entry.
func readCorpus(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutSuffix(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(line, " ") {
			section = name
			continue
		}
		s := strings.TrimSpace(line)
		if !strings.HasPrefix(s, "- '") {
			continue
		}
		s = s[3:]
		end := strings.LastIndex(s, "'")
		if end < 0 {
			continue
		}
		out[section] = append(out[section], strings.ReplaceAll(s[:end], "''", "'"))
	}
	return out, sc.Err()
}
