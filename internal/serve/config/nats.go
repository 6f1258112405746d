package config

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// Ingest logs (ingest.log): where an acknowledged request is kept until it is in a block.
const (
	IngestLogLocal     = "local"     // each node's own WAL (the default)
	IngestLogJetStream = "jetstream" // a replicated NATS JetStream stream (NATS below)
)

// NATS says where the JetStream ingest log is (ingest.log: jetstream).
type NATS struct {
	URLs       []string `yaml:"urls"`
	Stream     string   `yaml:"stream"`
	Replicas   int      `yaml:"replicas"`
	Partitions int      `yaml:"partitions"`
	// Credentials: user and password, a token, or a creds file.
	User      string `yaml:"user"`
	Password  string `yaml:"password"`
	Token     string `yaml:"token"`
	CredsFile string `yaml:"creds_file"`
	// MaxAge is how long the stream keeps messages: the longest a block builder may fall behind.
	MaxAge Duration `yaml:"max_age"`
	// MemberTTL is how soon a block builder that stops heartbeating is taken for dead.
	MemberTTL Duration `yaml:"member_ttl"`
	// AdvertiseAddr is this node's query address as peers reach it (default: http_addr, with
	// the host name when it binds every interface).
	AdvertiseAddr string `yaml:"advertise_addr"`
}

func defaultNATS() NATS {
	return NATS{Stream: "ariadne", Replicas: 3, Partitions: 16, MaxAge: Duration(24 * time.Hour), MemberTTL: Duration(5 * time.Second)}
}

func (c *Config) registerNATSFlags(fs *flag.FlagSet) {
	n := &c.NATS
	fs.StringVar(&c.Ingest.Log, "ingest-log", c.Ingest.Log, "where acknowledged spans wait for a block: local (this node's WAL) or jetstream (a replicated NATS stream)")
	fs.Func("nats-urls", "comma-separated NATS server URLs (nats://host:4222)", func(v string) error {
		n.URLs = nil
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				n.URLs = append(n.URLs, u)
			}
		}
		return nil
	})
	fs.StringVar(&n.Stream, "nats-stream", n.Stream, "JetStream stream of the ingest log (its KV buckets are named after it)")
	fs.IntVar(&n.Replicas, "nats-replicas", n.Replicas, "copies of the stream; a publish is acknowledged by a quorum of them")
	fs.IntVar(&n.Partitions, "nats-partitions", n.Partitions, "trace-ID partitions of the stream (fixed for its life)")
	fs.StringVar(&n.User, "nats-user", n.User, "NATS user")
	fs.StringVar(&n.Password, "nats-password", n.Password, "NATS password")
	fs.StringVar(&n.Token, "nats-token", n.Token, "NATS token")
	fs.StringVar(&n.CredsFile, "nats-creds", n.CredsFile, "NATS credentials file (JWT and NKey seed)")
	fs.StringVar(&n.AdvertiseAddr, "nats-advertise-addr", n.AdvertiseAddr, "this node's query address as other nodes reach it")
}

// checkNATS reports ingest-log settings that cannot work.
func (c *Config) checkNATS() error {
	switch c.Ingest.Log {
	case "", IngestLogLocal:
		c.Ingest.Log = IngestLogLocal
		return nil
	case IngestLogJetStream:
	default:
		return fmt.Errorf("config: ingest.log %q: want local or jetstream", c.Ingest.Log)
	}
	n := c.NATS
	if len(n.URLs) == 0 {
		return errors.New("config: ingest.log jetstream needs nats.urls")
	}
	if c.Storage.Backend != "s3" {
		// A block builder acknowledges the stream once its block is in the bucket; a local
		// folder would make the node's disk the only copy again.
		return errors.New("config: ingest.log jetstream needs storage.backend: s3")
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		return fmt.Errorf("config: nats.replicas %d: want 1 to 5", n.Replicas)
	}
	if n.Partitions < 1 || n.Partitions > 4096 {
		return fmt.Errorf("config: nats.partitions %d: want 1 to 4096", n.Partitions)
	}
	creds := 0
	for _, set := range []bool{n.User != "" || n.Password != "", n.Token != "", n.CredsFile != ""} {
		if set {
			creds++
		}
	}
	if creds > 1 {
		return errors.New("config: give one of nats.user/password, nats.token or nats.creds_file")
	}
	return nil
}
