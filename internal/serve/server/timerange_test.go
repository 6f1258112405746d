package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"
)

// Query times past the year 2262 overflow int64 nanoseconds. A far end (how Grafana and scripts
// say "open") must still find the data, in every time syntax, and a span dated 2300 must be
// stored and found with its block's time range intact.
func TestFarFutureQueryTimes(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	client := grpcClient(t, s)
	now := time.Now()
	recent := validSpan(0x31, 1)
	recent.StartTimeUnixNano, recent.EndTimeUnixNano = uint64(now.Add(-time.Second).UnixNano()), uint64(now.UnixNano())
	future := validSpan(0x32, 1)
	y2300 := uint64(time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC).Unix()) * uint64(time.Second) // past int64
	future.StartTimeUnixNano, future.EndTimeUnixNano = y2300, y2300+uint64(time.Millisecond)
	if _, err := client.Export(context.Background(), request(recent, future)); err != nil {
		t.Fatal(err)
	}
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, b := range s.Store.Blocks() {
		if m := b.Meta(); m.MinStart < 0 || m.MaxEnd < m.MinStart {
			t.Fatalf("block time range [%d, %d] after a span dated 2300", m.MinStart, m.MaxEnd)
		}
	}
	base := "http://" + s.HTTPAddr
	start := fmt.Sprint(now.Add(-time.Hour).Unix())
	for _, end := range []string{"99999999999", "1e19", "9223372036854775807", "2300-01-01T00:00:00Z", "9999-12-31T23:59:59Z"} {
		code, body := httpGet(t, base+"/api/search?q="+url.QueryEscape("{}")+"&start="+start+"&end="+url.QueryEscape(end), "")
		if code != 200 {
			t.Fatalf("end=%s: %d %s", end, code, body)
		}
		var res struct {
			Traces []struct {
				TraceID string `json:"traceID"`
			} `json:"traces"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatal(err)
		}
		if len(res.Traces) == 0 {
			t.Fatalf("end=%s: search found nothing: far-future bounds wrapped around", end)
		}
	}
	for _, id := range []string{"31313131313131313131313131313131", "32323232323232323232323232323232"} {
		code, body := httpGet(t, base+"/api/traces/"+id+"?start="+start+"&end=99999999999", "")
		if code != 200 {
			t.Fatalf("trace %s with a far end: %d %s", id, code, body)
		}
	}
	// The 2300 span comes back with its time to the nanosecond.
	got := fetchTrace(t, s, bytes.Repeat([]byte{0x32}, 16))
	for _, fs := range got {
		if fs.span.StartTimeUnixNano != y2300 {
			t.Fatalf("span dated 2300 came back starting at %d, want %d", fs.span.StartTimeUnixNano, y2300)
		}
	}
}
