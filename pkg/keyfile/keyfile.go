// Package keyfile watches STATSIG_SERVER_SDK_KEYS_FILE and reports a new key
// set whenever its content changes, so keys can be added and removed without
// a restart. It polls the file's content, which also works for Kubernetes
// Secret volumes (updated by swapping a symlink, which inotify misses on the
// file itself).
package keyfile

import (
	"bytes"
	"context"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Watch re-reads path every period until ctx ends. When its content changes
// and holds only valid keys, it calls apply with those keys merged after
// fixed (the keys from the environment). A file that cannot be read, holds an
// invalid key or leaves no key at all is reported and ignored: the current
// set stays, as a half-written Secret must not stop every poll.
func Watch(ctx context.Context, path string, fixed []keys.SDKKey, period time.Duration, apply func([]keys.SDKKey), log zerolog.Logger) {
	log = log.With().Str("file", path).Logger()
	last, _ := os.ReadFile(path) // what the configuration was loaded from
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(path)
		if err != nil {
			log.Warn().Err(err).Msg("cannot read the SDK keys file; keeping the current keys")
			continue
		}
		if bytes.Equal(data, last) {
			continue
		}
		last = data
		fromFile, bad := config.ParseKeys(string(data))
		if len(bad) > 0 {
			log.Error().Strs("problems", bad).Msg("the SDK keys file holds invalid keys; keeping the current keys until it is fixed")
			continue
		}
		merged := config.MergeKeys(fixed, fromFile)
		if len(merged) == 0 {
			log.Error().Msg("the SDK keys file holds no key; keeping the current keys")
			continue
		}
		log.Info().Int("sdk_keys", len(merged)).Msg("SDK keys file changed")
		apply(merged)
	}
}
