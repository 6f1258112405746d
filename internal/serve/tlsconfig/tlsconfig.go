// Package tlsconfig turns certificate files into TLS configurations for Ariadne's listeners and
// clients, and picks up renewed files without a restart.
//
// A server's certificate and key (and, for mutual TLS, the CA that client certificates must
// chain to) are re-read when any of the files changes: certificates from ACME or a cluster's
// issuer are renewed every few weeks, and a tracing backend should not need a restart for it.
// Files are looked at, at most once a second, when a client connects; a renewal half-written
// (key and certificate not matching yet) keeps the previous pair in use and is logged.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Server is the `tls` settings of one listener.
type Server struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, turns on mutual TLS: every client must present a certificate
	// that chains to a CA in this PEM file.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the listener speaks TLS.
func (s Server) Enabled() bool { return s.CertFile != "" || s.KeyFile != "" }

// checkEvery bounds how often the files are looked at.
const checkEvery = time.Second

// Reloader serves the current certificate of one listener.
type Reloader struct {
	cfg Server
	log *slog.Logger
	now func() time.Time

	mu        sync.Mutex
	current   *tls.Config
	stamp     string // the files' sizes and modification times when current was loaded
	lastCheck time.Time
}

// New loads the files once (an error here stops the server from starting, which is what a
// wrong path should do) and returns the reloader.
func New(cfg Server, log *slog.Logger) (*Reloader, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("tls: cert_file and key_file are both needed")
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{cfg: cfg, log: log, now: time.Now}
	c, err := r.load()
	if err != nil {
		return nil, err
	}
	r.current, r.stamp, r.lastCheck = c, r.stampNow(), r.now()
	return r, nil
}

// Config is the tls.Config to serve with: each handshake gets the current certificate (and
// client CA), reloaded when the files changed.
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.get(), nil
		},
	}
}

func (r *Reloader) get() *tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.lastCheck) >= checkEvery {
		r.lastCheck = now
		if st := r.stampNow(); st != r.stamp {
			c, err := r.load()
			if err != nil {
				r.log.Error("TLS files changed but do not load; serving the previous certificate", "cert_file", r.cfg.CertFile, "err", err)
			} else {
				r.log.Info("TLS certificate reloaded", "cert_file", r.cfg.CertFile)
				r.current = c
			}
			// Either way, wait for the next change before trying again.
			r.stamp = st
		}
	}
	return r.current
}

func (r *Reloader) stampNow() string {
	var s string
	for _, f := range []string{r.cfg.CertFile, r.cfg.KeyFile, r.cfg.ClientCAFile} {
		if f == "" {
			continue
		}
		if fi, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d:%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			s += "missing;"
		}
	}
	return s
}

func (r *Reloader) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(r.cfg.CertFile, r.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", r.cfg.CertFile, r.cfg.KeyFile, err)
	}
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
		Certificates: []tls.Certificate{cert},
	}
	if r.cfg.ClientCAFile != "" {
		pool, err := loadPool(r.cfg.ClientCAFile)
		if err != nil {
			return nil, err
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// Client is how a client (the CLI, loadgen) reaches a TLS listener.
type Client struct {
	CAFile   string // CA to trust instead of the system's, e.g. for a self-signed server
	CertFile string // client certificate for mutual TLS
	KeyFile  string
	// InsecureSkipVerify accepts any server certificate: for a quick test only.
	InsecureSkipVerify bool
}

// Config builds the client's tls.Config.
func (c Client) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
