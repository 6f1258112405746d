package traffic

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func TestTraceID(t *testing.T) {
	if got := traceID("00-4bf92f3577b34da6a3ce929d0e0e4736-7d2ea792e2df6a01-01"); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("got %q", got)
	}
	for _, bad := range []string{"", "00-short-7d2ea792e2df6a01-01", "garbage"} {
		if got := traceID(bad); got != "" {
			t.Errorf("%q: got %q", bad, got)
		}
	}
}

// TestRunCoversEveryStory checks that the first round plays every story, against a stub that
// answers everything, and that Run returns once ctx is done.
func TestRunCoversEveryStory(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("traceresponse", "00-4bf92f3577b34da6a3ce929d0e0e4736-7d2ea792e2df6a01-01")
		if r.Method == http.MethodPost && r.URL.Path == "/api/tasks" {
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"id":"t1"}`))
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	var mu sync.Mutex
	seen := map[Story]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := Run(ctx, Options{BaseURL: srv.URL, Rate: 50, OnTrace: func(tr Trace) {
		mu.Lock()
		seen[tr.Story] = true
		mu.Unlock()
	}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range order {
		if !seen[s] {
			t.Errorf("story %s never played", s)
		}
	}
}
