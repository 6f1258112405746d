// Package ui serves Ariadne's web interface: plain ES modules, HTML and CSS embedded in the
// binary, reading the query API on the same origin. Nothing here needs Node to build or run.
//
// Pages (/, /search, /services, /compare, /trace/{id}, /lints) all get index.html; the script routes on the path.
// Assets live under /assets/{version}/, where version is a hash of the embedded files, so they
// can be cached forever: a new binary with different files has a different prefix, and
// index.html itself is never cached. The modules import each other by relative path, which is
// what keeps them all under the same version.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"
)

//go:embed static
var staticFS embed.FS

// AssetPrefix is the path assets are served under; index.html refers to it.
var AssetPrefix = "/assets/" + version() + "/"

var index = func() []byte {
	b, err := staticFS.ReadFile("static/index.html")
	if err != nil {
		panic(err)
	}
	return bytes.ReplaceAll(b, []byte("{{ASSETS}}"), []byte(AssetPrefix))
}()

// version hashes every embedded file's name and content, so it changes exactly when they do.
func version() string {
	h := sha256.New()
	var names []string
	fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	for _, n := range names {
		b, _ := staticFS.ReadFile(n)
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Handler serves the pages and the assets. Mount it as "GET /" on the query API's mux: every
// more specific pattern there (/api/..., /ready, /debug/..., /metrics) wins over it, and this
// handler answers 404 for any path that is not one of its own, so an endpoint that does not
// exist yet reads as missing rather than as a page.
func Handler() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	assets := http.StripPrefix(AssetPrefix, http.FileServerFS(sub))
	return SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case isPage(p):
			h := w.Header()
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Cache-Control", "no-cache")
			http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(index))
		case strings.HasPrefix(p, AssetPrefix) && !strings.HasSuffix(p, "/") && p != AssetPrefix+"index.html":
			// Go's mime table lacks .mjs on some systems and module scripts must not be
			// served as text/plain; set the type from the extension ourselves.
			if t := mime.TypeByExtension(path.Ext(p)); t != "" {
				w.Header().Set("Content-Type", t)
			}
			if path.Ext(p) == ".js" {
				w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			}
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
			assets.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
}

// Shell reports whether p is one of the UI's pages or assets: files that are the same for every
// caller and hold no data, so they load before the user has given a token (the UI's own login
// form asks for it; everything the pages show comes from the API, which checks it).
func Shell(p string) bool {
	return isPage(p) || (strings.HasPrefix(p, AssetPrefix) && !strings.HasSuffix(p, "/"))
}

// isPage reports whether p is one of the UI's routes, which all serve index.html.
func isPage(p string) bool {
	switch p {
	case "/", "/search", "/services", "/lints", "/compare":
		return true
	}
	id, ok := strings.CutPrefix(p, "/trace/")
	return ok && id != "" && !strings.Contains(id, "/")
}

// ContentSecurityPolicy allows only the UI's own files: no inline script or style, no eval, no
// plugins, no framing. Span data is attacker-controlled (anyone who can send a span can name it
// "<script>…"), so even a rendering mistake must not be able to run code.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// SecurityHeaders sets the browser protections on every response of the port that serves the UI:
// the policy above, no content sniffing (a JSON body holding "<html>" stays JSON), no referrer
// leaving the origin (trace IDs are in the URLs), and no framing (clickjacking).
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}
