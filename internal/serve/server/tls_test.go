package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"google.golang.org/grpc/credentials"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/serve/tlsconfig"
	"github.com/ariadne-tracing/ariadne/internal/serve/tlsconfig/tlstest"
)

type tlsFiles struct{ *tlstest.Files }

func newTLSFiles(t *testing.T) tlsFiles { return tlsFiles{tlstest.NewFiles(t)} }

func (f tlsFiles) pool() *x509.CertPool { return f.CA.Pool() }

func (f tlsFiles) clientTLS(t *testing.T, cert, key string) *tls.Config {
	t.Helper()
	c, err := tlsconfig.Client{CAFile: f.CAFile, CertFile: cert, KeyFile: key}.Config()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLSAndMutualTLS: every listener speaks TLS with its certificate, the real SDK exports over
// it with the bearer token, plain text is refused, and with a client CA configured only clients
// holding a certificate from that CA get in.
func TestTLSAndMutualTLS(t *testing.T) {
	f := newTLSFiles(t)
	ctx := context.Background()
	for _, mutual := range []bool{false, true} {
		name := "TLS"
		if mutual {
			name = "mTLS"
		}
		t.Run(name, func(t *testing.T) {
			cfg := authConfig(t.TempDir())
			sc := tlsconfig.Server{CertFile: f.ServerCert, KeyFile: f.ServerKey}
			if mutual {
				sc.ClientCAFile = f.CAFile
			}
			cfg.TLS.OTLPGRPC, cfg.TLS.OTLPHTTP, cfg.TLS.HTTP, cfg.TLS.Zipkin = sc, sc, sc, sc
			s := startServer(t, cfg)
			t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer "+tokWrite)

			good := f.clientTLS(t, "", "")
			if mutual {
				good = f.clientTLS(t, f.ClientCert, f.ClientKey)
			}
			stranger := f.clientTLS(t, f.StrangerCert, f.StrangerKey)
			exportGRPC := func(tc *tls.Config) error {
				exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr),
					otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tc)), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
				if err != nil {
					t.Fatal(err)
				}
				defer exp.Shutdown(ctx)
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				return exp.ExportSpans(cctx, spansToExport(t, "over grpc "+name))
			}
			exportHTTP := func(tc *tls.Config) error {
				exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.OTLPHTTPAddr), otlptracehttp.WithTLSClientConfig(tc),
					otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
				if err != nil {
					t.Fatal(err)
				}
				defer exp.Shutdown(ctx)
				return exp.ExportSpans(ctx, spansToExport(t, "over http "+name))
			}
			if err := exportGRPC(good); err != nil {
				t.Errorf("gRPC over TLS: %v", err)
			}
			if err := exportHTTP(good); err != nil {
				t.Errorf("HTTP over TLS: %v", err)
			}
			if mutual {
				for what, tc := range map[string]*tls.Config{"no client certificate": f.clientTLS(t, "", ""), "a certificate from another CA": stranger} {
					if err := exportGRPC(tc); err == nil {
						t.Errorf("gRPC with %s was accepted", what)
					}
					if err := exportHTTP(tc); err == nil {
						t.Errorf("HTTP with %s was accepted", what)
					}
				}
			}
			// Plain text on a TLS port gets nowhere.
			if resp, err := http.Get("http://" + s.OTLPHTTPAddr + "/v1/traces"); err == nil {
				if resp.StatusCode < 400 {
					t.Errorf("plain HTTP to the TLS port: %s", resp.Status)
				}
				resp.Body.Close()
			}
			// The query port and Zipkin too, and the spans sent above are there.
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: good}}
			for _, addr := range []string{s.HTTPAddr, s.ZipkinAddr} {
				req, _ := http.NewRequest("GET", "https://"+addr+"/api/search?q=%7B%7D", nil)
				req.Header.Set("Authorization", "Bearer "+tokRead)
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatalf("HTTPS to %s: %v", addr, err)
				}
				resp.Body.Close()
				if addr == s.HTTPAddr && resp.StatusCode != 200 {
					t.Errorf("search over HTTPS: %s", resp.Status)
				}
			}
			if mutual {
				hs := &http.Client{Transport: &http.Transport{TLSClientConfig: stranger}}
				if resp, err := hs.Get("https://" + s.HTTPAddr + "/ready"); err == nil {
					resp.Body.Close()
					t.Errorf("the query port let in a client certificate from another CA: %s", resp.Status)
				}
			}
		})
	}
}

// servedSerial connects and reports the serial number of the certificate the server presents.
func servedSerial(t *testing.T, addr string, pool *x509.CertPool) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestCertificateReload: renewed certificate files are served without a restart, and a broken
// renewal leaves the previous certificate in service.
func TestCertificateReload(t *testing.T) {
	f := newTLSFiles(t)
	cfg := testConfig(t.TempDir())
	sc := tlsconfig.Server{CertFile: f.ServerCert, KeyFile: f.ServerKey}
	cfg.TLS.OTLPGRPC, cfg.TLS.HTTP = sc, sc
	s := startServer(t, cfg)
	for _, addr := range []string{s.HTTPAddr, s.GRPCAddr} {
		if got := servedSerial(t, addr, f.pool()); got != 100 {
			t.Fatalf("%s serves serial %d, want 100", addr, got)
		}
	}
	// A renewal that is not a certificate at all: the old one stays.
	tlstest.WriteFile(t, f.ServerCert, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	waitServed(t, s, f, 100, 2*time.Second)

	c, k := f.CA.Issue(t, 101, false)
	tlstest.WriteFile(t, f.ServerKey, k)
	tlstest.WriteFile(t, f.ServerCert, c)
	waitServed(t, s, f, 101, 15*time.Second)
}

// waitServed polls until both listeners serve serial, failing after wait; with a short wait
// and the old serial it checks that nothing changed for that long.
func waitServed(t *testing.T, s *server.Server, f tlsFiles, serial int64, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		a, b := servedSerial(t, s.HTTPAddr, f.pool()), servedSerial(t, s.GRPCAddr, f.pool())
		if a == serial && b == serial && serial != 100 {
			return
		}
		if serial == 100 && (a != 100 || b != 100) {
			t.Fatalf("a broken renewal replaced the certificate: serials %d, %d", a, b)
		}
		if time.Now().After(deadline) {
			if serial == 100 {
				return
			}
			t.Fatalf("after %v still serving serials %d, %d; want %d", wait, a, b, serial)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A listener configured with a certificate that does not load stops the server from starting.
func TestTLSConfigErrors(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.TLS.HTTP = tlsconfig.Server{CertFile: filepath.Join(t.TempDir(), "missing.crt"), KeyFile: "missing.key"}
	if s, err := server.Start(cfg, api.BuildInfo{}, nil); err == nil {
		s.Stop(context.Background())
		t.Fatal("started with certificate files that do not exist")
	} else if !strings.Contains(err.Error(), "tls.http") {
		t.Errorf("error %q does not name the listener", err)
	}
}
