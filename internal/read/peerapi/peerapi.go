// Package peerapi is the small internal HTTP API between nodes: a query node asks the ingest
// nodes for the parts of a trace they still hold (head, and blocks not yet in the bucket or
// uploaded only moments ago), and for their heads (head.go), and merges them with what it reads
// from the bucket.
//
//	GET /internal/v1/traces/{id}   200 with the trace as OTLP TracesData protobuf, 404 when the
//	                               node holds no part of it
//	GET /internal/v1/head          the node's head traces (head.go)
//
// The tenant travels in X-Scope-OrgID, as on the public API, and with auth on the node's
// credential (cluster.peer_token) in Authorization.
package peerapi

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Path is the route of trace lookups.
const Path = "/internal/v1/traces/"

// Finder is what an ingest node answers from: its own head and local blocks.
type Finder interface {
	FindTrace(ctx context.Context, id [16]byte) (*tracepb.TracesData, error)
}

// Handler serves the internal API from f.
func Handler(f Finder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := strings.TrimPrefix(r.URL.Path, Path)
		b, err := hex.DecodeString(raw)
		if err != nil || len(b) != 16 {
			http.Error(w, fmt.Sprintf("bad trace ID %q: want 32 hex digits", raw), http.StatusBadRequest)
			return
		}
		td, err := f.FindTrace(r.Context(), [16]byte(b))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if td == nil {
			http.Error(w, "trace not found", http.StatusNotFound)
			return
		}
		out, err := proto.Marshal(td)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/protobuf")
		w.Write(out)
	})
}

// Client asks every ingest node in parallel.
type Client struct {
	static []string
	dns    string // host:port resolved on each call
	http   *http.Client
	self   string // this node's own address, skipped
	token  string // bearer token sent on every request (cluster.peer_token), when auth is on
	lookup func(ctx context.Context) ([]string, error)
}

// NewClient returns a client of the peers given by address, and of those a DNS name
// resolves to. Either may be empty. self, if set, is left out (a node does not ask itself).
func NewClient(peers []string, dnsName, self string) *Client {
	return &Client{static: peers, dns: dnsName, self: self,
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}}}
}

// SetToken makes every request carry token as its bearer credential: what the peers' auth gate
// asks of a node when auth is on.
func (c *Client) SetToken(token string) { c.token = token }

// SetLookup adds the peers f returns on each call (the JetStream log's members) to the
// configured ones.
func (c *Client) SetLookup(f func(ctx context.Context) ([]string, error)) { c.lookup = f }

// Peers returns the current peer addresses.
func (c *Client) Peers(ctx context.Context) ([]string, error) {
	out := slices.Clone(c.static)
	var err error
	if c.lookup != nil {
		more, lerr := c.lookup(ctx)
		out = append(out, more...)
		err = lerr
	}
	if c.dns != "" {
		host, port, serr := net.SplitHostPort(c.dns)
		if serr != nil {
			return out, fmt.Errorf("peerapi: cluster.peers_dns %q: %w", c.dns, serr)
		}
		addrs, lerr := net.DefaultResolver.LookupHost(ctx, host)
		if lerr != nil {
			err = errors.Join(err, fmt.Errorf("peerapi: resolve %s: %w", host, lerr))
		}
		for _, a := range addrs {
			out = append(out, net.JoinHostPort(a, port))
		}
	}
	return slices.DeleteFunc(out, func(p string) bool { return p == c.self }), err
}

// FindTrace asks every peer for trace id and returns the resource spans they hold. A peer that
// cannot be reached is reported in the error (joined), while the others' answers are still
// returned: the caller decides whether a partial answer is acceptable.
func (c *Client) FindTrace(ctx context.Context, tenant string, id [16]byte) ([]*tracepb.ResourceSpans, error) {
	peers, perr := c.Peers(ctx)
	var (
		mu   sync.Mutex
		out  []*tracepb.ResourceSpans
		errs = []error{perr}
		wg   sync.WaitGroup
	)
	for _, p := range peers {
		wg.Go(func() {
			td, err := c.ask(ctx, p, tenant, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if td != nil {
				out = append(out, td.ResourceSpans...)
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (c *Client) ask(ctx context.Context, peer, tenant string, id [16]byte) (*tracepb.TracesData, error) {
	resp, err := c.get(ctx, peer, tenant, Path+hex.EncodeToString(id[:]))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, nil
	default:
		return nil, statusError(peer, resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", peer, err)
	}
	td := &tracepb.TracesData{}
	if err := proto.Unmarshal(body, td); err != nil {
		return nil, fmt.Errorf("peer %s: decode: %w", peer, err)
	}
	return td, nil
}

// get sends one request to peer, for tenant, with the cluster's credentials.
func (c *Client) get(ctx context.Context, peer, tenant, pathQuery string) (*http.Response, error) {
	url := peer
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+pathQuery, nil)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", peer, err)
	}
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", peer, err)
	}
	return resp, nil
}

// statusError describes a peer's refusal, with the start of its body.
func statusError(peer string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return fmt.Errorf("peer %s: %s: %s", peer, resp.Status, strings.TrimSpace(string(body)))
}
