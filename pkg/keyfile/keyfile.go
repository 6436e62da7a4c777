// Package keyfile watches STATSIG_SERVER_SDK_KEYS_FILE and reports a new key
// set whenever its content changes, so keys can be added and removed without
// a restart. It polls the file's content, which also works for Kubernetes
// Secret volumes (updated by swapping a symlink, which inotify misses on the
// file itself).
//
// It parses and validates with pkg/keys, exactly as the configuration does at
// start-up, so a file the watcher accepts is one start-up would accept.
package keyfile

import (
	"bytes"
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Watch re-reads path every period until ctx ends. When its content changes
// and holds only valid keys, it calls apply with those keys merged after
// fixed (the keys from the environment). schemas are the key schemas written
// (REDIS_KEY_SCHEMAS): a set that keys.CheckSet refuses under them (two keys
// sharing their first 20 characters with the prefix schema) is refused too.
// A file that cannot be read, is larger than keys.MaxFileSize, holds an
// invalid key, leaves no key at all or fails that check is reported and
// ignored: the current set stays, as a half-written Secret must not stop
// every poll.
func Watch(ctx context.Context, path string, fixed []keys.SDKKey, schemas []keys.Schema, period time.Duration, apply func([]keys.SDKKey), log zerolog.Logger) {
	w := &watcher{path: path, fixed: fixed, schemas: schemas, apply: apply, log: log.With().Str("file", path).Logger()}
	w.last, _ = keys.ReadFile(path) // what the configuration was loaded from
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.check()
	}
}

type watcher struct {
	path    string
	fixed   []keys.SDKKey
	schemas []keys.Schema
	apply   func([]keys.SDKKey)
	log     zerolog.Logger
	last    []byte // the content last seen, applied or not
}

// check reads the file once and applies its keys if they changed and are
// acceptable.
func (w *watcher) check() {
	data, err := keys.ReadFile(w.path)
	if err != nil {
		w.log.Warn().Err(err).Msg("cannot read the SDK keys file; keeping the current keys")
		return
	}
	if bytes.Equal(data, w.last) {
		return
	}
	w.last = data
	fromFile, bad := keys.ParseList(string(data))
	if len(bad) > 0 {
		w.log.Error().Strs("problems", bad).Msg("the SDK keys file holds invalid keys; keeping the current keys until it is fixed")
		return
	}
	merged := keys.Merge(w.fixed, fromFile)
	if len(merged) == 0 {
		w.log.Error().Msg("the SDK keys file holds no key; keeping the current keys")
		return
	}
	if problems := keys.CheckSet(merged, w.schemas); len(problems) > 0 {
		w.log.Error().Strs("problems", problems).Msg("the SDK keys would collide in Redis; keeping the current keys until the file is fixed")
		return
	}
	w.log.Info().Int("sdk_keys", len(merged)).Msg("SDK keys file changed")
	w.apply(merged)
}
