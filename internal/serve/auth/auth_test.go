package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func mustNew(t *testing.T, cfg Config) *Authenticator {
	t.Helper()
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func testTokens() Config {
	return Config{Enabled: true, Tokens: []Token{
		{Name: "writer-a", SHA256: HashToken("wa"), Role: RoleWrite, Tenants: []string{"a"}},
		{Name: "reader-a", SHA256: HashToken("ra"), Role: RoleRead, Tenants: []string{"a"}},
		{Name: "reader-ab", SHA256: HashToken("rab"), Role: RoleRead, Tenants: []string{"a", "b"}},
		{Name: "admin", SHA256: strings.ToUpper(HashToken("adm")), Role: RoleAdmin, Tenants: []string{"*"}},
		{Name: "scraper", SHA256: HashToken("m"), Role: RoleMetrics},
	}}
}

func reason(err error) Failure {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	if err != nil {
		return "other: " + Failure(err.Error())
	}
	return ""
}

func TestResolve(t *testing.T) {
	g := &Gate{Auth: mustNew(t, testTokens()), Multitenancy: true, Listener: "test"}
	read := Rule{Need: RoleRead, Tenant: true, Federated: true}
	write := Rule{Need: RoleWrite, Tenant: true}
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, c := range []struct {
		name, authz, tenant string
		rule                Rule
		want                string
		fail                Failure
	}{
		{"no token", "", "a", read, "", FailMissing},
		{"not bearer", "Token ra", "a", read, "", FailMissing},
		{"empty bearer", "Bearer ", "a", read, "", FailMissing},
		{"wrong token", "Bearer nope", "a", read, "", FailInvalid},
		{"the hash is not the token", "Bearer " + HashToken("ra"), "a", read, "", FailInvalid},
		{"wrong role", "Bearer wa", "a", read, "", FailRole},
		{"reader writing", "Bearer ra", "a", write, "", FailRole},
		{"token for another tenant", "Bearer ra", "b", read, "", FailTenant},
		{"tenant from a one-tenant token", "Bearer ra", "", read, "a", ""},
		{"header agrees", "bearer ra", "a", read, "a", ""},
		{"several tenants need the header", "Bearer rab", "", read, "", FailNoTenant},
		{"federated read", "Bearer rab", "b|a|b", read, "b|a", ""},
		{"federated read past the token", "Bearer ra", "a|b", read, "", FailTenant},
		{"federated write", "Bearer wa", "a|a", write, "", FailBadTenant},
		{"admin any tenant", "Bearer adm", "zzz", read, "zzz", ""},
		{"admin writes", "Bearer adm", "zzz", write, "zzz", ""},
		{"admin must still name one", "Bearer adm", "", read, "", FailNoTenant},
		{"path in tenant", "Bearer adm", "../etc", read, "", FailBadTenant},
		{"dot", "Bearer adm", "..", read, "", FailBadTenant},
		{"slash", "Bearer adm", "a/b", read, "", FailBadTenant},
		{"basic auth password", basic("anyone", "ra"), "", read, "a", ""},
		{"basic auth wrong", basic("ra", "x"), "", read, "", FailInvalid},
		{"metrics role", "Bearer m", "", Rule{Need: RoleMetrics}, "", ""},
		{"reader on metrics", "Bearer ra", "", Rule{Need: RoleMetrics}, "", FailRole},
		{"admin on metrics", "Bearer adm", "", Rule{Need: RoleMetrics}, "", ""},
		{"open", "", "", Rule{Open: true}, "", ""},
	} {
		got, err := g.Resolve(c.authz, c.tenant, c.rule)
		if got != c.want || reason(err) != c.fail {
			t.Errorf("%s: %q, %v; want %q, %q", c.name, got, err, c.want, c.fail)
		}
	}

	// Multi-tenancy off: one tenant whatever the header says, so rotating it gains nothing.
	g.Multitenancy = false
	if got, err := g.Resolve("Bearer wa", "b", write); got != "" || err != nil {
		t.Errorf("single tenant: %q, %v", got, err)
	}
	// Authentication off, multi-tenancy on: the header is required, and only checked.
	g = &Gate{Auth: mustNew(t, Config{}), Multitenancy: true}
	if _, err := g.Resolve("", "", write); reason(err) != FailNoTenant {
		t.Errorf("no tenant without auth: %v", err)
	}
	if got, err := g.Resolve("", "x|y", read); got != "x|y" || err != nil {
		t.Errorf("federated without auth: %q, %v", got, err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Enabled: true}, "no tokens"},
		{Config{Enabled: true, Tokens: []Token{{Name: "x", SHA256: "secret-token", Role: RoleRead}}}, "64 hex digits"},
		{Config{Enabled: true, Tokens: []Token{{Name: "x", SHA256: HashToken("a"), Role: "root"}}}, `role "root"`},
		{Config{Enabled: true, Tokens: []Token{{SHA256: HashToken("a"), Role: RoleRead}, {SHA256: HashToken("a"), Role: RoleWrite}}}, "twice"},
		{Config{Enabled: true, Tokens: []Token{{SHA256: HashToken("a"), Role: RoleRead, Tenants: []string{"a|b"}}}}, "not a tenant"},
	} {
		if _, err := New(c.cfg, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
}

// BenchmarkGate is the check every request pays with authentication on: parse the header, hash
// the token, look it up, check the role and the tenant.
func BenchmarkGate(b *testing.B) {
	a, err := New(Config{Enabled: true, Tokens: []Token{
		{Name: "sdk", SHA256: HashToken("write-token-0123456789abcdef"), Role: RoleWrite, Tenants: []string{"alpha", "bravo"}},
	}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, mt := range []bool{false, true} {
		name := "multitenancy=off"
		if mt {
			name = "multitenancy=on"
		}
		b.Run(name, func(b *testing.B) {
			g := &Gate{Auth: a, Multitenancy: mt, Listener: "otlp_grpc"}
			rule := Rule{Need: RoleWrite, Tenant: true}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.Resolve("Bearer write-token-0123456789abcdef", "bravo", rule); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
