package receive

import (
	"context"
	"net/http"
	"strings"

	"google.golang.org/grpc/metadata"
)

// TenantHeader names the tenant of a request, as in Grafana Tempo's multi-tenancy, so senders
// and collectors already configured for Tempo need no change.
const TenantHeader = "X-Scope-OrgID"

// DefaultTenant is the tenant of requests that name none.
const DefaultTenant = "single-tenant"

type tenantKey struct{}

// Tenant returns the tenant the receivers found on the request that ctx belongs to.
func Tenant(ctx context.Context) string {
	if t, ok := ctx.Value(tenantKey{}).(string); ok && t != "" {
		return t
	}
	return DefaultTenant
}

func withTenant(ctx context.Context, tenant string) context.Context {
	tenant = strings.TrimSpace(tenant)
	if tenant == "" {
		return ctx
	}
	return context.WithValue(ctx, tenantKey{}, tenant)
}

func grpcTenant(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(strings.ToLower(TenantHeader)); len(v) > 0 {
		return v[0]
	}
	return ""
}

// TenantFromHeader gives handlers that take the tenant from Tenant(ctx), rather than from the
// request, the request's X-Scope-OrgID: the Zipkin receiver.
func TenantFromHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(withTenant(r.Context(), r.Header.Get(TenantHeader))))
	})
}
