package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/auth"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/serve/tlsconfig"
	"github.com/ariadne-tracing/ariadne/internal/serve/tlsconfig/tlstest"
)

// TestCommandsWithTokenAndMutualTLS: against a server with authentication and mutual TLS on
// every listener, loadgen sends over gRPC and HTTP and the reading commands read, given
// --token and the certificate flags; without them they fail with the server's reason.
func TestCommandsWithTokenAndMutualTLS(t *testing.T) {
	f := tlstest.NewFiles(t)
	const writeTok, readTok = "cli-write-token-0123456789", "cli-read-token-0123456789"
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr, cfg.HTTPAddr, cfg.ZipkinAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.Auth = auth.Config{Enabled: true, Tokens: []auth.Token{
		{Name: "loadgen", SHA256: auth.HashToken(writeTok), Role: auth.RoleWrite},
		{Name: "cli", SHA256: auth.HashToken(readTok), Role: auth.RoleRead},
	}}
	sc := tlsconfig.Server{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: f.CAFile}
	cfg.TLS.OTLPGRPC, cfg.TLS.OTLPHTTP, cfg.TLS.HTTP = sc, sc, sc
	s, err := server.Start(cfg, api.BuildInfo{Version: "test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	certFlags := []string{"--ca-file", f.CAFile, "--cert-file", f.ClientCert, "--key-file", f.ClientKey}

	var out, errOut bytes.Buffer
	for _, c := range []struct{ protocol, addr string }{{"grpc", s.GRPCAddr}, {"http", s.OTLPHTTPAddr}} {
		out.Reset()
		errOut.Reset()
		args := append([]string{"loadgen", "--endpoint", c.addr, "--protocol", c.protocol, "--requests", "3", "--batch", "10",
			"--concurrency", "1", "--token", writeTok}, certFlags...)
		if code := run(args, &out, &errOut); code != 0 {
			t.Fatalf("loadgen over %s with token and client certificate: exit %d\n%s%s", c.protocol, code, out.String(), errOut.String())
		}
		out.Reset()
		errOut.Reset()
		args = append([]string{"loadgen", "--endpoint", c.addr, "--protocol", c.protocol, "--requests", "1", "--batch", "10",
			"--concurrency", "1"}, certFlags...)
		if code := run(args, &out, &errOut); code == 0 {
			t.Errorf("loadgen over %s without a token succeeded:\n%s", c.protocol, out.String())
		}
	}

	server := "https://" + s.HTTPAddr
	out.Reset()
	errOut.Reset()
	args := append([]string{"search", "--server", server, "--token", readTok, "{}"}, certFlags...)
	if code := run(args, &out, &errOut); code != 0 || strings.Count(out.String(), "\n") < 2 {
		t.Fatalf("search over mutual TLS with a read token: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	// ARIADNE_TOKEN works as well as --token.
	t.Setenv("ARIADNE_TOKEN", readTok)
	out.Reset()
	errOut.Reset()
	if code := run(append([]string{"search", "--server", server, "{}"}, certFlags...), &out, &errOut); code != 0 {
		t.Fatalf("search with ARIADNE_TOKEN: exit %d %s", code, errOut.String())
	}
	t.Setenv("ARIADNE_TOKEN", "")
	for what, args := range map[string][]string{
		"no token":             append([]string{"search", "--server", server, "{}"}, certFlags...),
		"a write token":        append([]string{"search", "--server", server, "--token", writeTok, "{}"}, certFlags...),
		"no client cert":       {"search", "--server", server, "--token", readTok, "--ca-file", f.CAFile, "{}"},
		"no CA for the server": {"search", "--server", server, "--token", readTok, "--cert-file", f.ClientCert, "--key-file", f.ClientKey, "{}"},
	} {
		out.Reset()
		errOut.Reset()
		if code := run(args, &out, &errOut); code == 0 {
			t.Errorf("search with %s succeeded:\n%s", what, out.String())
		} else if what == "no token" && !strings.Contains(errOut.String(), "unauthenticated") {
			t.Errorf("search with no token: %q does not say why", errOut.String())
		}
	}
}
