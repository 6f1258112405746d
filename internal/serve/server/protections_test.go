package server_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ariadne-tracing/ariadne/internal/serve/config"
)

// h2Conn is a raw HTTP/2 connection to the OTLP/gRPC listener, for what a well-behaved client
// never does: holding streams open past the server's limit, pinging in a loop.
type h2Conn struct {
	c  net.Conn
	fr *http2.Framer
}

func dialH2(t *testing.T, addr string) *h2Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Every read below fails rather than hangs if the server never sends what is awaited.
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return &h2Conn{c, fr}
}

// openExport starts an Export call on stream id and sends no message, so the call stays open.
func (h *h2Conn) openExport(t *testing.T, addr string, id uint32) {
	t.Helper()
	h.openCall(t, addr, id, "/opentelemetry.proto.collector.trace.v1.TraceService/Export")
}

// openCall starts a gRPC call of method on stream id and sends no message.
func (h *h2Conn) openCall(t *testing.T, addr string, id uint32, method string) {
	t.Helper()
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", addr},
		{":path", method}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

// next reads frames until one satisfies want, acknowledging the server's SETTINGS on the way.
func (h *h2Conn) next(t *testing.T, what string, want func(http2.Frame) bool) http2.Frame {
	t.Helper()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			h.fr.WriteSettingsAck()
		}
		if want(f) {
			return f
		}
	}
}

// A gRPC client may hold server.grpc_server_max_concurrent_streams calls open on one connection:
// the server says so in its SETTINGS and refuses a stream past it (REFUSED_STREAM, which clients
// retry) while the others stay open. The query port's HTTP/2 (Tempo's streaming gRPC API) says
// the same and resets the stream past it.
func TestGRPCMaxConcurrentStreams(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Server.GRPCMaxConcurrentStreams = 2
	s := startServer(t, cfg)
	t.Run("query port", func(t *testing.T) {
		h := dialH2(t, s.HTTPAddr)
		set := h.next(t, "the server's SETTINGS", func(f http2.Frame) bool {
			s, ok := f.(*http2.SettingsFrame)
			return ok && !s.IsAck()
		}).(*http2.SettingsFrame)
		if v, ok := set.Value(http2.SettingMaxConcurrentStreams); !ok || v != 2 {
			t.Fatalf("query port SETTINGS_MAX_CONCURRENT_STREAMS %d (sent: %v), want 2", v, ok)
		}
		for _, id := range []uint32{1, 3, 5} {
			h.openCall(t, s.HTTPAddr, id, "/tempopb.StreamingQuerier/Search")
		}
		rst := h.next(t, "a reset of the third stream", func(f http2.Frame) bool {
			_, ok := f.(*http2.RSTStreamFrame)
			return ok
		}).(*http2.RSTStreamFrame)
		if rst.StreamID != 5 {
			t.Fatalf("RST_STREAM on stream %d with %v, want stream 5", rst.StreamID, rst.ErrCode)
		}
	})
	h := dialH2(t, s.GRPCAddr)
	set := h.next(t, "the server's SETTINGS", func(f http2.Frame) bool {
		s, ok := f.(*http2.SettingsFrame)
		return ok && !s.IsAck()
	}).(*http2.SettingsFrame)
	if v, ok := set.Value(http2.SettingMaxConcurrentStreams); !ok || v != 2 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d (sent: %v), want 2", v, ok)
	}
	for _, id := range []uint32{1, 3, 5} {
		h.openExport(t, s.GRPCAddr, id)
	}
	rst := h.next(t, "a refusal of the third stream", func(f http2.Frame) bool {
		_, ok := f.(*http2.RSTStreamFrame)
		return ok
	}).(*http2.RSTStreamFrame)
	if rst.StreamID != 5 || rst.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("RST_STREAM on stream %d with %v, want stream 5 REFUSED_STREAM", rst.StreamID, rst.ErrCode)
	}
	// The connection still serves: a ping is answered.
	h.fr.WritePing(false, [8]byte{1})
	h.next(t, "a ping answer", func(f http2.Frame) bool {
		p, ok := f.(*http2.PingFrame)
		return ok && p.IsAck()
	})
}

