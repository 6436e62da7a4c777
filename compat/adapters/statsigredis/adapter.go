// Package statsigredis is a read-only data adapter for the legacy Statsig Go SDK
// (github.com/statsig-io/go-sdk) over the statsig-populator "sfp" layout.
package statsigredis

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	statsig "github.com/statsig-io/go-sdk"
)

// ReadOnlyRedisAdapter serves go-sdk's fixed keys, which name no SDK key, from
// the populator's keys of one SDK key: use one adapter per SDK key.
//
//	statsig.cache            HASH   statsig|/v1/download_config_specs|plain_text|<id>, field config
//	statsig.id_lists         HASH   statsig|/v1/get_id_lists|plain_text|<id>, field config (the manifest)
//	statsig.id_lists::<name> STRING statsig|id_list::<name>|plain_text|<id> (the list file)
type ReadOnlyRedisAdapter struct {
	rdb    *redis.Client
	prefix string
	id     string
}

// New reads the keys of sdkKey under the hashed schema (<id> is
// base64(sha256(sdkKey))); prefix is the populator's REDIS_KEY_PREFIX.
func New(rdb *redis.Client, prefix, sdkKey string) *ReadOnlyRedisAdapter {
	sum := sha256.Sum256([]byte(sdkKey))
	return &ReadOnlyRedisAdapter{rdb: rdb, prefix: prefix, id: base64.StdEncoding.EncodeToString(sum[:])}
}

func (a *ReadOnlyRedisAdapter) Get(key string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var cmd *redis.StringCmd
	switch {
	case key == statsig.CONFIG_SPECS_KEY:
		cmd = a.rdb.HGet(ctx, a.key("/v1/download_config_specs"), "config")
	case key == statsig.ID_LISTS_KEY:
		cmd = a.rdb.HGet(ctx, a.key("/v1/get_id_lists"), "config")
	case strings.HasPrefix(key, statsig.ID_LISTS_KEY+"::"):
		// go-sdk reads on from the offset it consumed for the manifest's
		// fileID: the populator only appends to a list until its fileID changes.
		cmd = a.rdb.Get(ctx, a.key("id_list::"+strings.TrimPrefix(key, statsig.ID_LISTS_KEY+"::")))
	default:
		return ""
	}
	value, err := cmd.Result()
	if err != nil { // redis.Nil or a connection error: the SDK keeps what it has
		return ""
	}
	return value
}

func (a *ReadOnlyRedisAdapter) key(path string) string {
	return a.prefix + "statsig|" + path + "|plain_text|" + a.id
}

func (a *ReadOnlyRedisAdapter) Set(key, value string) {} // no-op: the populator is the only writer

func (a *ReadOnlyRedisAdapter) Initialize() {}

func (a *ReadOnlyRedisAdapter) Shutdown() {}

// ShouldBeUsedForQueryingUpdates makes the SDK poll Redis, not the network, for
// config changes and ID lists.
func (a *ReadOnlyRedisAdapter) ShouldBeUsedForQueryingUpdates(key string) bool {
	return key == statsig.CONFIG_SPECS_KEY || key == statsig.ID_LISTS_KEY
}
