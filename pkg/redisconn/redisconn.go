// Package redisconn builds the go-redis client for the configured topology:
// a standalone server, a Redis Cluster or a Sentinel-managed master, with
// ACL credentials and TLS (mutual TLS included).
//
// It does not import pkg/config: Options is the whole of what it needs, so
// that the package can be used and tested on its own; pkg/config fills it
// from the environment.
package redisconn

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Mode is the Redis topology.
type Mode string

const (
	Standalone Mode = "standalone"
	Cluster    Mode = "cluster"
	Sentinel   Mode = "sentinel"
)

// Options is how to reach Redis. Secrets (passwords) are kept here but never
// printed by this package.
type Options struct {
	Mode Mode
	// Addrs: one host:port for standalone, the seed nodes for a cluster, the
	// Sentinels for sentinel.
	Addrs            []string
	SentinelMaster   string
	SentinelPassword string
	Username         string
	Password         string
	// PasswordFile is the file Password was read from (REDIS_PASSWORD_FILE),
	// or empty. When set, the file is read again for every new connection, so
	// a rotated Secret is used as soon as connections are re-made (after an
	// auth failure, a server-side kill or a restart) without restarting the
	// worker. Password is used while the file cannot be read or is empty.
	PasswordFile string
	DB           int
	// TLS is nil for plain TCP.
	TLS *tls.Config
	// InsecureSkipVerify is set when REDIS_TLS_INSECURE_SKIP_VERIFY (or
	// skip_verify in REDIS_URL) is on, so that start-up can warn about it.
	InsecureSkipVerify bool
	// PoolSize is the connection pool size (per node on a cluster), unless
	// Tuning.PoolSize sets one. Zero leaves go-redis's default, 10 per
	// GOMAXPROCS, which is 10 on the worker's one thread: fewer than the
	// writes a poll round has in flight, which would then queue for a
	// connection.
	PoolSize int
	// Tuning is the go-redis options given in REDIS_URL's query (see
	// ParseQuery), applied to every topology.
	Tuning Tuning
	// ClusterRefresh is how old a cluster's slot map may get before the
	// next command makes go-redis reload it in the background (0:
	// DefaultClusterRefresh). Only for Mode Cluster.
	ClusterRefresh time.Duration
}

// DefaultClusterRefresh is the slot map age that triggers a reload on a
// cluster. go-redis's own default is 60 s, and it does not reload on
// connection errors: after a master dies and its replica takes over, a
// client keeps dialling the dead node until then. The worker sends commands
// continuously, so the map it routes with is never much older than this;
// pkg/writer also asks for a reload as soon as a node fails to answer. A
// reload is one CLUSTER SLOTS to one node.
const DefaultClusterRefresh = 2 * time.Second

// Describe names the target without credentials, for logs.
func (o Options) Describe() string {
	scheme := "redis"
	if o.TLS != nil {
		scheme = "rediss"
	}
	switch o.Mode {
	case Cluster:
		return "cluster " + scheme + "://" + strings.Join(o.Addrs, ",")
	case Sentinel:
		return "sentinel " + scheme + "://" + strings.Join(o.Addrs, ",") + " master " + o.SentinelMaster + "/" + strconv.Itoa(o.DB)
	}
	if len(o.Addrs) == 0 {
		return scheme + "://?/" + strconv.Itoa(o.DB)
	}
	return scheme + "://" + o.Addrs[0] + "/" + strconv.Itoa(o.DB)
}

const (
	pipelineBufferSize = 32 << 10
	defaultClientName  = "statsig-populator"
)

