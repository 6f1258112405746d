package server_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ariadne-tracing/ariadne/internal/serve/auth"
)

// TestUITenants: with authentication and multi-tenancy on, the UI in headless Chromium asks for a
// token (a wrong one is refused with a clear message), reads as the token's tenant, offers only
// the tenants the token may read in its picker, and a reader of every tenant switches between
// them (and reads all at once, a|b). Each tenant's page shows only that tenant's traces.
func TestUITenants(t *testing.T) {
	needChromium(t)
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

	browser := startBrowser(t)
	base := "http://" + s.HTTPAddr
	signIn := func(tb *tab, token string) {
		t.Helper()
		b, _ := json.Marshal(token)
		eval[bool](tb, `(() => { document.querySelector(".login-form input").value = `+string(b)+`;
			document.querySelector(".login-form").requestSubmit(); return true })()`)
		tb.waitReady()
	}
	mainText := func(tb *tab) string { return eval[string](tb, `document.querySelector("#main").innerText`) }
	shows := func(tb *tab, who string, want, not []tenantData) {
		t.Helper()
		text := mainText(tb)
		for _, d := range want {
			if !strings.Contains(text, d.service) {
				t.Errorf("%s: %s's trace not listed:\n%.600s", who, d.name, text)
			}
		}
		for _, d := range not {
			if strings.Contains(text, d.service) || strings.Contains(text, d.op) {
				t.Errorf("%s: LEAK of %s's trace:\n%.600s", who, d.name, text)
			}
		}
	}
	picker := func(tb *tab) string {
		return eval[string](tb, `[...document.querySelectorAll(".tenant-picker option")].map(o => o.value + (o.selected ? "*" : "")).join(",")`)
	}
	pick := func(tb *tab, tenant string) {
		t.Helper()
		b, _ := json.Marshal(tenant)
		eval[bool](tb, `(() => { const s = document.querySelector(".tenant-picker"); s.value = `+string(b)+`;
			s.dispatchEvent(new Event("change")); return true })()`)
		tb.waitReady()
	}

	// The login form is drawn from a refused /api/status/tenants, and bravo's trace is not
	// found for alpha: the browser logs both responses.
	t.Run("alpha's reader", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.expect("status of 401 (Unauthorized) (http://"+s.HTTPAddr+"/api/status/tenants", "status of 404 (Not Found) (http://"+s.HTTPAddr+"/api/v2/traces/"+bravo.traceID,
			"status of 404 (Not Found) (http://"+s.HTTPAddr+"/api/analysis/traces/"+bravo.traceID)
		tb.open("/search")
		if eval[int](tb, `document.querySelectorAll(".login-form input[type=password]").length`) != 1 {
			t.Fatalf("no login form without a token:\n%s", mainText(tb))
		}
		signIn(tb, "not-a-token")
		if got := eval[string](tb, `document.querySelector(".login [role=alert]")?.textContent ?? ""`); !strings.Contains(got, "not accepted (401)") {
			t.Errorf("a wrong token's error: %q", got)
		}
		tb.screenshot("tenants-login-refused")
		signIn(tb, "alpha-read-token")
		if n := eval[int](tb, `document.querySelectorAll(".login-form").length`); n != 0 {
			t.Fatalf("still on the login form after a good token:\n%s", mainText(tb))
		}
		if got := picker(tb); got != "alpha*" {
			t.Errorf("picker for a token bound to alpha: %q, want only alpha", got)
		}
		shows(tb, "alpha's UI", []tenantData{alpha}, []tenantData{bravo})
		tb.screenshot("tenants-alpha-search")
		if got := eval[string](tb, `sessionStorage.getItem("ariadne-token")`); got != "alpha-read-token" {
			t.Errorf("token kept as %q", got)
		}
		// Bravo's trace does not exist for alpha's reader.
		tb.open("/trace/" + bravo.traceID)
		if text := mainText(tb); strings.Contains(text, bravo.service) || !strings.Contains(strings.ToLower(text), "not found") {
			t.Errorf("bravo's trace opened by alpha's reader:\n%.600s", text)
		}
		tb.screenshot("tenants-alpha-bravos-trace")
	})
	t.Run("reader of every tenant", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.expect("status of 401 (Unauthorized) (http://" + s.HTTPAddr + "/api/status/tenants")
		tb.open("/search")
		signIn(tb, tokRead)
		if got := picker(tb); got != "alpha*,bravo,alpha|bravo" {
			t.Errorf("picker for a reader of every tenant: %q", got)
		}
		shows(tb, "as alpha", []tenantData{alpha}, []tenantData{bravo})
		pick(tb, "bravo")
		shows(tb, "as bravo", []tenantData{bravo}, []tenantData{alpha})
		if got := eval[string](tb, `location.pathname + " " + sessionStorage.getItem("ariadne-tenant")`); got != "/search bravo" {
			t.Errorf("after picking bravo: %q", got)
		}
		pick(tb, "alpha|bravo")
		shows(tb, "as alpha|bravo", []tenantData{alpha, bravo}, nil)
		// Signing out forgets the token: the login form again.
		tb.do(chromedp.Click(chromedp.CSS(".sign-out")))
		// The page reloads: polling may meet the old document going away.
		var err error
		for range 50 {
			if _, err = chromedp.Run(tb.ctx, chromedp.Poll[bool](`document.querySelectorAll(".login-form").length === 1`,
				chromedp.WithPollingTimeout(time.Minute))); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("no login form after signing out: %v", err)
		}
		if eval[string](tb, `sessionStorage.getItem("ariadne-token") ?? ""`) != "" {
			t.Errorf("after signing out:\n%s", mainText(tb))
		}
	})
}
