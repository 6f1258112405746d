package auth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TenantHeader names the tenant of a request, as in Grafana Tempo (gRPC metadata: its lower-case
// form).
const TenantHeader = "X-Scope-OrgID"

// DefaultTenant is the one tenant when multi-tenancy is off, Tempo's name for it.
const DefaultTenant = "single-tenant"

// Rule is what a request must bring.
type Rule struct {
	Open      bool // nothing: health checks
	Need      Role // the role its token must have
	Tenant    bool // it acts for a tenant: receivers and reads of trace data
	Federated bool // it may name several tenants as a|b (reads)
}

// Gate guards a listener: it checks the token, works out the tenant and rewrites the request so
// that the tenant header (metadata) holds exactly that tenant, or nothing when multi-tenancy is
// off. Handlers behind it read the tenant from the header as they always have; a caller cannot
// choose another.
type Gate struct {
	Auth         *Authenticator
	Multitenancy bool
	Listener     string // for the failure counter: otlp_grpc, otlp_http, zipkin, http
}

// Resolve checks a request's credentials and requested tenant against rule and answers the
// tenant it acts for ("" when the rule names none or multi-tenancy is off, which means
// DefaultTenant to the receivers). Refusals are counted.
func (g *Gate) Resolve(authorization, requested string, rule Rule) (string, error) {
	tenant, err := g.resolve(authorization, requested, rule)
	if err != nil {
		g.Auth.Count(g.Listener, err)
	}
	return tenant, err
}

func (g *Gate) resolve(authorization, requested string, rule Rule) (string, error) {
	if rule.Open {
		return "", nil
	}
	p, err := g.Auth.Check(authorization, rule.Need)
	if err != nil {
		return "", err
	}
	if !rule.Tenant || !g.Multitenancy {
		return "", nil
	}
	requested = strings.TrimSpace(requested)
	if requested == "" {
		if p != nil && !p.all && len(p.tenants) == 1 {
			return p.tenants[0], nil
		}
		return "", &Error{Reason: FailNoTenant}
	}
	parts := strings.Split(requested, "|")
	if len(parts) > 1 && !rule.Federated {
		return "", &Error{Reason: FailBadTenant}
	}
	seen := make([]string, 0, len(parts))
	for _, t := range parts {
		t = strings.TrimSpace(t)
		if !ValidTenant(t) {
			return "", &Error{Reason: FailBadTenant}
		}
		if p != nil && !p.MayActFor(t) {
			return "", &Error{Reason: FailTenant}
		}
		if !contains(seen, t) {
			seen = append(seen, t)
		}
	}
	return strings.Join(seen, "|"), nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// ValidTenant reports whether t may name a tenant: Tempo's character set without '*', at most
// 150 bytes, and never "." or "..", because a tenant becomes a directory name.
func ValidTenant(t string) bool {
	if t == "" || len(t) > 150 || t == "." || t == ".." {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!-_.'()", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Tenants splits a resolved tenant ("a|b") into its tenants.
func Tenants(resolved string) []string {
	if resolved == "" {
		return []string{DefaultTenant}
	}
	return strings.Split(resolved, "|")
}

// challenge asks for a bearer token, and for Basic so that a browser opening the API prompts for
// it (the token goes in the password field), as Grafana's basic-auth setting sends it.
const challenge = `Bearer realm="ariadne", Basic realm="ariadne", charset="UTF-8"`

// HTTP guards next with the rule rule picks for each request.
func (g *Gate) HTTP(rule func(*http.Request) Rule, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ru := rule(r)
		tenant, err := g.Resolve(r.Header.Get("Authorization"), r.Header.Get(TenantHeader), ru)
		if err != nil {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				writeGRPCError(w, err)
				return
			}
			writeHTTPError(w, r, err)
			return
		}
		if !ru.Open {
			// What the caller sent is replaced by what it may act for; an empty header means the
			// default tenant downstream.
			if tenant == "" {
				r.Header.Del(TenantHeader)
			} else {
				r.Header.Set(TenantHeader, tenant)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Static is a rule function that gives every request the same rule.
func Static(ru Rule) func(*http.Request) Rule { return func(*http.Request) Rule { return ru } }

// UIHeader marks the UI's own API calls: their refusals challenge for a bearer token only, so the
// browser does not put its Basic-auth prompt over the UI's login form.
const UIHeader = "X-Ariadne-UI"

func writeHTTPError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	code := http.StatusForbidden
	if errors.As(err, &e) {
		switch {
		case e.Unauthenticated():
			code = http.StatusUnauthorized
			if r.Header.Get(UIHeader) != "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="ariadne"`)
			} else {
				w.Header().Set("WWW-Authenticate", challenge)
			}
		case e.Reason == FailBadTenant:
			code = http.StatusBadRequest
		}
	}
	http.Error(w, err.Error(), code)
}

// writeGRPCError refuses a gRPC call that reached an HTTP listener (Tempo's streaming API on the
// query port) the way a gRPC server would: a trailers-only answer with the status code, so the
// client sees Unauthenticated or PermissionDenied rather than a bare HTTP status.
func writeGRPCError(w http.ResponseWriter, err error) {
	st, _ := status.FromError(grpcError(err))
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Grpc-Status", strconv.Itoa(int(st.Code())))
	w.Header().Set("Grpc-Message", url.PathEscape(st.Message()))
	w.WriteHeader(http.StatusOK)
}

// UnaryServerInterceptor guards every unary gRPC call with rule, reading the token from the
// `authorization` metadata (what OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer … sends) and
// rewriting the x-scope-orgid metadata to the resolved tenant.
func (g *Gate) UnaryServerInterceptor(rule Rule) grpc.UnaryServerInterceptor {
	key := strings.ToLower(TenantHeader)
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		tenant, err := g.Resolve(first(md.Get("authorization")), first(md.Get(key)), rule)
		if err != nil {
			return nil, grpcError(err)
		}
		md = md.Copy()
		if tenant == "" {
			delete(md, key)
		} else {
			md.Set(key, tenant)
		}
		return handler(metadata.NewIncomingContext(ctx, md), req)
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func grpcError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		switch {
		case e.Unauthenticated():
			return status.Error(codes.Unauthenticated, err.Error())
		case e.Reason == FailBadTenant:
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
	return status.Error(codes.PermissionDenied, err.Error())
}
