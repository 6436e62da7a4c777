// Package redisconn builds the go-redis client from the configuration and
// describes the target without its credentials.
package redisconn

import (
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/pkg/config"
)

// New returns a client for cfg and a description safe to log (no user name,
// no password).
func New(cfg config.Config) (redis.UniversalClient, string, error) {
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, "", fmt.Errorf("REDIS_URL: %w", err)
	}
	scheme := "redis"
	if opt.TLSConfig != nil {
		scheme = "rediss"
	}
	return redis.NewClient(opt), fmt.Sprintf("%s://%s/%d", scheme, opt.Addr, opt.DB), nil
}
