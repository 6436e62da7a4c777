// Package writer is the worker's Redis side: the atomic, monotonic write of a
// payload into one key, the batched reads that tell the scheduler what Redis
// holds, TTL refreshes and deletes.
//
// Every operation touches one key per command, so it runs unchanged on Redis
// Cluster (a pipeline spanning slots is split by the client), and the write
// guard lives in Redis itself, so any number of writers can never move a key
// back in time.
package writer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// writeHash stores a payload into the forward-proxy HASH unless the key
// already holds a payload with the same or a newer lcut.
//
//	KEYS[1]  the HASH
//	ARGV[1]  lcut, decimal epoch ms
//	ARGV[2]  the payload, exact bytes
//	ARGV[3]  TTL in ms; 0 removes any TTL
//
// Returns {1, lcut} when written, {0, stored lcut} when the stored one is the
// same or newer. A key of another type makes HGET fail (WRONGTYPE): we never
// overwrite something that is not ours.
var writeHash = redis.NewScript(`
local stored = redis.call('HGET', KEYS[1], 'lcut')
if stored and redis.call('HEXISTS', KEYS[1], 'config') == 1 then
  local s = tonumber(stored)
  if s and s >= tonumber(ARGV[1]) then
    return {0, stored}
  end
end
redis.call('HSET', KEYS[1], 'encoding', 'plain_text', 'lcut', ARGV[1], 'config', ARGV[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
end
return {1, ARGV[1]}
`)

// Writer performs the worker's Redis operations.
type Writer struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// New returns a Writer. ttl 0 means keys never expire.
func New(rdb redis.UniversalClient, ttl time.Duration) *Writer {
	return &Writer{rdb: rdb, ttl: ttl}
}

// Stored is what Redis holds in one payload key.
type Stored struct {
	// Lcut is the stored lcut, 0 when the key or a payload is missing.
	Lcut int64
	// Size is the length of the stored payload in bytes, 0 when missing.
	Size int64
	// Err is set when this key could not be read (for example a key of another
	// type); the other keys of the batch are still valid.
	Err error
}

// Present reports whether a payload is stored.
func (s Stored) Present() bool { return s.Err == nil && s.Size > 0 && s.Lcut > 0 }

// Inspect reads the lcut and payload size of every key in one round trip (one
// per node on a cluster). It never reads payloads. The error is set only when
// Redis could not be asked at all.
func (w *Writer) Inspect(ctx context.Context, hashKeys []string) ([]Stored, error) {
	out := make([]Stored, len(hashKeys))
	if len(hashKeys) == 0 {
		return out, nil
	}
	lcuts := make([]*redis.StringCmd, len(hashKeys))
	sizes := make([]*redis.IntCmd, len(hashKeys))
	_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range hashKeys {
			lcuts[i] = p.HGet(ctx, k, "lcut")
			sizes[i] = p.HStrLen(ctx, k, "config")
		}
		return nil
	})
	if err != nil && !isPerKeyError(err) {
		return nil, err
	}
	for i := range hashKeys {
		s := &out[i]
		size, err := sizes[i].Result()
		if err != nil {
			s.Err = err
			continue
		}
		lcutText, err := lcuts[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			s.Err = err
			continue
		}
		if size == 0 {
			continue
		}
		s.Size = size
		s.Lcut, _ = strconv.ParseInt(lcutText, 10, 64)
	}
	return out, nil
}

// isPerKeyError tells a failed command inside an answered pipeline (a missing
// field, a key of the wrong type) from a failure to reach Redis.
func isPerKeyError(err error) bool {
	if errors.Is(err, redis.Nil) {
		return true
	}
	var re redis.Error
	return errors.As(err, &re) && !isConnectionLevel(re.Error())
}

func isConnectionLevel(msg string) bool {
	for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "NOAUTH", "WRONGPASS", "NOPERM"} {
		if len(msg) >= len(p) && msg[:len(p)] == p {
			return true
		}
	}
	return false
}

// WriteResult says what a write did.
type WriteResult struct {
	Written bool
	// Stored is the lcut Redis holds after the call: ours when written, the
	// newer or equal one that made us skip otherwise.
	Stored int64
}

// Write stores payload with lcut into the HASH at key, unless Redis already
// holds the same or a newer lcut there. It is one atomic script call: Redis
// applies all of it or nothing, and a retried call is harmless.
func (w *Writer) Write(ctx context.Context, key string, lcut int64, payload []byte) (WriteResult, error) {
	res, err := writeHash.Run(ctx, w.rdb, []string{key}, lcut, payload, w.ttl.Milliseconds()).Slice()
	if err != nil {
		return WriteResult{}, err
	}
	if len(res) != 2 {
		return WriteResult{}, fmt.Errorf("unexpected script reply %v", res)
	}
	written, _ := res[0].(int64)
	var stored int64
	switch v := res[1].(type) {
	case string:
		stored, _ = strconv.ParseInt(v, 10, 64)
	case int64:
		stored = v
	}
	return WriteResult{Written: written == 1, Stored: stored}, nil
}

// Touch refreshes the TTL of keys that exist: the configured TTL, or none when
// it is 0 (which also clears a TTL left by an earlier configuration).
func (w *Writer) Touch(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			if w.ttl > 0 {
				p.PExpire(ctx, k, w.ttl)
			} else {
				p.Persist(ctx, k)
			}
		}
		return nil
	})
	return err
}

// TTL is the configured TTL (0 = never expire).
func (w *Writer) TTL() time.Duration { return w.ttl }

// Delete removes keys, one DEL each: the keys may live in different cluster
// slots.
func (w *Writer) Delete(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, k)
		}
		return nil
	})
	return err
}
