// Package auth decides who may call Ariadne: bearer tokens, listed in the configuration only by
// their SHA-256, each bound to a role and to the tenants it may act for.
//
// The package answers one question, Check, and offers it in the two shapes the listeners need:
// an HTTP middleware (OTLP/HTTP, Zipkin, the query API, the UI, /metrics) and a gRPC interceptor
// (OTLP/gRPC). With authentication on, the tenant of a request is the token's, not whatever the
// caller put in X-Scope-OrgID: the middleware rewrites the header (the gRPC metadata) to the
// tenant it resolved, so everything downstream reads the tenant the way it always has.
package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Role is what a token may do. Admin may do everything.
type Role string

const (
	RoleWrite   Role = "write"   // the receivers: OTLP gRPC and HTTP, Zipkin
	RoleRead    Role = "read"    // the query API and the UI
	RoleMetrics Role = "metrics" // /metrics, for a Prometheus scraper that should read nothing else
	RoleAdmin   Role = "admin"   // everything, including /debug/pprof
	// RoleInternal is a node of the cluster asking another (/internal/ on the query port):
	// trace parts and heads of any tenant it names, and nothing of the public API.
	RoleInternal Role = "internal"
)

// allows reports whether a token of role r may do what needs role need.
func (r Role) allows(need Role) bool { return r == RoleAdmin || r == need }

// AllTenants in a token's tenant list lets it act for any tenant.
const AllTenants = "*"

// Token is one accepted bearer token, as the configuration file lists it.
type Token struct {
	// Name identifies the token in logs and metrics; the token itself is never logged.
	Name string `yaml:"name"`
	// SHA256 is the hex SHA-256 of the token (`ariadne hash-token`, or
	// `printf %s "$TOKEN" | sha256sum`). The token itself never appears in the file.
	SHA256  string   `yaml:"sha256"`
	Role    Role     `yaml:"role"`
	Tenants []string `yaml:"tenants"` // "*" for all; ignored when multi-tenancy is off
}

// Config is the `auth` section of the configuration.
type Config struct {
	Enabled bool    `yaml:"enabled"`
	Tokens  []Token `yaml:"tokens"`
}

// HashToken is how a token is stored in the configuration: lower-case hex SHA-256. A token is a
// long random secret, not a password, so a fast hash is the right one: there is nothing to
// brute-force that the token's own length does not already prevent.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Principal is the caller a token identifies.
type Principal struct {
	Name    string
	Role    Role
	all     bool
	tenants []string
}

// MayActFor reports whether the principal may act for tenant.
func (p *Principal) MayActFor(tenant string) bool {
	return p.all || slices.Contains(p.tenants, tenant)
}

// Tenants are the tenants the principal is bound to by name, and whether it may act for all.
func (p *Principal) Tenants() (names []string, all bool) {
	return append([]string(nil), p.tenants...), p.all
}

// Failure is why a request was refused. Every reason answers the caller the same way (401 or
// 403 with a fixed message), so a refusal never tells whether a tenant or a trace exists.
type Failure string

const (
	FailMissing Failure = "missing" // no credentials: 401
	FailInvalid Failure = "invalid" // credentials that match no token: 401
	FailRole    Failure = "role"    // a valid token without the role: 403
	FailTenant  Failure = "tenant"  // a valid token asking for a tenant it is not bound to: 403
	// With multi-tenancy on, a request that names no tenant (and whose token does not imply
	// one): 401, as Tempo answers.
	FailNoTenant  Failure = "no_tenant"
	FailBadTenant Failure = "bad_tenant" // a tenant name that cannot be one (or a|b where only one tenant may be): 400
)

// Error is a refused request.
type Error struct{ Reason Failure }

func (e *Error) Error() string {
	switch e.Reason {
	case FailMissing, FailInvalid:
		return "unauthenticated: a valid bearer token is required"
	case FailRole:
		return "permission denied: the token's role does not allow this"
	case FailNoTenant:
		return "unauthenticated: no tenant: set the X-Scope-OrgID header (gRPC metadata x-scope-orgid)"
	case FailBadTenant:
		return "bad tenant: a tenant is 1 to 150 of the characters A-Z a-z 0-9 ! - _ . ' ( ), not . or .." +
			", and a|b names several tenants only when reading"
	default:
		return "permission denied: the token is not allowed for this tenant"
	}
}

