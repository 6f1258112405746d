// Package connlimit caps how many connections a listener holds open, so that idle or stalled
// sockets (thousands of them, by accident or on purpose) cannot use up the process's file
// descriptors and keep real clients out.
//
// A plain accept limit (stop accepting at the cap) would not do: the sockets holding the slots
// would keep them until a timeout, and every client behind them would wait in the kernel's
// backlog. This listener keeps accepting; at the cap it makes room by closing the connection
// that has been idle longest (no request in flight), and only when every connection is busy does
// it close the new one. A connection counts as busy while the server tells it so: an http.Server
// through ConnState (Listener.WireHTTP wires it), a gRPC server through its stats handler
// (Listener.GRPCStatsHandler). A connection the server has said nothing about yet — a socket that
// never sent a request — counts as idle since it was accepted.
package connlimit

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Listener is a net.Listener holding at most Max connections open at once.
type Listener struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[*Conn]struct{}
	// byAddr finds a connection from the remote address a gRPC stats handler reports.
	byAddr map[string]*Conn

	evicted, refused atomic.Int64
}

// Conn is a connection accepted by a Listener.
type Conn struct {
	net.Conn
	l *Listener
	// busy counts requests in flight (HTTP/2 and gRPC carry many at once).
	busy atomic.Int32
	// idleSince is when busy last fell to zero, unix nanoseconds.
	idleSince atomic.Int64
	closed    atomic.Bool
	key       string
}

// NewListener wraps l. max <= 0 leaves the number of connections unbounded (but still tracked).
func NewListener(l net.Listener, max int) *Listener {
	return &Listener{Listener: l, max: max, conns: map[*Conn]struct{}{}, byAddr: map[string]*Conn{}}
}

// Accept waits for the next connection, making room for it at the cap.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &Conn{Conn: nc, l: l, key: nc.RemoteAddr().String()}
		c.idleSince.Store(time.Now().UnixNano())
		l.mu.Lock()
		var victim *Conn
		if l.max > 0 && len(l.conns) >= l.max {
			victim = l.longestIdle()
			if victim == nil {
				l.mu.Unlock()
				// Every connection is serving a request: the newcomer is the one to go.
				// Its client sees the connection close and retries, as for any overload.
				l.refused.Add(1)
				nc.Close()
				continue
			}
			l.forget(victim)
			l.evicted.Add(1)
		}
		l.conns[c] = struct{}{}
		l.byAddr[c.key] = c
		l.mu.Unlock()
		if victim != nil {
			victim.Conn.Close()
		}
		return c, nil
	}
}

// longestIdle returns the idle connection idle the longest, or nil. Call with mu held.
func (l *Listener) longestIdle() *Conn {
	var best *Conn
	var bestSince int64
	for c := range l.conns {
		if c.busy.Load() > 0 {
			continue
		}
		if s := c.idleSince.Load(); best == nil || s < bestSince {
			best, bestSince = c, s
		}
	}
	return best
}

func (l *Listener) forget(c *Conn) {
	if c.closed.Swap(true) {
		return
	}
	delete(l.conns, c)
	if l.byAddr[c.key] == c {
		delete(l.byAddr, c.key)
	}
}

// Open is how many connections are open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Evicted is how many idle connections were closed to make room; Refused how many new ones
// were closed because every open connection was busy.
func (l *Listener) Evicted() int64 { return l.evicted.Load() }

// Refused: see Evicted.
func (l *Listener) Refused() int64 { return l.refused.Load() }

// Close closes the connection and frees its slot.
func (c *Conn) Close() error {
	c.l.mu.Lock()
	c.l.forget(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// Busy marks a request started on the connection.
func (c *Conn) Busy() { c.busy.Add(1) }

// Idle marks a request finished on the connection.
func (c *Conn) Idle() {
	if c.busy.Add(-1) <= 0 {
		c.busy.Store(0)
		c.idleSince.Store(time.Now().UnixNano())
	}
}

// ConnState is an http.Server ConnState hook telling the listener which connections are busy.
func (l *Listener) ConnState(nc net.Conn, st http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		// Under TLS the server sees the TLS connection; the cap holds the socket beneath it.
		nc = tc.NetConn()
	}
	c, ok := nc.(*Conn)
	if !ok {
		return
	}
	switch st {
	case http.StateActive:
		if c.busy.Load() == 0 {
			c.Busy()
		}
	case http.StateIdle:
		c.busy.Store(1)
		c.Idle()
	case http.StateHijacked, http.StateClosed:
		// A hijacked connection (a WebSocket, say) is the handler's now: it leaves the pool
		// of connections this listener may close, but not the count.
		c.busy.Store(1)
	}
}

func (l *Listener) lookup(remote net.Addr) *Conn {
	if remote == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byAddr[remote.String()]
}

// HTTPTimeouts are an http.Server's protections against slow and idle clients.
type HTTPTimeouts struct {
	// ReadHeader bounds how long a client may take to send a request's headers.
	ReadHeader time.Duration
	// Read bounds the whole request, body included; Write the response. 0 is none.
	Read, Write time.Duration
	// Idle is how long a keep-alive connection may wait for its next request.
	Idle time.Duration
}

// Apply sets srv's timeouts.
func (t HTTPTimeouts) Apply(srv *http.Server) {
	srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout = t.ReadHeader, t.Read, t.Write, t.Idle
}

// WireHTTP makes srv tell l which connections are busy, keeping any ConnState hook srv had.
// Serve srv on l afterwards.
func (l *Listener) WireHTTP(srv *http.Server) {
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		l.ConnState(c, st)
		if prev != nil {
			prev(c, st)
		}
	}
}

// ctxKey carries the connection from a gRPC stats handler's TagConn to its RPCs.
type ctxKey struct{}

func connFrom(ctx context.Context) *Conn {
	c, _ := ctx.Value(ctxKey{}).(*Conn)
	return c
}
