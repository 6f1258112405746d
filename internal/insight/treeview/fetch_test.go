package treeview

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// traceByID encodes a TraceByIDResponse by hand: the trace as field 1 and a
// partial-status enum as field 3, which Fetch must skip.
func traceByID(t *testing.T) []byte {
	t.Helper()
	inner, err := proto.Marshal(createTask())
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, 0)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, inner)
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendString(b, "")
	return b
}

func TestFetchProtobuf(t *testing.T) {
	body := traceByID(t)
	var gotPath, gotQuery, gotAccept string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotQuery, gotAccept = r.URL.Path, r.URL.RawQuery, r.Header.Get("Accept")
		w.Header().Set("Content-Type", "application/protobuf")
		w.Write(body)
	}))
	defer srv.Close()

	td, err := Fetch(context.Background(), srv.Client(), srv.URL+"/", traceHex, 1705314600, 1705314700)
	if err != nil {
		t.Fatal(err)
	}
	if gotPath != "/api/v2/traces/"+traceHex || gotQuery != "end=1705314700&start=1705314600" || gotAccept != "application/protobuf" {
		t.Errorf("request %s?%s Accept %q", gotPath, gotQuery, gotAccept)
	}
	if !proto.Equal(td, createTask()) {
		t.Error("decoded trace differs from what was sent")
	}

	// Without a scheme, and with no time range.
	if _, err := Fetch(context.Background(), nil, strings.TrimPrefix(srv.URL, "http://"), traceHex, 0, 0); err != nil {
		t.Fatal(err)
	}
	if gotQuery != "" {
		t.Errorf("query %q, want none", gotQuery)
	}
}

func TestFetchPathPrefix(t *testing.T) {
	var gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		w.Write(traceByID(t))
	}))
	defer srv.Close()
	if _, err := Fetch(context.Background(), nil, srv.URL+"/ariadne", traceHex, 0, 0); err != nil {
		t.Fatal(err)
	}
	if gotPath != "/ariadne/api/v2/traces/"+traceHex {
		t.Errorf("path %s", gotPath)
	}
}

func TestFetchNotFound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "trace not found", http.StatusNotFound)
	}))
	defer srv.Close()
	_, err := Fetch(context.Background(), nil, srv.URL, traceHex, 0, 0)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if want := "trace " + traceHex + " not found on Ariadne at " + srv.URL; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

func TestFetchEmptyTraceIsNotFound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/protobuf")
	}))
	defer srv.Close()
	if _, err := Fetch(context.Background(), nil, srv.URL, traceHex, 0, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
}

func TestFetchBadRequest(t *testing.T) {
	const msg = "invalid trace id: encoding/hex: invalid byte: U+007A 'z'"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, msg, http.StatusBadRequest)
	}))
	defer srv.Close()
	_, err := Fetch(context.Background(), nil, srv.URL, "zz", 0, 0)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusBadRequest || se.Message != msg {
		t.Fatalf("got %#v", err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("message %q lacks the server's text", err)
	}
}

func TestFetchJSONErrorMessage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"message":"block store unavailable"}`))
	}))
	defer srv.Close()
	_, err := Fetch(context.Background(), nil, srv.URL, traceHex, 0, 0)
	var se *StatusError
	if !errors.As(err, &se) || se.Message != "block store unavailable" {
		t.Fatalf("got %v", err)
	}
}

func TestFetchRejectsJSONTrace(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"trace":{}}`))
	}))
	defer srv.Close()
	if _, err := Fetch(context.Background(), nil, srv.URL, traceHex, 0, 0); err == nil || !strings.Contains(err.Error(), "JSON") {
		t.Fatalf("got %v", err)
	}
}

func TestFetchGarbage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte{0x0a, 0xff}) // field 1, truncated length
	}))
	defer srv.Close()
	if _, err := Fetch(context.Background(), nil, srv.URL, traceHex, 0, 0); err == nil || !strings.Contains(err.Error(), "decoding") {
		t.Fatalf("got %v", err)
	}
}

func TestFetchConnectionRefused(t *testing.T) {
	// Take a free port and close it so nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close()

	_, err = Fetch(context.Background(), nil, addr, traceHex, 0, 0)
	if err == nil {
		t.Fatal("no error")
	}
	if want := "cannot reach Ariadne at " + addr + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want prefix %q", err, want)
	}
	if strings.Contains(err.Error(), "/api/v2") {
		t.Errorf("message repeats the request URL: %q", err)
	}
}

func TestFetchCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Fetch(ctx, nil, "http://127.0.0.1:1", traceHex, 0, 0)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestFetchBadArguments(t *testing.T) {
	for _, c := range []struct{ server, id string }{{"", traceHex}, {"http://", traceHex}, {"localhost:3200", ""}} {
		if _, err := Fetch(context.Background(), nil, c.server, c.id, 0, 0); err == nil {
			t.Errorf("Fetch(%q, %q): no error", c.server, c.id)
		}
	}
}
