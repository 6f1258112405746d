package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"

	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
)

// Tenants in a cluster: an ingest node and a separate query node, both multi-tenant. Each
// tenant's traces are found by that tenant only, from the ingest node's heads (asked per
// tenant) and, once uploaded, from the bucket, where each tenant has its own prefix and block
// index; a federated read a|b sees both.
func TestClusterTenantsIsolated(t *testing.T) {
	srv := miniotest.Start(t)
	icfg := clusterConfig(t, srv, config.TargetIngest)
	icfg.MultitenancyEnabled = true
	icfg.Storage.TraceIdle = config.Duration(time.Hour)
	icfg.Storage.BlockMaxWait = config.Duration(time.Hour)
	ing := startServer(t, icfg)
	qcfg := clusterConfig(t, srv, config.TargetQuery)
	qcfg.MultitenancyEnabled = true
	qcfg.Cluster.Peers = []string{ing.HTTPAddr}
	q := startServer(t, qcfg)

	tids := map[string][]byte{"alpha": bytes.Repeat([]byte{0xa1}, 16), "bravo": bytes.Repeat([]byte{0xb2}, 16)}
	for tenant, tid := range tids {
		var spans []*tracepb.Span
		for i := byte(1); i <= 3; i++ {
			sp := validSpan(tid[0], i)
			sp.Name = tenant + "-op"
			sp.StartTimeUnixNano, sp.EndTimeUnixNano = uint64(time.Now().UnixNano()), uint64(time.Now().UnixNano())+1000
			spans = append(spans, sp)
		}
		ctx := metadata.AppendToOutgoingContext(t.Context(), "x-scope-orgid", tenant)
		if _, err := grpcClient(t, ing).Export(ctx, request(spans...)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(stage string) {
		t.Helper()
		for tenant := range tids {
			for other, otid := range tids {
				resp, _ := tenantGet(t, fmt.Sprintf("http://%s/api/v2/traces/%x", q.HTTPAddr, otid), tenant)
				if want := map[bool]int{true: 200, false: 404}[tenant == other]; resp.StatusCode != want {
					t.Errorf("%s: tenant %s reading %s's trace: %d, want %d", stage, tenant, other, resp.StatusCode, want)
				}
			}
			resp, body := tenantGet(t, "http://"+q.HTTPAddr+"/api/search?q="+url.QueryEscape("{ }"), tenant)
			for other, otid := range tids {
				if found := strings.Contains(body, fmt.Sprintf("%x", otid)); found != (tenant == other) || resp.StatusCode != 200 {
					t.Errorf("%s: tenant %s's search finds %s's trace: %v (%d %s)", stage, tenant, other, found, resp.StatusCode, body)
				}
			}
			_, values := tenantGet(t, "http://"+q.HTTPAddr+"/api/v2/search/tag/name/values", tenant)
			for other := range tids {
				if found := strings.Contains(values, other+"-op"); found != (tenant == other) {
					t.Errorf("%s: tenant %s's span names include %s's: %v (%s)", stage, tenant, other, found, values)
				}
			}
		}
		_, both := tenantGet(t, "http://"+q.HTTPAddr+"/api/search?q="+url.QueryEscape("{ }"), "alpha|bravo")
		for other, otid := range tids {
			if !strings.Contains(both, fmt.Sprintf("%x", otid)) {
				t.Errorf("%s: a federated search of alpha|bravo misses %s's trace: %s", stage, other, both)
			}
		}
	}
	check("in the ingest node's heads")

	for tenant := range tids {
		if err := ing.TenantStore(tenant).Flush(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both tenants' blocks uploaded and dropped from the ingest node", func() bool {
		return len(ing.TenantStore("alpha").Blocks()) == 0 && len(ing.TenantStore("bravo").Blocks()) == 0
	})
	// In the bucket, each tenant's blocks and index are under its own prefix.
	root, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "ariadne", Prefix: "cluster-test", Insecure: true,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	for tenant := range tids {
		names, err := root.Sub(tenant).List(context.Background(), "blocks/")
		if err != nil || len(names) == 0 {
			t.Fatalf("tenant %s's prefix holds %d block objects (%v)", tenant, len(names), err)
		}
	}
	if err := ing.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// From the bucket alone now (the peer is gone: answers are flagged partial, still exact).
	waitFor(t, "the query node polls both tenants' blocks", func() bool {
		resp, _ := tenantGet(t, fmt.Sprintf("http://%s/api/v2/traces/%x", q.HTTPAddr, tids["bravo"]), "bravo")
		return resp.StatusCode == http.StatusOK
	})
	check("in the bucket")
}
