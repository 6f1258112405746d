package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ariadne-tracing/ariadne/internal/serve/auth"
	pb "github.com/ariadne-tracing/ariadne/internal/serve/tempogrpc/streamingpb"
)

// TestStreamingQuerierPerTenant: Tempo's streaming gRPC API (Search, MetricsQueryRange) on the
// query port answers from the tenant named by x-scope-orgid metadata or implied by the token,
// sees nothing of another tenant, and refuses calls without a tenant, with a wrong token, a token
// for another tenant, or a|b, with gRPC status codes as Tempo's.
func TestStreamingQuerierPerTenant(t *testing.T) {
	cfg := authConfig(t.TempDir())
	cfg.MultitenancyEnabled = true
	cfg.Auth.Tokens = append(cfg.Auth.Tokens,
		auth.Token{Name: "alpha-reader", SHA256: auth.HashToken("alpha-read-token"), Role: auth.RoleRead, Tenants: []string{"alpha"}})
	s := startServer(t, cfg)
	alpha := tenantData{name: "alpha", service: "alpha-svc", op: "alpha-op", key: "alpha.key", value: "alpha-value"}
	bravo := tenantData{name: "bravo", service: "bravo-svc", op: "bravo-op", key: "bravo.key", value: "bravo-value"}
	write := map[string]string{"Authorization": "Bearer " + tokWrite}
	sendAsWith(t, s, &alpha, false, write)
	sendAsWith(t, s, &bravo, true, write)

	conn := grafanaClient(t, "http://"+s.HTTPAddr)
	now := time.Now()
	search := func(md ...string) (string, error) {
		ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
		msgs, err := streamAll[pb.SearchResponse](ctx, conn, "/tempopb.StreamingQuerier/Search", &pb.SearchRequest{
			Query: "{ }", Limit: 100, SpansPerSpanSet: 3,
			Start: uint32(now.Add(-time.Hour).Unix()), End: uint32(now.Add(time.Minute).Unix())})
		var b strings.Builder
		for _, m := range msgs {
			for _, tr := range m.Traces {
				b.WriteString(tr.TraceId + " " + tr.RootServiceName + "\n")
			}
		}
		return b.String(), err
	}
	metrics := func(md ...string) (string, error) {
		ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
		msgs, err := streamAll[pb.QueryRangeResponse](ctx, conn, "/tempopb.StreamingQuerier/MetricsQueryRange", &pb.QueryRangeRequest{
			Query: "{ } | count_over_time() by (resource.service.name)", Start: uint64(now.Add(-time.Hour).UnixNano()),
			End: uint64(now.Add(time.Minute).UnixNano()), Step: uint64(time.Minute)})
		var b strings.Builder
		for _, m := range msgs {
			for _, ser := range m.Series {
				b.WriteString(ser.PromLabels + "\n")
			}
		}
		return b.String(), err
	}
	for _, call := range []struct {
		name string
		fn   func(md ...string) (string, error)
		own  func(tenantData) string
	}{{"Search", search, func(d tenantData) string { return d.traceID }}, {"MetricsQueryRange", metrics, func(d tenantData) string { return d.service }}} {
		for _, c := range []struct {
			own, other tenantData
			md         []string
		}{
			{alpha, bravo, []string{"authorization", "Bearer " + tokRead, "x-scope-orgid", "alpha"}},
			{bravo, alpha, []string{"authorization", "Bearer " + tokRead, "x-scope-orgid", "bravo"}},
			// A token bound to one tenant needs no metadata naming it.
			{alpha, bravo, []string{"authorization", "Bearer alpha-read-token"}},
		} {
			got, err := call.fn(c.md...)
			if err != nil {
				t.Errorf("%s as %s (%v): %v", call.name, c.own.name, c.md[:2], err)
				continue
			}
			if !strings.Contains(got, call.own(c.own)) {
				t.Errorf("%s as %s: own %q missing from %q", call.name, c.own.name, call.own(c.own), got)
			}
			for _, m := range c.other.markers() {
				if strings.Contains(got, m) {
					t.Errorf("%s as %s: LEAK of %s's %q in %q", call.name, c.own.name, c.other.name, m, got)
				}
			}
		}
		for _, c := range []struct {
			why  string
			md   []string
			want codes.Code
		}{
			{"no tenant", []string{"authorization", "Bearer " + tokRead}, codes.Unauthenticated},
			{"no token", []string{"x-scope-orgid", "alpha"}, codes.Unauthenticated},
			{"wrong token", []string{"authorization", "Bearer nope", "x-scope-orgid", "alpha"}, codes.Unauthenticated},
			{"a write token", []string{"authorization", "Bearer " + tokWrite, "x-scope-orgid", "alpha"}, codes.PermissionDenied},
			{"alpha's token asking for bravo", []string{"authorization", "Bearer alpha-read-token", "x-scope-orgid", "bravo"}, codes.PermissionDenied},
			{"a|b", []string{"authorization", "Bearer " + tokRead, "x-scope-orgid", "alpha|bravo"}, codes.InvalidArgument},
		} {
			got, err := call.fn(c.md...)
			if status.Code(err) != c.want {
				t.Errorf("%s with %s: %v, want %v", call.name, c.why, err, c.want)
			}
			if got != "" {
				t.Errorf("%s with %s answered %q", call.name, c.why, got)
			}
		}
	}
}
