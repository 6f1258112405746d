package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGoRunStopsWithGoCommand runs the README's `go run ./cmd/ariadne serve` and kills the go
// command by its PID, as a script that started it would: the server it ran must stop too rather
// than keep serving on its ports.
func TestGoRunStopsWithGoCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server with go run")
	}
	ariadneBinary(t) // warms the build cache, so go run below only links
	httpAddr := freeAddr(t)
	// The logs go to a file, not a pipe: a server left running would hold a pipe open and make
	// cmd.Wait wait for it forever.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	logs := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	cmd := exec.Command("go", "run", ".", "serve", "--data-dir", t.TempDir(), "--otlp-grpc-addr", "127.0.0.1:0",
		"--otlp-http-addr", "127.0.0.1:0", "--http-addr", httpAddr, "--zipkin-addr", "")
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + httpAddr + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) || strings.Contains(logs(), "cannot start") {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("go run … serve not ready:\n%s", logs())
		}
	}
	child := childPIDs(cmd.Process.Pid)
	t.Cleanup(func() { // if the test fails, do not leave the server behind
		for _, pid := range child {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if len(child) != 1 {
		t.Fatalf("go run has children %v, want the one server", child)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The server flushes and exits; a minute is far beyond what that takes on a busy machine.
	deadline := time.Now().Add(time.Minute)
	for processAlive(child[0]) {
		if time.Now().After(deadline) {
			resp, err := http.Get("http://" + httpAddr + "/ready")
			if err == nil {
				resp.Body.Close()
			}
			t.Fatalf("server %d still running a minute after its go command was killed (ready: %v)\n%s", child[0], err == nil, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs(), "stopped") {
		t.Errorf("server did not shut down cleanly:\n%s", logs())
	}
}

// childPIDs lists pid's direct children from /proc.
func childPIDs(pid int) []int {
	var kids []int
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, w := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(w); err == nil {
				kids = append(kids, n)
			}
		}
	}
	return kids
}

// processAlive reports whether pid is a running (not zombie) process.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
