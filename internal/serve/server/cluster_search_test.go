package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"

	"github.com/ariadne-tracing/ariadne/internal/read/peerapi"
	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/auth"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

// nodeJSON decodes a query node's answer to path into v and returns its partial flag.
func nodeJSON(t *testing.T, node *server.Server, path string, v any) string {
	t.Helper()
	resp, err := http.Get("http://" + node.HTTPAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.Header.Get(api.PartialHeader)
}

type searchAnswer struct {
	Traces []struct {
		TraceID  string `json:"traceID"`
		SpanSets []struct {
			Matched int `json:"matched"`
		} `json:"spanSets"`
	} `json:"traces"`
}

// searchIDs is the trace IDs a node's TraceQL search finds, sorted, and the spans matched.
func searchIDs(t *testing.T, node *server.Server, q string) (ids []string, spans int) {
	t.Helper()
	var sr searchAnswer
	if p := nodeJSON(t, node, "/api/search?limit=1000&spss=1000&start=0&end=99999999999&q="+url.QueryEscape(q), &sr); p != "" {
		t.Errorf("search %s flagged partial: %s", q, p)
	}
	for _, tr := range sr.Traces {
		ids = append(ids, tr.TraceID)
		for _, ss := range tr.SpanSets {
			spans += ss.Matched
		}
	}
	slices.Sort(ids)
	return ids, spans
}

func hexID(id [16]byte) string { return fmt.Sprintf("%x", id[:]) }

// The guide's traces, sent to an ingest node and still only in its head, are found by a
// separate query node's TraceQL search (structural conditions across services included), tag
// names and values, and TraceQL metrics. Then, with the traces uploaded to the bucket, a late
// child span that stays in the ingest node's head joins its root in the bucket: the trace is
// judged whole on the query node.
func TestClusterSearchSeesIngestHeads(t *testing.T) {
	srv := miniotest.Start(t)
	icfg := clusterConfig(t, srv, config.TargetIngest)
	icfg.Storage.TraceIdle = config.Duration(time.Hour) // nothing leaves the head until Flush
	icfg.Storage.BlockMaxWait = config.Duration(time.Hour)
	ing := startServer(t, icfg)
	qcfg := clusterConfig(t, srv, config.TargetQuery)
	qcfg.Cluster.Peers = []string{ing.HTTPAddr}
	q := startServer(t, qcfg)

	traces, _ := exportGuide(t, ing, "grpc")
	if n := len(ing.Store.Blocks()); n != 0 {
		t.Fatalf("ingest node cut %d blocks before the checks", n)
	}
	var all []string
	total := 0
	var notify guidetrace.Trace
	for _, tr := range traces {
		all = append(all, hexID(tr.TraceID))
		total += tr.SpanCount
		if tr.Name == guidetrace.NameNotify {
			notify = tr
		}
	}
	slices.Sort(all)

	ids, spans := searchIDs(t, q, "{}")
	if !slices.Equal(ids, all) || spans != total {
		t.Errorf("search {} on the query node: %d traces %d spans, want %d traces %d spans", len(ids), spans, len(all), total)
	}
	cross := fmt.Sprintf(`{ resource.service.name = %q } >> { resource.service.name = %q }`, guidetrace.ServiceTaskAPI, guidetrace.ServiceNotification)
	if ids, _ := searchIDs(t, q, cross); !slices.Equal(ids, []string{hexID(notify.TraceID)}) {
		t.Errorf("structural search across services: %v, want the notify trace %s", ids, hexID(notify.TraceID))
	}

	var tags struct {
		Scopes []struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		} `json:"scopes"`
	}
	nodeJSON(t, q, "/api/v2/search/tags", &tags)
	var resourceTags []string
	for _, sc := range tags.Scopes {
		if sc.Name == "resource" {
			resourceTags = sc.Tags
		}
	}
	if !slices.Contains(resourceTags, "service.name") {
		t.Errorf("tag names on the query node: resource scope %v lacks service.name (all: %+v)", resourceTags, tags)
	}
	var values struct {
		TagValues []struct {
			Value string `json:"value"`
		} `json:"tagValues"`
	}
	nodeJSON(t, q, "/api/v2/search/tag/resource.service.name/values", &values)
	var services []string
	for _, v := range values.TagValues {
		services = append(services, v.Value)
	}
	slices.Sort(services)
	if want := []string{guidetrace.ServiceNotification, guidetrace.ServiceTaskAPI}; !slices.Equal(services, want) {
		t.Errorf("service.name values on the query node: %v, want %v", services, want)
	}

	now := time.Now()
	var mr struct {
		Series []struct {
			Samples []struct {
				Value float64 `json:"value"`
			} `json:"samples"`
		} `json:"series"`
	}
	nodeJSON(t, q, fmt.Sprintf("/api/metrics/query_range?q=%s&start=%d&end=%d&step=60s", url.QueryEscape("{} | count_over_time()"),
		now.Add(-10*time.Minute).Unix(), now.Add(time.Minute).Unix()), &mr)
	counted := 0.0
	for _, s := range mr.Series {
		for _, v := range s.Samples {
			counted += v.Value
		}
	}
	if int(counted) != total {
		t.Errorf("count_over_time on the query node: %v spans, want %d (answer %+v)", counted, total, mr)
	}

	// Into the bucket, and out of the ingest node.
	if err := ing.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ingest node uploads and forgets its block", func() bool { return len(ing.Store.Blocks()) == 0 })
	create := traces[0]
	var root guidetrace.Span
	for _, s := range create.Spans {
		if !s.ParentSpanID.IsValid() {
			root = s
		}
	}
	late := &tracepb.Span{TraceId: create.TraceID[:], SpanId: []byte("late0001"), ParentSpanId: root.SpanID[:], Name: "late-child",
		StartTimeUnixNano: uint64(root.Start.UnixNano()), EndTimeUnixNano: uint64(root.Start.UnixNano()) + 1000}
	if _, err := grpcClient(t, ing).Export(t.Context(), request(late)); err != nil {
		t.Fatal(err)
	}
	split := fmt.Sprintf(`{ name = %q } >> { name = "late-child" }`, root.Name)
	waitFor(t, "the query node polls the uploaded block", func() bool {
		ids, _ := searchIDs(t, q, "{}")
		return len(ids) == len(all)
	})
	if ids, _ := searchIDs(t, q, split); !slices.Equal(ids, []string{hexID(create.TraceID)}) {
		t.Errorf("root in the bucket, child in the ingest node's head: %s found %v, want %s", split, ids, hexID(create.TraceID))
	}
	if ids, spans := searchIDs(t, q, fmt.Sprintf(`{ trace:id = %q } | count() = %d`, hexID(create.TraceID), create.SpanCount+1)); len(ids) != 1 {
		t.Errorf("count() over a trace split between bucket and head: %v (%d spans), want the whole trace", ids, spans)
	}
}

