package search_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/store"
)

// corpusCase is one line of testdata/conformance.txt: a query and either the names of the
// traces it must find or the position and part of the message of its parse error.
type corpusCase struct {
	line   int
	query  string
	want   []string
	errPos string
	errMsg string
}

func readCorpus(t *testing.T) []corpusCase {
	t.Helper()
	f, err := os.Open("testdata/conformance.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []corpusCase
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		q, want, ok := strings.Cut(line, "=>")
		if !ok {
			t.Fatalf("conformance.txt:%d: no \"=>\"", n)
		}
		c := corpusCase{line: n, query: strings.TrimSpace(q)}
		fields := strings.Fields(want)
		switch {
		case len(fields) >= 2 && fields[0] == "error":
			c.errPos = fields[1]
			c.errMsg = strings.Join(fields[2:], " ")
		case len(fields) == 1 && fields[0] == "none":
		default:
			for _, name := range fields {
				if _, ok := datasetIDs[name]; !ok {
					t.Fatalf("conformance.txt:%d: unknown trace %q", n, name)
				}
			}
			c.want = fields
			slices.Sort(c.want)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// layout says where the data set's export requests go: each request is appended, and the store
// is flushed to a new block after the requests whose indexes flushAfter lists.
type layout struct {
	name       string
	flushAfter func(i, n int) bool
}

var layouts = []layout{
	// Everything in the head.
	{"head", func(i, n int) bool { return false }},
	// Everything in one block.
	{"blocks", func(i, n int) bool { return i == n-1 }},
	// A block every two requests and the last request left in the head: every trace with more
	// than two spans is split across blocks, and queue's consumer, sent last, stays in the head
	// while its producer (the root) is in a block.
	{"split", func(i, n int) bool { return i%2 == 1 && i < n-1 }},
}

// TestConformance runs the corpus over the data set laid out three ways; every query must find
// exactly the traces the corpus names, wherever the spans are.
func TestConformance(t *testing.T) {
	corpus := readCorpus(t)
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	reqs := dataset(t, base)
	// What each layout reports about the traces found: start, duration and root, which must
	// not depend on where the spans are either.
	reports := map[string]map[string]string{}
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
			if lay.name == "split" && len(st.Blocks()) < 5 {
				t.Fatalf("split layout made %d blocks", len(st.Blocks()))
			}
			e := search.New(st)
			reports[lay.name] = map[string]string{}
			for _, c := range corpus {
				reports[lay.name][c.query] = checkCase(t, e, c)
			}
		})
	}
	for _, lay := range layouts[1:] {
		for q, want := range reports["head"] {
			if got := reports[lay.name][q]; got != want {
				t.Errorf("%s: %s reports\n %s\nhead reports\n %s", q, lay.name, got, want)
			}
		}
	}
}

var errPrefix = regexp.MustCompile(`^\d+:\d+: `)

// checkCase runs one corpus line and returns what the answer says about each trace found.
func checkCase(t *testing.T, e *search.Engine, c corpusCase) string {
	t.Helper()
	q, err := traceql.Parse(c.query)
	if c.errPos != "" {
		if err == nil {
			t.Errorf("conformance.txt:%d: %s: parsed, want error at %s", c.line, c.query, c.errPos)
			return ""
		}
		if !errPrefix.MatchString(err.Error()) || !strings.HasPrefix(err.Error(), c.errPos+": ") || !strings.Contains(err.Error(), c.errMsg) {
			t.Errorf("conformance.txt:%d: %s: error %q, want %s: …%s…", c.line, c.query, err, c.errPos, c.errMsg)
		}
		return ""
	}
	if err != nil {
		t.Errorf("conformance.txt:%d: %s: %v", c.line, c.query, err)
		return ""
	}
	res, err := e.Search(context.Background(), search.Request{Query: q, Limit: 100})
	if err != nil {
		t.Errorf("conformance.txt:%d: %s: %v", c.line, c.query, err)
		return ""
	}
	var got, report []string
	for _, tr := range res.Traces {
		got = append(got, nameOf(tr.ID))
		matched := 0
		for _, ss := range tr.SpanSets {
			matched += ss.Matched
		}
		report = append(report, fmt.Sprintf("%s start=%d dur=%d matched=%d root=%q/%q", nameOf(tr.ID), tr.StartUnixNano, tr.DurationNanos, matched, tr.RootServiceName, tr.RootTraceName))
	}
	slices.Sort(report)
	slices.Sort(got)
	if !slices.Equal(got, c.want) {
		t.Errorf("conformance.txt:%d: %s\n got  %v\n want %v", c.line, c.query, got, c.want)
	}
	return strings.Join(report, "; ")
}

func nameOf(id [16]byte) string {
	h := hex.EncodeToString(id[:])
	for n, x := range datasetIDs {
		if x == h {
			return n
		}
	}
	return h
}

// openStore opens a store that never cuts or compacts on its own, so the test decides where
// every span is.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir(), TraceIdle: time.Hour, TraceMaxAge: time.Hour,
		BlockMaxWait: time.Hour, CompactMinBlocks: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// TestMostRecent checks with(most_recent=true) over a limit: the answer is the newest matching
// traces wherever they are stored (queue starts last, slow before it), not the first found.
func TestMostRecent(t *testing.T) {
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	reqs := dataset(t, base)
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
			for q, want := range map[string][]string{
				`{ } with(most_recent=true)`:                                    {"queue", "slow"},
				`{ kind = server } with(most_recent=true)`:                      {"slow", "flags"},
				`{ } | count() < 5 with(most_recent=true)`:                      {"queue", "slow"},
				`{ resource.service.name = "frontend" } with(most_recent=true)`: {"flags", "orphan"},
			} {
				pq, err := traceql.Parse(q)
				if err != nil {
					t.Fatal(err)
				}
				res, err := e.Search(context.Background(), search.Request{Query: pq, Limit: 2})
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, tr := range res.Traces {
					got = append(got, nameOf(tr.ID))
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s limit 2: %v, want %v, newest first", q, got, want)
				}
			}
		})
	}
}
