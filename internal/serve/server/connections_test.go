package server_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

func waitMetric(t *testing.T, s *server.Server, name, listener string, atLeast float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := metricValue(scrape(t, s), name, map[string]string{"listener": listener})
		if v >= atLeast {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{listener=%q} = %v, want at least %v", name, listener, v, atLeast)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Thousands of idle sockets on every listener: the server holds no more than its caps, and the
// real OpenTelemetry SDK still exports over gRPC and HTTP and reads its traces back.
func TestIdleSocketsCannotExhaustDescriptors(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) { idleFlood(t, protocol) })
	}
}

func idleFlood(t *testing.T, protocol string) {
	const limit, idle = 16, 600
	cfg := testConfig(t.TempDir())
	cfg.Server.HTTPConnLimit, cfg.Server.GRPCConnLimit = limit, limit
	s := startServer(t, cfg)
	before := countFDs(t)
	var socks []net.Conn
	t.Cleanup(func() {
		for _, c := range socks {
			c.Close()
		}
	})
	listeners := map[string]string{"otlp_grpc": s.GRPCAddr, "otlp_http": s.OTLPHTTPAddr, "http": s.HTTPAddr}
	for _, addr := range listeners {
		for range idle {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("dial %s: %v", addr, err)
			}
			socks = append(socks, c)
		}
	}
	// Every idle socket has been accepted once all but the cap were evicted.
	for name := range listeners {
		waitMetric(t, s, "ariadne_listener_connections_evicted_total", name, idle-limit)
	}
	// This process holds the client ends (3×idle) and the server ends, at most the caps.
	if grown := countFDs(t) - before; grown > 3*idle+3*limit+20 {
		t.Fatalf("descriptors grew by %d for %d idle sockets under caps of %d", grown, 3*idle, limit)
	}
	traces, sent := exportGuide(t, s, protocol)
	for _, tr := range traces {
		assertSameSpans(t, protocol+" after idle flood", fetchTrace(t, s, tr.TraceID[:]), sentForTrace(sent, tr.TraceID[:]))
	}
}

// A gRPC client that floods Export calls and pings but never reads a byte back fills only its
// own connection's buffers: a well-behaved SDK exporting at the same time is served.
func TestGRPCClientThatNeverReads(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	c, err := net.Dial("tcp", s.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	body, err := proto.Marshal(request(validSpan(0x42, 1)))
	if err != nil {
		t.Fatal(err)
	}
	msg := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(body)))
	msg = append(msg, body...)
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", s.GRPCAddr},
		{":path", "/opentelemetry.proto.collector.trace.v1.TraceService/Export"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	type result struct {
		n   int
		err error
	}
	flooded := make(chan result, 1)
	go func() {
		// Write until the server stops reading this connection (its answers have nowhere to go).
		c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		c.Write([]byte(http2.ClientPreface))
		fr := http2.NewFramer(c, nil)
		// A zero window: the server may not send this client a byte of response data.
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		n := 0
		var err error
		for id := uint32(1); ; id += 2 {
			if err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr.Bytes(), EndHeaders: true}); err != nil {
				break
			}
			if err = fr.WriteData(id, true, msg); err != nil {
				break
			}
			if id%64 == 1 {
				fr.WritePing(false, [8]byte{byte(id)})
			}
			n++
			if id > 1<<30 {
				break
			}
		}
		flooded <- result{n, err}
	}()
	for _, protocol := range []string{"grpc"} {
		traces, sent := exportGuide(t, s, protocol)
		id := traces[len(traces)-1].TraceID
		assertSameSpans(t, fmt.Sprintf("%s beside a client that never reads", protocol), fetchTrace(t, s, id[:]), sentForTrace(sent, id[:]))
	}
	c.Close()
	r := <-flooded
	t.Logf("the non-reading client wrote %d requests before %v", r.n, r.err)
}
