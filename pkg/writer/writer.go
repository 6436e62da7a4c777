// Package writer is the worker's Redis side: the atomic, monotonic write of a
// payload into one target, the batched reads that tell the scheduler what
// Redis holds, TTL refreshes, deletes, and reading a payload back the way an
// SDK adapter does.
//
// Every script touches one key, or two keys placed in the same cluster slot,
// so it runs unchanged on Redis Cluster, and the write guard lives in Redis
// itself, so any number of writers can never move a target back in time.
package writer

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// The write scripts. Each stores a payload unless the target already holds
// one with the same or a newer lcut, and returns {1, lcut} when it wrote or
// {0, stored lcut} when it did not. ARGV[1] is the lcut (decimal epoch ms),
// ARGV[2] the value, ARGV[3] the TTL in ms (0 removes any TTL). A key of an
// unexpected type makes the script fail: we never overwrite what is not ours.
var (
	// KEYS[1] the forward-proxy HASH.
	writeSFP = redis.NewScript(`
local stored = redis.call('HGET', KEYS[1], 'lcut')
if stored and redis.call('HEXISTS', KEYS[1], 'config') == 1 then
  local s = tonumber(stored)
  if s and s >= tonumber(ARGV[1]) then return {0, stored} end
end
redis.call('HSET', KEYS[1], 'encoding', 'plain_text', 'lcut', ARGV[1], 'config', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) else redis.call('PERSIST', KEYS[1]) end
return {1, ARGV[1]}
`)
	// KEYS[1] the shared node-redis HASH; ARGV[4] the payload field, ARGV[5]
	// its lcut field.
	writeNodeRedis = redis.NewScript(`
local stored = redis.call('HGET', KEYS[1], ARGV[5])
if stored and redis.call('HEXISTS', KEYS[1], ARGV[4]) == 1 then
  local s = tonumber(stored)
  if s and s >= tonumber(ARGV[1]) then return {0, stored} end
end
redis.call('HSET', KEYS[1], ARGV[4], ARGV[2], ARGV[5], ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) else redis.call('PERSIST', KEYS[1]) end
return {1, ARGV[1]}
`)
	// KEYS[1] the STRING, KEYS[2] its lcut key (same cluster slot).
	writeString = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'string' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. t .. ', not a string')
