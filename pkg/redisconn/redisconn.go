// Package redisconn builds the go-redis client for the configured topology:
// a standalone server, a Redis Cluster or a Sentinel-managed master, with
// ACL credentials and TLS (mutual TLS included).
package redisconn

import (
	"cmp"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/pkg/config"
)

const pipelineBufferSize = 32 << 10

// New returns a client for r.
func New(r config.Redis) (redis.UniversalClient, error) {
	// go-redis options given in REDIS_URL's query (timeouts, pool sizes)
	// apply to every topology.
	base, err := redis.ParseURL("redis://localhost/?" + r.URLQuery)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL options: %w", err)
	}
	opt := &redis.UniversalOptions{
		Addrs:            r.Addrs,
		ClientName:       "statsig-populator",
		DB:               r.DB,
		Username:         r.Username,
		Password:         r.Password,
		SentinelPassword: r.SentinelPassword,
		MasterName:       r.SentinelMaster,
		IsClusterMode:    r.Mode == config.Cluster,
		TLSConfig:        r.TLS,
		MaxRetries:       base.MaxRetries,
		DialTimeout:      base.DialTimeout,
		ReadTimeout:      base.ReadTimeout,
		WriteTimeout:     base.WriteTimeout,
		PoolSize:         base.PoolSize,
		MinIdleConns:     base.MinIdleConns,
		MaxIdleConns:     base.MaxIdleConns,
		PoolTimeout:      base.PoolTimeout,
		ConnMaxIdleTime:  base.ConnMaxIdleTime,
		ConnMaxLifetime:  base.ConnMaxLifetime,
		// go-redis gives pipeline connections 128 KiB read and write buffers
		// by default. The worker's pipelines carry lcut checks and DELs, a few
		// KB even for a batch of hundreds of keys, while the first sync opens
		// up to ten such connections that then stay idle: 32 KiB, the size
		// of a regular connection's buffers, saves about 2 MB of RSS.
		PipelineReadBufferSize:  cmp.Or(base.PipelineReadBufferSize, pipelineBufferSize),
		PipelineWriteBufferSize: cmp.Or(base.PipelineWriteBufferSize, pipelineBufferSize),
		// The worker bounds every Redis call with a context deadline; let it
		// apply to the socket too, so a paused server cannot hold a call
		// longer than that.
		ContextTimeoutEnabled: true,
	}
	return redis.NewUniversalClient(opt), nil
}