// Unauthenticated reports whether the caller failed to prove who it is (as opposed to being
// known but not allowed).
func (e *Error) Unauthenticated() bool {
	return e.Reason == FailMissing || e.Reason == FailInvalid || e.Reason == FailNoTenant
}

// Authenticator checks credentials against the configured tokens.
type Authenticator struct {
	enabled  bool
	byHash   map[[sha256.Size]byte]*Principal
	failures *prometheus.CounterVec
}

// New validates cfg and returns its authenticator; with cfg.Enabled false it lets every request
// through (Check answers a nil principal) but still counts refusals for missing tenants. reg,
// when not nil, receives ariadne_auth_failures_total.
func New(cfg Config, reg prometheus.Registerer) (*Authenticator, error) {
	a := &Authenticator{enabled: cfg.Enabled, byHash: map[[sha256.Size]byte]*Principal{}}
	if cfg.Enabled && len(cfg.Tokens) == 0 {
		return nil, errors.New("auth: enabled but no tokens listed: nothing could authenticate")
	}
	for i, t := range cfg.Tokens {
		name := t.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		raw, err := hex.DecodeString(strings.TrimSpace(t.SHA256))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("auth: token %s: sha256 must be 64 hex digits (the token's SHA-256, never the token)", name)
		}
		switch t.Role {
		case RoleWrite, RoleRead, RoleMetrics, RoleAdmin, RoleInternal:
		default:
			return nil, fmt.Errorf("auth: token %s: role %q must be write, read, metrics, admin or internal", name, t.Role)
		}
		key := [sha256.Size]byte(raw)
		if _, dup := a.byHash[key]; dup {
			return nil, fmt.Errorf("auth: token %s: the same token is listed twice", name)
		}
		p := &Principal{Name: name, Role: t.Role}
		for _, tn := range t.Tenants {
			tn = strings.TrimSpace(tn)
			switch {
			case tn == AllTenants:
				p.all = true
			case tn == "" || strings.Contains(tn, "|"):
				return nil, fmt.Errorf("auth: token %s: tenant %q is not a tenant name", name, tn)
			default:
				p.tenants = append(p.tenants, tn)
			}
		}
		a.byHash[key] = p
	}
	a.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ariadne_auth_failures_total",
		Help: "Requests refused by authentication, by listener and reason: missing, invalid, role, tenant, no_tenant, bad_tenant."}, []string{"listener", "reason"})
	if reg != nil {
		if err := reg.Register(a.failures); err != nil {
			return nil, fmt.Errorf("auth: register metrics: %w", err)
		}
	}
	return a, nil
}

// Enabled reports whether tokens are checked.
func (a *Authenticator) Enabled() bool { return a.enabled }

// Check finds the token in an Authorization header value ("Bearer <token>", or HTTP Basic with
// the token as password, which is what a browser and Grafana's basic-auth setting send) and
// checks its role. With authentication off it answers a nil principal and no error.
func (a *Authenticator) Check(authorization string, need Role) (*Principal, error) {
	if !a.enabled {
		return nil, nil
	}
	tok, ok := credential(authorization)
	if !ok {
		return nil, &Error{Reason: FailMissing}
	}
	// The lookup is by hash, so how long it takes depends on the token's hash, never on how
	// much of a secret the caller guessed right.
	p := a.byHash[sha256.Sum256([]byte(tok))]
	if p == nil {
		return nil, &Error{Reason: FailInvalid}
	}
	if !p.Role.allows(need) {
		return p, &Error{Reason: FailRole}
	}
	return p, nil
}

// Count records a refusal on listener.
func (a *Authenticator) Count(listener string, err error) {
	var e *Error
	if errors.As(err, &e) {
		a.failures.WithLabelValues(listener, string(e.Reason)).Inc()
	}
}

func credential(h string) (string, bool) {
	h = strings.TrimSpace(h)
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest, rest != ""
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", false
		}
		_, pass, ok := strings.Cut(string(b), ":")
		return pass, ok && pass != ""
	}
	return "", false
}
