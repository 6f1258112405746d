package connlimit

import (
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

func startHTTP(t *testing.T, max int, h http.Handler) (*Listener, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ll := NewListener(l, max)
	srv := &http.Server{Handler: h}
	HTTPTimeouts{ReadHeader: time.Minute, Idle: time.Minute}.Apply(srv)
	ll.WireHTTP(srv)
	go srv.Serve(ll)
	t.Cleanup(func() { srv.Close() })
	return ll, l.Addr().String()
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

func get(t *testing.T, addr string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("a real client was not served: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("real client: %d %q", resp.StatusCode, b)
	}
}

// Idle sockets past the cap are closed oldest first, the server's descriptors stay at the cap,
// and a real client is served at once — not after the header timeout of the sockets before it.
func TestIdleSocketsCannotCrowdOutClients(t *testing.T) {
	const max, idle = 20, 1000
	ll, addr := startHTTP(t, max, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	before := openFDs(t)
	var socks []net.Conn
	defer func() {
		for _, c := range socks {
			c.Close()
		}
	}()
	for range idle {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		socks = append(socks, c)
	}
	// Wait until the server has taken every socket off its backlog.
	deadline := time.Now().Add(20 * time.Second)
	for ll.Evicted() < idle-max {
		if time.Now().After(deadline) {
			t.Fatalf("only %d idle sockets evicted, want %d", ll.Evicted(), idle-max)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := ll.Open(); n > max {
		t.Fatalf("%d connections open, cap %d", n, max)
	}
	// This process holds both ends: the client's idle sockets, plus at most the cap on the
	// server's side (uncapped, it would be twice idle).
	if grown := openFDs(t) - before; grown > idle+max+10 {
		t.Fatalf("descriptors grew by %d for %d idle sockets with a cap of %d", grown, idle, max)
	}
	get(t, addr)
}

// When every connection is serving a request, a new one is closed rather than one in use.
func TestBusyConnectionsAreNotEvicted(t *testing.T) {
	const max = 3
	release := make(chan struct{})
	started := make(chan struct{}, max)
	ll, addr := startHTTP(t, max, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	}))
	errs := make(chan error, max)
	for range max {
		go func() {
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get("http://" + addr + "/block")
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	for range max {
		<-started
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection past the cap was kept while all were busy")
	}
	if ll.Refused() == 0 {
		t.Fatal("no refusal counted")
	}
	close(release)
	for range max {
		if err := <-errs; err != nil {
			t.Fatalf("a busy request was cut off: %v", err)
		}
	}
	// With the requests done, their connections are free again once the server has closed
	// them, which it does just after the clients read their answers.
	deadline := time.Now().Add(10 * time.Second)
	for ll.Open() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open after their requests were answered", ll.Open())
		}
		time.Sleep(5 * time.Millisecond)
	}
	get(t, addr)
}
