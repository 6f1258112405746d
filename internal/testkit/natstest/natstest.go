// Package natstest runs real nats-server processes for tests: one server, or a cluster of three
// with JetStream, each on free loopback ports with its own data folder, any of them killable
// (SIGKILL) and restartable on the same ports with the same data, to play a server's death.
//
// The binary is found on PATH or in $(go env GOPATH)/bin (.ci/run installs the version pinned in
// go.mod's tool directive). Without it a developer's test run skips; with CI set it fails, so
// that the replicated-log tests cannot silently stop running.
package natstest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary returns the nats-server executable, or "" when none is installed.
func Binary() string {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "nats-server")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// Need returns the nats-server binary, skipping the test without one unless CI is set.
func Need(tb testing.TB) string {
	tb.Helper()
	if p := Binary(); p != "" {
		return p
	}
	if os.Getenv("CI") == "" {
		tb.Skip("JetStream tests skipped: no nats-server binary (.ci/run installs it with go install; with CI=true this is a failure)")
	}
	tb.Fatal("CI is set but no nats-server binary is installed: the JetStream tests cannot run (.ci/run installs it)")
	return ""
}

// Server is one nats-server process.
type Server struct {
	Name    string
	URL     string // nats://127.0.0.1:port
	DataDir string

	tb      testing.TB
	exe     string
	conf    string
	monitor string // host:port of the monitoring endpoint
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	log     *os.File
}

// Cluster is one or three servers; with three they form a JetStream cluster (streams may have
// replicas: 3).
type Cluster struct {
	Servers []*Server
}

// URLs is every server's client URL, comma-separated, as nats.Connect takes them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.URL
	}
	return strings.Join(urls, ",")
}

// Start runs n servers (1 or 3) until the test ends and waits until JetStream answers on each.
// extraConf is appended to every server's configuration file (an authorization block, say).
func Start(tb testing.TB, n int, extraConf ...string) *Cluster {
	tb.Helper()
	exe := Need(tb)
	if n != 1 && n != 3 {
		tb.Fatalf("natstest: %d servers: want 1 or 3", n)
	}
	dir := tb.TempDir()
	addrs := freeAddrs(tb, 3*n) // client, cluster and monitoring port of each
	c := &Cluster{}
	for i := 0; i < n; i++ {
		s := &Server{Name: fmt.Sprintf("n%d", i+1), tb: tb, exe: exe, URL: "nats://" + addrs[3*i],
			monitor: addrs[3*i+2], DataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1))}
		if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
			tb.Fatal(err)
		}
		conf := fmt.Sprintf("server_name: %s\nlisten: %q\nhttp: %q\njetstream {\n  store_dir: %q\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}\n",
			s.Name, addrs[3*i], s.monitor, s.DataDir)
		if n > 1 {
			var routes []string
			for j := 0; j < n; j++ {
				if j != i {
					routes = append(routes, fmt.Sprintf("%q", "nats-route://"+addrs[3*j+1]))
				}
			}
			conf += fmt.Sprintf("cluster {\n  name: ariadne-test\n  listen: %q\n  routes: [%s]\n}\n", addrs[3*i+1], strings.Join(routes, ", "))
		}
		conf += strings.Join(extraConf, "\n")
		s.conf = filepath.Join(dir, s.Name+".conf")
		if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
			tb.Fatal(err)
		}
		c.Servers = append(c.Servers, s)
	}
	// All at once: a cluster member's JetStream waits for its routes before it is ready.
	for _, s := range c.Servers {
		if err := s.launch(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(s.Kill)
	}
	for _, s := range c.Servers {
		if err := s.waitReady(); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

// freeAddrs picks n distinct free loopback addresses. The ports are bound by nats-server only
// later, so another process may take one in between; tests run few servers, which keeps that rare.
func freeAddrs(tb testing.TB, n int) []string {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	out := make([]string, n)
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		out[i] = l.Addr().String()
	}
	return out
}

func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(s.DataDir), s.Name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.exe, "-c", s.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that killing it never signals the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("natstest: start %s: %w", s.exe, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.log, s.exited = cmd, logf, exited
	return nil
}

// waitReady waits for the monitoring endpoint's JetStream health check; a loaded machine can
// take a while to elect the cluster's meta leader.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		exited := s.exited
		s.mu.Unlock()
		select {
		case <-exited:
			return fmt.Errorf("natstest: %s exited during start; see %s", s.Name, s.log.Name())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.monitor+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("natstest: %s not ready after 60s; see %s", s.Name, s.log.Name())
}

// Kill ends the server with SIGKILL: a crash, not a shutdown. Killing twice is harmless.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
	s.log.Close()
}

// Restart starts a killed server again on the same ports with the same data and waits until
// it is healthy (caught up with its cluster).
func (s *Server) Restart() {
	s.tb.Helper()
	s.Kill()
	var err error
	// The old process's ports may linger briefly in the kernel; retry a few times.
	for try := 0; try < 5; try++ {
		if err = s.launch(); err == nil {
			if err = s.waitReady(); err == nil {
				return
			}
			s.Kill()
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.tb.Fatal(err)
}
