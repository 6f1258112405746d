package api

import (
	"net/http"
	"strings"

	"github.com/ariadne-tracing/ariadne/internal/storage/partial"
)

// PartialHeader is set on any answer that had to leave data out (a damaged block was skipped);
// its value is why. Tempo marks such answers with a partial status; a header works for every
// endpoint and every encoding, so clients and people can both see it.
const PartialHeader = "X-Ariadne-Partial"

// withPartial gives each request a partial report and sets PartialHeader from it when the
// handler starts its answer, which is after it has read what it answers from.
func withPartial(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, rep := partial.New(r.Context())
		next.ServeHTTP(&partialWriter{ResponseWriter: w, rep: rep}, r.WithContext(ctx))
	})
}

type partialWriter struct {
	http.ResponseWriter
	rep     *partial.Report
	started bool
}

func (p *partialWriter) start() {
	if p.started {
		return
	}
	p.started = true
	if reasons := p.rep.Reasons(); len(reasons) > 0 {
		// Header values must be one line.
		v := strings.Join(reasons, "; ")
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
		p.Header().Set(PartialHeader, v)
	}
}

func (p *partialWriter) WriteHeader(code int) {
	p.start()
	p.ResponseWriter.WriteHeader(code)
}

func (p *partialWriter) Write(b []byte) (int, error) {
	p.start()
	return p.ResponseWriter.Write(b)
}

// Flush keeps streaming answers streaming.
func (p *partialWriter) Flush() {
	p.start()
	if f, ok := p.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (p *partialWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
