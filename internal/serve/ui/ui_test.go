package ui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPagesServeIndex(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/", "/search", "/search?q=%7B%7D", "/services", "/services?service=task-api", "/lints", "/trace/4bf92f3577b34da6a3ce929d0e0e4736", "/trace/abc?span=00f067aa0ba902b7"} {
		r := get(t, h, p)
		if r.StatusCode != 200 {
			t.Fatalf("%s: %d", p, r.StatusCode)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("%s: Content-Type %q", p, ct)
		}
		if cc := r.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("%s: Cache-Control %q; index.html must be revalidated so a new binary's assets load", p, cc)
		}
		b := body(t, r)
		if !strings.Contains(b, `src="`+AssetPrefix+`app.js"`) || strings.Contains(b, "{{ASSETS}}") {
			t.Errorf("%s: index.html does not point at the versioned assets:\n%s", p, b)
		}
	}
}

// Everything that is not a page or an asset is a 404 here, so that mounted as "GET /" the UI
// never answers for an API path another handler has not registered (yet).
func TestOtherPathsAreNotFound(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/api/search", "/api/v2/search/tags", "/ready", "/metrics", "/debug/pprof/", "/trace/", "/trace/a/b",
		"/favicon.ico", "/assets/", AssetPrefix, AssetPrefix + "index.html", "/assets/000000000000/app.js", "/static/app.js", "/index.html"} {
		if r := get(t, h, p); r.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, r.StatusCode)
		}
	}
}

func TestAssets(t *testing.T) {
	h := Handler()
	want := map[string]string{
		"app.js":      "text/javascript",
		"style.css":   "text/css",
		"favicon.svg": "image/svg+xml",
	}
	for name, ct := range want {
		r := get(t, h, AssetPrefix+name)
		if r.StatusCode != 200 {
			t.Fatalf("%s: %d", name, r.StatusCode)
		}
		if got := r.Header.Get("Content-Type"); !strings.HasPrefix(got, ct) {
			t.Errorf("%s: Content-Type %q, want %s", name, got, ct)
		}
		if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("%s: Cache-Control %q", name, cc)
		}
	}
}

// Every relative import between the modules must name an embedded file: a typo would only show
// in a browser otherwise.
func TestModuleImportsResolve(t *testing.T) {
	imp := regexp.MustCompile(`(?m)^import .* from "\./([^"]+)";`)
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".js") {
			return err
		}
		b, _ := staticFS.ReadFile(p)
		for _, m := range imp.FindAllStringSubmatch(string(b), -1) {
			if _, err := staticFS.ReadFile("static/" + m[1]); err != nil {
				t.Errorf("%s imports %s, which is not embedded", p, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVersionIsStable(t *testing.T) {
	if a, b := version(), version(); a != b || len(a) != 12 {
		t.Fatalf("version %q then %q", a, b)
	}
}

// Every page and asset carries the browser protections, and the policy allows no inline script.
func TestSecurityHeaders(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/", "/trace/abc", AssetPrefix + "app.js", "/no-such-page"} {
		r := get(t, h, p)
		csp := r.Header.Get("Content-Security-Policy")
		for _, want := range []string{"script-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: Content-Security-Policy %q lacks %q", p, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: Content-Security-Policy %q allows inline code", p, csp)
		}
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"} {
			if got := r.Header.Get(k); got != v {
				t.Errorf("%s: %s %q, want %q", p, k, got, v)
			}
		}
	}
}

// The UI's sources never turn strings into markup or code: span data reaches the page only as
// text. This audit keeps a future edit from quietly reintroducing innerHTML and the like; the
// browser test in internal/serve/server proves the same against real payloads.
func TestNoMarkupFromStrings(t *testing.T) {
	bad := regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*["'](style|on|href|src)|\.srcdoc|createContextualFragment|DOMParser`)
	inline := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|\son[a-z]+\s*=|style\s*=|javascript:`)
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasSuffix(p, ".js"):
			for i, line := range strings.Split(string(b), "\n") {
				if bad.MatchString(line) {
					t.Errorf("%s:%d builds markup or code from a string: %s", p, i+1, strings.TrimSpace(line))
				}
			}
		case strings.HasSuffix(p, ".html"):
			if m := inline.FindString(string(b)); m != "" {
				t.Errorf("%s has inline script or style (%q), which the Content-Security-Policy refuses", p, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