// New returns a client for o.
func New(o Options) (redis.UniversalClient, error) {
	if len(o.Addrs) == 0 {
		return nil, errors.New("redisconn: no Redis address")
	}
	t := o.Tuning
	opt := &redis.UniversalOptions{
		Addrs:            o.Addrs,
		ClientName:       cmp.Or(t.ClientName, defaultClientName),
		DB:               o.DB,
		Username:         o.Username,
		Password:         o.Password,
		SentinelPassword: o.SentinelPassword,
		MasterName:       o.SentinelMaster,
		IsClusterMode:    o.Mode == Cluster,
		TLSConfig:        o.TLS,

		Protocol:              t.Protocol,
		MaxRetries:            t.MaxRetries,
		MinRetryBackoff:       t.MinRetryBackoff,
		MaxRetryBackoff:       t.MaxRetryBackoff,
		DialTimeout:           t.DialTimeout,
		ReadTimeout:           t.ReadTimeout,
		WriteTimeout:          t.WriteTimeout,
		PoolFIFO:              t.PoolFIFO,
		PoolSize:              cmp.Or(t.PoolSize, o.PoolSize),
		PoolTimeout:           t.PoolTimeout,
		MinIdleConns:          t.MinIdleConns,
		MaxIdleConns:          t.MaxIdleConns,
		MaxActiveConns:        t.MaxActiveConns,
		MaxConcurrentDials:    t.MaxConcurrentDials,
		PipelinePoolSize:      t.PipelinePoolSize,
		ConnMaxIdleTime:       t.ConnMaxIdleTime,
		ConnMaxLifetime:       t.ConnMaxLifetime,
		ConnMaxLifetimeJitter: t.ConnMaxLifetimeJitter,
		// go-redis gives pipeline connections 128 KiB read and write buffers
		// by default. The worker's pipelines carry lcut checks and DELs, a few
		// KB even for a batch of hundreds of keys, while the first sync opens
		// several such connections that then stay idle: 32 KiB, the size of a
		// regular connection's buffers, is enough (docs/performance.md has
		// the memory it saves).
		PipelineReadBufferSize:  cmp.Or(t.PipelineReadBufferSize, pipelineBufferSize),
		PipelineWriteBufferSize: cmp.Or(t.PipelineWriteBufferSize, pipelineBufferSize),
		// The worker bounds every Redis call with a context deadline; let it
		// apply to the socket too, so a paused server cannot hold a call
		// longer than that.
		ContextTimeoutEnabled: true,
	}
	if o.PasswordFile != "" {
		// go-redis asks the provider for every new connection (it takes
		// precedence over Username and Password): a rotated password file is
		// picked up by the next connection made. Sentinel connections have no
		// such hook in go-redis, so REDIS_SENTINEL_PASSWORD_FILE is read once.
		opt.CredentialsProviderContext = (&fileCredentials{username: o.Username, path: o.PasswordFile, last: o.Password}).get
	}
	if o.Mode == Cluster && opt.MasterName == "" {
		// Built here rather than by NewUniversalClient, which has no
		// field for the reload interval.
		co := opt.Cluster()
		co.ClusterStateReloadInterval = cmp.Or(o.ClusterRefresh, DefaultClusterRefresh)
		// One dial per connection attempt: go-redis otherwise dials a node
		// five times, 100 ms apart, before a command sees the failure, and
		// retries the command (MaxRedirects, 3) on top: 1.6 s per command or
		// pipeline to a dead master, for the worker's batches and so for the
		// keys on the healthy masters too. The command-level retries remain.
		co.DialerRetries = 1
		return redis.NewClusterClient(co), nil
	}
	return redis.NewUniversalClient(opt), nil
}

// PasswordFromFile is the password a *_FILE secret holds: its content less
// one trailing newline (and a CR before it), as most tools and editors write
// one. Configuration and the re-reads of New use this one rule.
func PasswordFromFile(content []byte) string {
	s := strings.TrimSuffix(string(content), "\n")
	return strings.TrimSuffix(s, "\r")
}

// fileCredentials reads the password file for every new connection.
type fileCredentials struct {
	username, path string

	mu   sync.Mutex
	last string // the last password read, or the one given at start
}

func (f *fileCredentials) get(context.Context) (string, string, error) {
	data, err := keys.ReadFile(f.path)
	f.mu.Lock()
	defer f.mu.Unlock()
	// A file that cannot be read or is empty (a Secret volume in the middle
	// of an update, a transient I/O error) must not turn into an
	// unauthenticated connection: keep using the last good password, which
	// is the one the server accepted until now.
	if pw := PasswordFromFile(data); err == nil && pw != "" {
		f.last = pw
	}
	return f.username, f.last, nil
}