end
local stored = redis.call('GET', KEYS[2])
if stored and t == 'string' then
  local s = tonumber(stored)
  if s and s >= tonumber(ARGV[1]) then return {0, stored} end
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], ARGV[1])
end
return {1, ARGV[1]}
`)
)

// Writer performs the worker's Redis operations.
type Writer struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// New returns a Writer. ttl 0 means keys never expire.
func New(rdb redis.UniversalClient, ttl time.Duration) *Writer {
	return &Writer{rdb: rdb, ttl: ttl}
}

// TTL is the configured TTL (0 = never expire).
func (w *Writer) TTL() time.Duration { return w.ttl }

// Payload is one validated payload on its way to Redis. Its node-redis
// encoding is computed at most once, however many targets need it.
type Payload struct {
	Body []byte
	Lcut int64

	once    sync.Once
	encoded []byte
}

// NodeRedisValue is the payload as statsig-node-redis stores it:
// base64(zlib(payload)).
func (p *Payload) NodeRedisValue() []byte {
	p.once.Do(func() { p.encoded = EncodeNodeRedis(p.Body) })
	return p.encoded
}

// EncodeNodeRedis compresses b into a zlib stream (RFC 1950, as Node's
// deflateSync) and encodes it in standard base64.
func EncodeNodeRedis(b []byte) []byte {
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	_, _ = zw.Write(b)
	_ = zw.Close()
	out := make([]byte, base64.StdEncoding.EncodedLen(z.Len()))
	base64.StdEncoding.Encode(out, z.Bytes())
	return out
}

// DecodeNodeRedis reverses EncodeNodeRedis (and reads what statsig-node-redis
// itself writes).
func DecodeNodeRedis(v []byte) ([]byte, error) {
	z := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
	n, err := base64.StdEncoding.Decode(z, v)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(z[:n]))
	if err != nil {
		return nil, fmt.Errorf("not a zlib stream: %w", err)
	}
	defer zr.Close()
	return io.ReadAll(zr)
}

// Stored is what Redis holds in one target.
type Stored struct {
	// Lcut is the stored lcut, 0 when the target or its payload is missing.
	Lcut int64
	// Err is set when this target could not be read (for example a key of
	// another type); the other targets of the batch are still valid.
	Err error
}

// Present reports whether a payload is stored.
func (s Stored) Present() bool { return s.Err == nil && s.Lcut > 0 }

// Inspect reads the lcut of every target in one round trip (one per node on a
// cluster). It never reads payloads. The error is set only when Redis could
// not be asked at all.
//
// One command per target: a forward-proxy or node-redis payload and its lcut
// live in one HASH and are written together by one script, so the lcut stands
// for both (a HASH whose payload field was deleted by hand is not noticed
// here; populator check reports it). A string payload and its lcut are two
// keys that eviction could separate, so that format also asks for the
// payload's length.
func (w *Writer) Inspect(ctx context.Context, targets []keys.Target) ([]Stored, error) {
	out := make([]Stored, len(targets))
	if len(targets) == 0 {
		return out, nil
	}
	lcuts := make([]*redis.StringCmd, len(targets))
	sizes := make([]*redis.IntCmd, len(targets))
	_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, t := range targets {
			switch t.Format {
			case keys.NodeRedis:
				lcuts[i] = p.HGet(ctx, t.Key, t.LcutRef)
			case keys.String:
				lcuts[i] = p.Get(ctx, t.LcutRef)
				sizes[i] = p.StrLen(ctx, t.Key)
			default:
				lcuts[i] = p.HGet(ctx, t.Key, "lcut")
			}
		}
		return nil
	})
	if err != nil && !isPerKeyError(err) {
		return nil, err
	}
	for i := range targets {
		s := &out[i]
		if sizes[i] != nil {
			size, err := sizes[i].Result()
			if err != nil {
				s.Err = err
				continue
			}
			if size == 0 {
				continue
			}
		}
		text, err := lcuts[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			s.Err = err
		default:
			s.Lcut, _ = strconv.ParseInt(text, 10, 64)
		}
	}
	return out, nil
}

// isPerKeyError tells a failed command inside an answered pipeline (a missing
// value, a key of the wrong type) from a failure to reach Redis.
func isPerKeyError(err error) bool {
	if errors.Is(err, redis.Nil) {
		return true
	}
	var re redis.Error
	return errors.As(err, &re) && !isConnectionLevel(re.Error())
}

func isConnectionLevel(msg string) bool {
	for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "NOAUTH", "WRONGPASS", "NOPERM", "OOM"} {
		if len(msg) >= len(p) && msg[:len(p)] == p {
			return true
		}
	}
	return false
}

// WriteResult says what a write did.
type WriteResult struct {
	Written bool
	// Stored is the lcut the target holds after the call: ours when written,
	// the newer or equal one that made us skip otherwise.
	Stored int64
}

// Write stores p into t unless t already holds the same or a newer lcut. It
// is one atomic script call: Redis applies all of it or nothing, and a retried
// call is harmless.
func (w *Writer) Write(ctx context.Context, t keys.Target, p *Payload) (WriteResult, error) {
	ttl := w.ttl.Milliseconds()
	var cmd *redis.Cmd
	switch t.Format {
	case keys.NodeRedis:
		cmd = writeNodeRedis.Run(ctx, w.rdb, []string{t.Key}, p.Lcut, p.NodeRedisValue(), ttl, t.Field, t.LcutRef)
	case keys.String:
		cmd = writeString.Run(ctx, w.rdb, []string{t.Key, t.LcutRef}, p.Lcut, p.Body, ttl)
	default:
		cmd = writeSFP.Run(ctx, w.rdb, []string{t.Key}, p.Lcut, p.Body, ttl)
	}
	res, err := cmd.Slice()
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

// Touch refreshes the TTL of existing targets: the configured TTL, or none
// when it is 0 (which also clears a TTL an earlier configuration left).
func (w *Writer) Touch(ctx context.Context, targets []keys.Target) error {
	if len(targets) == 0 {
		return nil
	}
	seen := map[string]bool{}
	_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, t := range targets {
			names := []string{t.Key}
			if t.Format == keys.String {
				names = append(names, t.LcutRef)
			}
			for _, k := range names {
				if seen[k] { // the shared node-redis HASH, once
					continue
				}
				seen[k] = true
				if w.ttl > 0 {
					p.PExpire(ctx, k, w.ttl)
				} else {
					p.Persist(ctx, k)
				}
			}
		}
		return nil
	})
	return err
}

// DeleteSiblings removes the statsig-br keys next to targets (where they have
// one): server-core stores with getBytes read them first, so a leftover would
// hide every JSON write.
func (w *Writer) DeleteSiblings(ctx context.Context, targets []keys.Target) error {
	var names []string
	for _, t := range targets {
		if sibling := t.BRSibling(); sibling != "" {
			names = append(names, sibling)
		}
	}
	return w.del(ctx, names, nil)
}

// Delete removes what the worker wrote for targets, statsig-br siblings
// included. In the shared node-redis HASH only the target's fields go.
func (w *Writer) Delete(ctx context.Context, targets []keys.Target) error {
	var names []string
	var fields []keys.Target
	for _, t := range targets {
		switch t.Format {
		case keys.NodeRedis:
			fields = append(fields, t)
		case keys.String:
			names = append(names, t.Key, t.LcutRef)
		default:
			names = append(names, t.Key)
		}
		if sibling := t.BRSibling(); sibling != "" {
			names = append(names, sibling)
		}
	}
	return w.del(ctx, names, fields)
}

// del removes whole keys (one DEL each: they may live in different cluster
// slots) and node-redis fields.
func (w *Writer) del(ctx context.Context, names []string, fields []keys.Target) error {
	if len(names) == 0 && len(fields) == 0 {
		return nil
	}
	_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range names {
			p.Del(ctx, k)
		}
		for _, t := range fields {
			p.HDel(ctx, t.Key, t.Field, t.LcutRef)
		}
		return nil
	})
	return err
}

// Entry is a target read back the way an SDK adapter reads it.
type Entry struct {
	// Payload is the decoded payload; nil when absent.
	Payload []byte
	// Lcut is the lcut stored next to it, 0 when absent.
	Lcut int64
	// Size is the stored value's size in bytes (encoded, for node-redis).
	Size int
	// TTL is the key's remaining time to live; negative when it has none.
	TTL time.Duration
}

// Read fetches t's payload as an SDK adapter would (HGET config, HGET field
// and decode, or GET) together with its stored lcut. It never writes.
func (w *Writer) Read(ctx context.Context, t keys.Target) (Entry, error) {
	var (
		value, lcut *redis.StringCmd
		ttl         *redis.DurationCmd
	)
	_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		switch t.Format {
		case keys.NodeRedis:
			value = p.HGet(ctx, t.Key, t.Field)
			lcut = p.HGet(ctx, t.Key, t.LcutRef)
		case keys.String:
			value = p.Get(ctx, t.Key)
			lcut = p.Get(ctx, t.LcutRef)
		default:
			value = p.HGet(ctx, t.Key, "config")
			lcut = p.HGet(ctx, t.Key, "lcut")
		}
		ttl = p.PTTL(ctx, t.Key)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Entry{}, err
	}
	var e Entry
	e.TTL = ttl.Val()
	if l, err := lcut.Result(); err == nil {
		e.Lcut, _ = strconv.ParseInt(l, 10, 64)
	}
	v, err := value.Bytes()
	if errors.Is(err, redis.Nil) {
		return e, nil
	}
	if err != nil {
		return e, err
	}
	e.Size = len(v)
	if t.Format == keys.NodeRedis {
		if v, err = DecodeNodeRedis(v); err != nil {
			return e, err
		}
	}
	e.Payload = v
	return e, nil
}
