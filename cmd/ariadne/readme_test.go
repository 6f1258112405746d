package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

// readmeExampleTraceID is the trace ID the README's examples use; the tests put a real trace's
// ID in its place.
const readmeExampleTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// readmeCommand is one command line from a shell block of README.md.
type readmeCommand struct {
	line string
	args []string // after the program name: ["search", "{ … }", "--since", "1h"]
	curl bool     // a curl line: args[0] is its URL
}

// readmeCommands extracts every `ariadne …` (also `./ariadne …`, `go run ./cmd/ariadne …`) and
// `curl …` line from README.md's sh blocks.
func readmeCommands(t *testing.T) []readmeCommand {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []readmeCommand
	inSh := false
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inSh = !inSh && (trimmed == "```sh" || trimmed == "```bash" || trimmed == "```shell")
			continue
		}
		if !inSh {
			continue
		}
		words, err := shellWords(strings.TrimPrefix(trimmed, "$ "))
		if err != nil {
			t.Fatalf("README line %q: %v", line, err)
		}
		switch {
		case len(words) >= 1 && (words[0] == "ariadne" || words[0] == "./ariadne"):
			cmds = append(cmds, readmeCommand{line: trimmed, args: words[1:]})
		case len(words) >= 3 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/ariadne":
			cmds = append(cmds, readmeCommand{line: trimmed, args: words[3:]})
		case len(words) >= 2 && words[0] == "curl":
			cmds = append(cmds, readmeCommand{line: trimmed, args: words[len(words)-1:], curl: true})
		}
	}
	return cmds
}

// shellWords splits a shell command line as sh would for the simple lines a README holds:
// single and double quotes, and a # comment after whitespace.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %c quote", c)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, nil
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// bothOrders returns a command line with every flag before the positional arguments and the
// same with every flag after them, using the command's own flag definitions to tell a flag's
// value from a positional argument. extra flags are added to each.
func bothOrders(t *testing.T, args []string, extra ...string) [][]string {
	t.Helper()
	root := newRootCmd(args, &bytes.Buffer{}, &bytes.Buffer{})
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		t.Fatalf("README command %q: no such ariadne command", strings.Join(args, " "))
	}
	var flags, positional []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if !strings.HasPrefix(a, "--") {
			positional = append(positional, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		f := cmd.Flags().Lookup(name)
		if f == nil {
			t.Fatalf("README command %q: %s has no flag --%s", strings.Join(args, " "), cmd.Name(), name)
		}
		flags = append(flags, a)
		if !hasValue && f.NoOptDefVal == "" && i+1 < len(rest) {
			i++
			flags = append(flags, rest[i])
		}
	}
	name := strings.Fields(cmd.CommandPath())[1:]
	first := append(append(append(append([]string{}, name...), extra...), flags...), positional...)
	last := append(append(append(append([]string{}, name...), positional...), flags...), extra...)
	return [][]string{first, last}
}

// TestREADMECommands runs every command the README shows, each with its flags both before and
// after its arguments, against an Ariadne holding the guide's traces. A command added to the
// README is tested by this without a change here; one the test cannot run fails it.
func TestREADMECommands(t *testing.T) {
	var tr, denied guidetrace.Trace
	base := time.Now().Add(-time.Minute)
	s, srv := startWithGuide(t, func(ctx context.Context, tp *sdktrace.TracerProvider) {
		tr = guidetrace.CreateTask(ctx, tp, base)
		denied = guidetrace.PermissionDenied(ctx, tp, base.Add(time.Second))
	})
	s.Store.Flush()
	id := tr.TraceID.String()

	seen := map[string]bool{}
	for _, c := range readmeCommands(t) {
		args := make([]string, len(c.args))
		for i, a := range c.args {
			args[i] = strings.ReplaceAll(a, readmeExampleTraceID, id)
		}
		if c.curl {
			u := strings.Replace(args[0], "localhost:3200", s.HTTPAddr, 1)
			if !strings.Contains(u, "://") {
				u = "http://" + u
			}
			resp, err := http.Get(u)
			if err != nil {
				t.Errorf("%s: %v", c.line, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s: %s", c.line, resp.Status)
			}
			seen["curl"] = true
			continue
		}
		if len(args) == 0 {
			t.Errorf("README line %q runs ariadne without a command", c.line)
			continue
		}
		seen[args[0]] = true
		switch args[0] {
		case "serve":
			for _, order := range bothOrders(t, args, "--data-dir", t.TempDir()) {
				runServeLikeREADME(t, c.line, order)
			}
		case "demo":
			for _, order := range bothOrders(t, args, "--data-dir", t.TempDir(), "--archive-rows", "2000",
				"--http-addr", "127.0.0.1:0", "--otlp-grpc-addr", "127.0.0.1:0", "--otlp-http-addr", "127.0.0.1:0") {
				runDemoLikeREADME(t, c.line, order)
			}
		default:
			for _, order := range bothOrders(t, args, "--server", srv) {
				var out, errOut bytes.Buffer
				if code := run(order, &out, &errOut); code != 0 || out.Len() == 0 {
					t.Errorf("README %q as %q: exit %d, stdout %q, stderr %q", c.line, order, code, out.String(), errOut.String())
				}
			}
		}
	}
	// The README's reading commands: if one disappears from it, this test no longer covers it
	// and should say so rather than pass on fewer commands.
	for _, want := range []string{"serve", "demo", "trace", "search", "why", "lint", "curl"} {
		if !seen[want] {
			t.Errorf("README has no %q command any more (update this test's list)", want)
		}
	}
	_ = denied
}

// runServeLikeREADME starts the built binary with a README serve line's arguments on free ports
// and stops it with SIGTERM, as a user pressing Ctrl-C would.
func runServeLikeREADME(t *testing.T, line string, args []string) {
	t.Helper()
	p := &proc{grpcAddr: freeAddr(t), http: freeAddr(t), logs: &syncBuffer{}}
	ports := []string{"--otlp-grpc-addr", p.grpcAddr, "--otlp-http-addr", freeAddr(t), "--http-addr", p.http, "--zipkin-addr", ""}
	full := append(append([]string{}, args...), ports...)
	p.cmd = newProcCmd(t, full, p.logs)
	if !p.waitReady() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		t.Errorf("README %q as %q: not ready:\n%s", line, full, p.logs.String())
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("README %q as %q: exit after SIGTERM: %v\n%s", line, full, err, p.logs.String())
	}
}

// runDemoLikeREADME runs a README demo line in process until it prints its first trace link.
func runDemoLikeREADME(t *testing.T, line string, args []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := &watchBuffer{want: "/trace/", seen: make(chan struct{})}
	var errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- runContext(ctx, args, out, &errOut) }()
	select {
	case <-out.seen:
	case <-ctx.Done():
	}
	cancel()
	code := <-done
	if !strings.Contains(out.String(), "Ariadne is running: open http://localhost:") || !strings.Contains(out.String(), "/trace/") {
		t.Errorf("README %q as %q: exit %d, stdout %q, stderr %q", line, args, code, out.String(), errOut.String())
	}
}

// watchBuffer closes seen once what is written to it contains want.
type watchBuffer struct {
	syncBuffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *watchBuffer) Write(p []byte) (int, error) {
	n, err := w.syncBuffer.Write(p)
	if strings.Contains(w.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return n, err
}

// newProcCmd starts the built binary with args, its stderr into logs.
func newProcCmd(t *testing.T, args []string, logs *syncBuffer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(ariadneBinary(t), args...)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}