const tokInternal = "internal-token-0123456789abcdef"

// With auth on, a query node's peer requests carry its cluster token (role internal), so its
// trace lookups and searches over the ingest node's head are whole and not flagged partial;
// the peer API takes no other role, and the internal token reads nothing of the public API.
func TestClusterPeerCallsAuthenticated(t *testing.T) {
	srv := miniotest.Start(t)
	withAuth := func(cfg config.Config) config.Config {
		cfg.Auth = authConfig(t.TempDir()).Auth
		cfg.Auth.Tokens = append(slices.Clone(cfg.Auth.Tokens), auth.Token{Name: "nodes", SHA256: auth.HashToken(tokInternal),
			Role: auth.RoleInternal, Tenants: []string{"*"}})
		return cfg
	}
	icfg := withAuth(clusterConfig(t, srv, config.TargetIngest))
	icfg.Storage.TraceIdle = config.Duration(time.Hour)
	icfg.Storage.BlockMaxWait = config.Duration(time.Hour)
	ing := startServer(t, icfg)
	qcfg := withAuth(clusterConfig(t, srv, config.TargetQuery))
	qcfg.Cluster.Peers = []string{ing.HTTPAddr}
	if s, err := server.Start(qcfg, api.BuildInfo{}, nil); err == nil {
		s.Stop(t.Context())
		t.Fatal("a query node with peers and auth on but no cluster.peer_token started")
	}
	qcfg.Cluster.PeerToken = tokInternal
	q := startServer(t, qcfg)

	tid := bytes.Repeat([]byte{0xa7}, 16)
	var spans []*tracepb.Span
	for i := byte(1); i <= 3; i++ {
		sp := validSpan(0xa7, i)
		sp.StartTimeUnixNano, sp.EndTimeUnixNano = uint64(time.Now().UnixNano()), uint64(time.Now().UnixNano())+1000
		spans = append(spans, sp)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tokWrite)
	if _, err := grpcClient(t, ing).Export(ctx, request(spans...)); err != nil {
		t.Fatal(err)
	}
	base := "http://" + q.HTTPAddr
	code, hdr, body := getAuth(t, fmt.Sprintf("%s/api/v2/traces/%x", base, tid), "Bearer "+tokRead)
	if code != http.StatusOK || hdr.Get(api.PartialHeader) != "" {
		t.Fatalf("trace by ID through the query node: %d, partial %q: %s", code, hdr.Get(api.PartialHeader), body)
	}
	code, hdr, body = getAuth(t, base+"/api/search?q="+url.QueryEscape("{ }"), "Bearer "+tokRead)
	if code != http.StatusOK || hdr.Get(api.PartialHeader) != "" || !strings.Contains(string(body), fmt.Sprintf("%x", tid)) {
		t.Fatalf("search through the query node: %d, partial %q: %s", code, hdr.Get(api.PartialHeader), body)
	}

	peer := "http://" + ing.HTTPAddr
	for _, c := range []struct {
		url, authz string
		want       int
	}{
		{peer + peerapi.HeadPath, "", http.StatusUnauthorized},
		{peer + peerapi.HeadPath, "Bearer " + tokRead, http.StatusForbidden},
		{fmt.Sprintf("%s%s%x", peer, peerapi.Path, tid), "Bearer " + tokWrite, http.StatusForbidden},
		{peer + peerapi.HeadPath, "Bearer " + tokInternal, http.StatusOK},
		{peer + "/api/search?q=%7B%7D", "Bearer " + tokInternal, http.StatusForbidden},
		{base + "/api/search?q=%7B%7D", "Bearer " + tokInternal, http.StatusForbidden},
	} {
		if code, _, body := getAuth(t, c.url, c.authz); code != c.want {
			t.Errorf("GET %s with %q: %d %s, want %d", c.url, c.authz, code, body, c.want)
		}
	}
}
