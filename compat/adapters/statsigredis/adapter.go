// Package statsigredis is a read-only data adapter for the legacy Statsig Go SDK
// (github.com/statsig-io/go-sdk) over the statsig-populator "sfp" layout.
package statsigredis

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/redis/go-redis/v9"
	statsig "github.com/statsig-io/go-sdk"
)

// ReadOnlyRedisAdapter serves go-sdk's fixed key "statsig.cache" from the
// populator's /v1 HASH of one SDK key: use one adapter per SDK key.
type ReadOnlyRedisAdapter struct {
	rdb    *redis.Client
	dcsKey string
}

// New reads statsig|/v1/download_config_specs|plain_text|<base64(sha256(sdkKey))>;
// prefix is the populator's REDIS_KEY_PREFIX.
func New(rdb *redis.Client, prefix, sdkKey string) *ReadOnlyRedisAdapter {
	sum := sha256.Sum256([]byte(sdkKey))
	id := base64.StdEncoding.EncodeToString(sum[:])
	return &ReadOnlyRedisAdapter{rdb: rdb, dcsKey: prefix + "statsig|/v1/download_config_specs|plain_text|" + id}
}

func (a *ReadOnlyRedisAdapter) Get(key string) string {
	if key != statsig.CONFIG_SPECS_KEY { // ID lists (statsig.id_lists…) are not in Redis
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	config, err := a.rdb.HGet(ctx, a.dcsKey, "config").Result()
	if err != nil { // redis.Nil or a connection error: the SDK keeps what it has
		return ""
	}
	return config
}

func (a *ReadOnlyRedisAdapter) Set(key, value string) {} // no-op: the populator is the only writer

func (a *ReadOnlyRedisAdapter) Initialize() {}

func (a *ReadOnlyRedisAdapter) Shutdown() {}

// ShouldBeUsedForQueryingUpdates makes the SDK poll Redis, not the network, for
// config changes; ID lists stay on the network.
func (a *ReadOnlyRedisAdapter) ShouldBeUsedForQueryingUpdates(key string) bool {
	return key == statsig.CONFIG_SPECS_KEY
}