// A client pinging more often than server.grpc_server_min_time_between_pings is told to calm
// down (GOAWAY ENHANCE_YOUR_CALM, "too_many_pings") and disconnected, as gRPC servers do:
// pings are answered at once, so a ping loop would otherwise cost the server a write per ping.
func TestGRPCKeepaliveEnforcement(t *testing.T) {
	for _, c := range []struct {
		name           string
		withoutStreams bool // server.grpc_server_ping_without_stream_allowed
		openCall       bool
	}{
		{"pings too often during a call", true, true},
		{"pings with no call, not allowed", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.Server.GRPCMinTimeBetweenPings = config.Duration(time.Minute)
			cfg.Server.GRPCPingWithoutStreamAllow = c.withoutStreams
			s := startServer(t, cfg)
			h := dialH2(t, s.GRPCAddr)
			if c.openCall {
				h.openExport(t, s.GRPCAddr, 1)
			}
			for i := range 5 {
				if err := h.fr.WritePing(false, [8]byte{byte(i)}); err != nil {
					break // the server may have closed already
				}
			}
			ga := h.next(t, "GOAWAY", func(f http2.Frame) bool {
				_, ok := f.(*http2.GoAwayFrame)
				return ok
			}).(*http2.GoAwayFrame)
			if ga.ErrCode != http2.ErrCodeEnhanceYourCalm || !strings.Contains(string(ga.DebugData()), "too_many_pings") {
				t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", ga.ErrCode, ga.DebugData())
			}
			// Then the connection is closed.
			for {
				if _, err := h.fr.ReadFrame(); err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatal("the connection stayed open after GOAWAY")
					}
					break
				}
			}
		})
	}
	// A client keeping to the interval is not disconnected; the SDK exports as usual.
	s := startServer(t, testConfig(t.TempDir()))
	traces, sent := exportGuide(t, s, "grpc")
	assertSameSpans(t, "grpc with keepalive enforced", fetchTrace(t, s, traces[0].TraceID[:]), sentForTrace(sent, traces[0].TraceID[:]))
}

// closedWithin reads c until the server closes it, failing if it has not within the deadline
// (far longer than the timeouts under test). It returns what the server sent before closing.
func closedWithin(t *testing.T, c net.Conn, what string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: the server kept the connection open", what)
	}
	return string(b)
}

// The HTTP listeners' timeouts, each hit by a client on purpose: one that never finishes its
// headers, one that never finishes its body, one that keeps an idle keep-alive connection.
// Each loses its connection, so none holds a descriptor and a goroutine for longer.
func TestHTTPServerTimeouts(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Server.HTTPReadHeaderTimeout = config.Duration(200 * time.Millisecond)
	cfg.Server.HTTPReadTimeout = config.Duration(500 * time.Millisecond)
	cfg.Server.HTTPIdleTimeout = config.Duration(300 * time.Millisecond)
	s := startServer(t, cfg)
	for name, addr := range map[string]string{"query": s.HTTPAddr, "otlp_http": s.OTLPHTTPAddr} {
		t.Run(name, func(t *testing.T) {
			dial := func() net.Conn {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}

			c := dial()
			fmt.Fprintf(c, "GET /api/echo HTTP/1.1\r\nHost: ariadne\r\n") // and never the blank line
			if got := closedWithin(t, c, "headers never finished"); strings.Contains(got, "200 OK") {
				t.Fatalf("a request without the end of its headers was answered: %q", got)
			}

			c = dial()
			fmt.Fprintf(c, "POST /v1/traces HTTP/1.1\r\nHost: ariadne\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\n")
			c.Write(make([]byte, 10)) // and never the rest
			if got := closedWithin(t, c, "body never finished"); strings.Contains(got, "200 OK") {
				t.Fatalf("a request without its whole body was answered 200: %q", got)
			}

			c = dial()
			fmt.Fprintf(c, "GET /api/echo HTTP/1.1\r\nHost: ariadne\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("a whole request: %v", err)
			}
			resp.Body.Close()
			// The connection is kept alive for the next request, until the idle timeout.
			closedWithin(t, c, "idle keep-alive connection")
		})
	}
}
