// Package miniotest runs a real MinIO server for tests: on a free loopback port, with its own
// data folder, stoppable and restartable (same port, same data) to play an outage.
//
// The binary is found on PATH or in $(go env GOPATH)/bin (.ci/run installs a pinned version
// with go install). Without it a developer's test run skips; with CI set it fails, so that
// the object-storage tests cannot silently stop running.
package miniotest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Credentials of the test server's root user.
const (
	AccessKey = "ariadne-test"
	SecretKey = "ariadne-test-secret"
)

// Server is one MinIO process.
type Server struct {
	// Endpoint is host:port, plain HTTP.
	Endpoint string
	DataDir  string

	tb     testing.TB
	exe    string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

// Binary returns the MinIO executable, or "" when none is installed.
func Binary() string {
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "minio")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// Need returns the MinIO binary, skipping the test without one unless CI is set.
func Need(tb testing.TB) string {
	tb.Helper()
	if p := Binary(); p != "" {
		return p
	}
	if os.Getenv("CI") == "" {
		tb.Skip("object-storage tests skipped: no minio binary (.ci/run installs it with go install; with CI=true this is a failure)")
	}
	tb.Fatal("CI is set but no minio binary is installed: the object-storage tests cannot run (.ci/run installs it)")
	return ""
}

// Start runs a MinIO server until the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{tb: tb, exe: Need(tb), DataDir: filepath.Join(tb.TempDir(), "minio")}
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	// The port is chosen free and then bound by MinIO; another process may take it in between,
	// so a start that fails to come up is retried on a new port.
	var err error
	for try := 0; try < 3; try++ {
		s.Endpoint = freeAddr(tb)
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

func freeAddr(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (s *Server) start() error {
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(s.DataDir), "minio.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	console := freeAddr(s.tb)
	cmd := exec.Command(s.exe, "server", s.DataDir, "--address", s.Endpoint, "--console-address", console, "--quiet")
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that stopping it never signals the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("miniotest: start %s: %w", s.exe, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.log, s.exited = cmd, logf, exited
	// Ready when the health endpoint answers; a loaded machine can take a while.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.cmd = nil
			logf.Close()
			return fmt.Errorf("miniotest: minio exited during start; see %s", logf.Name())
		default:
		}
		if s.serving() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("miniotest: minio not ready after 60s; see %s", logf.Name())
}

// Stop kills the server (SIGKILL: an outage, not a shutdown). Stopping twice is harmless.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
	s.log.Close()
}

// Restart starts the server again on the same address with the same data.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	var err error
	// The old process's port may linger briefly in the kernel; retry a few times.
	for try := 0; try < 5; try++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.tb.Fatal(err)
}

// serving reports whether S3 requests are answered: the health endpoint answers before the
// object layer is up, when requests still get 503 "Server not initialized", so an anonymous
// request must get its 403 too.
func (s *Server) serving() bool {
	for _, path := range []string{"/minio/health/ready", "/"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Endpoint+path, nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 || (path != "/" && resp.StatusCode != http.StatusOK) {
			return false
		}
	}
	return true
}
