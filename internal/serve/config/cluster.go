package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// Targets of `ariadne serve --target`: which roles this process plays.
const (
	TargetAll     = "all"     // every role in one process (the default)
	TargetIngest  = "ingest"  // receives spans, keeps the WAL and head, uploads blocks
	TargetQuery   = "query"   // stateless: blocks from the bucket, heads from ingest nodes
	TargetCompact = "compact" // merges blocks, applies retention, writes the block index
)

// S3 says where blocks live when storage.backend is s3.
type S3 struct {
	Endpoint  string `yaml:"endpoint"` // host[:port]
	Bucket    string `yaml:"bucket"`
	Prefix    string `yaml:"prefix"`
	Region    string `yaml:"region"`
	Insecure  bool   `yaml:"insecure"` // plain HTTP, for a MinIO on the local network
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
}

// Cluster is how nodes sharing a bucket find each other and coordinate.
type Cluster struct {
	// Peers are the ingest nodes' internal HTTP addresses (their http_addr), asked by query
	// nodes for traces still in their heads.
	Peers []string `yaml:"peers"`
	// PeersDNS is a host:port whose A/AAAA records are the ingest nodes (a headless Kubernetes
	// service); resolved on every poll.
	PeersDNS string `yaml:"peers_dns"`
	// PollInterval is how often query nodes reload the block index (default 10s).
	PollInterval Duration `yaml:"poll_interval"`
	// UploadHold is how long an ingest node keeps serving a block after uploading it, so query
	// nodes have polled it before it leaves the node (default 1m).
	UploadHold Duration `yaml:"upload_hold"`
	// UploadQueueBytes is how much of built blocks may wait on local disk for the bucket;
	// past it ingest refuses with retryable errors (default 1 GiB).
	UploadQueueBytes int64 `yaml:"upload_queue_bytes"`
	// CompactInterval is how often the compactor works (default 30s).
	CompactInterval Duration `yaml:"compact_interval"`
	// LeaseTTL is how long a compactor's lease on a tenant lasts without renewal (default 1m).
	LeaseTTL Duration `yaml:"lease_ttl"`
	// DeleteGrace is how long a block marked for deletion stays readable; longer than any
	// query (default 5m).
	DeleteGrace Duration `yaml:"delete_grace"`
	// CacheBytes bounds the on-disk cache of block ranges read from the bucket (default 512 MiB).
	CacheBytes int64 `yaml:"cache_bytes"`
	// PeerToken is the bearer token this node sends on every peer request (default
	// $ARIADNE_PEER_TOKEN). With auth enabled the peers must list its SHA-256 among auth.tokens
	// with role internal (or admin); a query node with peers and auth on needs one.
	PeerToken string `yaml:"peer_token"`
}

func defaultCluster() Cluster {
	return Cluster{
		PollInterval:     Duration(10 * time.Second),
		UploadHold:       Duration(time.Minute),
		UploadQueueBytes: 1 << 30,
		CompactInterval:  Duration(30 * time.Second),
		LeaseTTL:         Duration(time.Minute),
		DeleteGrace:      Duration(5 * time.Minute),
		CacheBytes:       512 << 20,
	}
}

func (c *Config) registerClusterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Target, "target", c.Target, "roles of this process: all, ingest, query or compact")
	fs.StringVar(&c.Storage.Backend, "storage-backend", c.Storage.Backend, "where blocks live: local or s3")
	s := &c.Storage.S3
	fs.StringVar(&s.Endpoint, "s3-endpoint", s.Endpoint, "S3 endpoint, host[:port]")
	fs.StringVar(&s.Bucket, "s3-bucket", s.Bucket, "S3 bucket")
	fs.StringVar(&s.Prefix, "s3-prefix", s.Prefix, "prefix of every object in the bucket")
	fs.StringVar(&s.Region, "s3-region", s.Region, "S3 region")
	fs.BoolVar(&s.Insecure, "s3-insecure", s.Insecure, "plain HTTP to the S3 endpoint")
	fs.StringVar(&s.AccessKey, "s3-access-key", s.AccessKey, "S3 access key (default $AWS_ACCESS_KEY_ID)")
	fs.StringVar(&s.SecretKey, "s3-secret-key", s.SecretKey, "S3 secret key (default $AWS_SECRET_ACCESS_KEY)")
	fs.Func("cluster-peers", "comma-separated HTTP addresses of the ingest nodes", func(v string) error {
		c.Cluster.Peers = nil
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.Cluster.Peers = append(c.Cluster.Peers, p)
			}
		}
		return nil
	})
	fs.StringVar(&c.Cluster.PeersDNS, "cluster-peers-dns", c.Cluster.PeersDNS, "host:port whose DNS records are the ingest nodes")
	c.registerNATSFlags(fs)
}

// CheckCluster reports settings that cannot work together, and fills the S3 keys from the
// AWS environment variables when the file and flags give none.
func (c *Config) CheckCluster() error {
	switch c.Target {
	case "", TargetAll:
		c.Target = TargetAll
	case TargetIngest, TargetQuery, TargetCompact:
	default:
		return fmt.Errorf("config: target %q: want all, ingest, query or compact", c.Target)
	}
	switch c.Storage.Backend {
	case "", "local":
		c.Storage.Backend = "local"
		if c.Target != TargetAll {
			return fmt.Errorf("config: target %s needs storage.backend: s3 (nodes share blocks through the bucket)", c.Target)
		}
	case "s3":
		s := &c.Storage.S3
		if s.AccessKey == "" && s.SecretKey == "" {
			s.AccessKey, s.SecretKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
		}
		if s.Endpoint == "" || s.Bucket == "" {
			return errors.New("config: storage.backend s3 needs storage.s3.endpoint and storage.s3.bucket")
		}
		if strings.Contains(s.Endpoint, "://") {
			return fmt.Errorf("config: storage.s3.endpoint %q: give host[:port]; plain HTTP is storage.s3.insecure", s.Endpoint)
		}
	default:
		return fmt.Errorf("config: storage.backend %q: want local or s3", c.Storage.Backend)
	}
	if c.Storage.Backend == "s3" && c.Storage.MaxDiskBytes > 0 {
		// The budget deletes the oldest local blocks, and on a node that uploads those are the
		// ones an outage has kept from the bucket: acknowledged spans would be lost.
		return errors.New("config: storage.max_disk_bytes is for local storage; with storage.backend s3, cluster.upload_queue_bytes bounds the blocks waiting for the bucket and cluster.cache_bytes the query cache")
	}
	if c.Cluster.PeerToken == "" {
		c.Cluster.PeerToken = os.Getenv("ARIADNE_PEER_TOKEN")
	}
	// With the JetStream log every node has peers: the builders listed in the members bucket.
	if c.Auth.Enabled && c.Cluster.PeerToken == "" && (len(c.Cluster.Peers) > 0 || c.Cluster.PeersDNS != "" || c.Ingest.Log == IngestLogJetStream) {
		// Every peer request would be refused and every answer flagged partial.
		return errors.New("config: auth.enabled with cluster peers needs cluster.peer_token (or $ARIADNE_PEER_TOKEN): a token whose SHA-256 the peers list with role internal")
	}
	return c.checkNATS()
}
