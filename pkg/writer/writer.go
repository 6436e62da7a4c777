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
	"math"
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
//
// Each checks the TYPE of its keys first and answers a key of another type
// with a fixed reply, "WRONGTYPE holds a <type>" (or "WRONGTYPE lcut holds a
// <type>" for the string format's companion), never with a key name: a
// prefix-schema name holds 20 characters of the secret SDK key, and an error
// travels to logs, /status and command output. targetErr turns the reply into
// a description of the target by version, format and schema.
var (
	// KEYS[1] the forward-proxy HASH.
	writeSFP = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'hash' then return redis.error_reply('WRONGTYPE holds a ' .. t) end
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
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'hash' then return redis.error_reply('WRONGTYPE holds a ' .. t) end
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
if t ~= 'none' and t ~= 'string' then return redis.error_reply('WRONGTYPE holds a ' .. t) end
local lt = redis.call('TYPE', KEYS[2])['ok']
if lt ~= 'none' and lt ~= 'string' then return redis.error_reply('WRONGTYPE lcut holds a ' .. lt) end
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
	// maxPayload bounds what Read and ReadMany inflate (0: DefaultMaxPayload).
	maxPayload int64
}

// New returns a Writer. ttl 0 means keys never expire.
func New(rdb redis.UniversalClient, ttl time.Duration) *Writer {
	return &Writer{rdb: rdb, ttl: ttl}
}

// SetMaxPayload bounds, in decoded bytes, the node-redis values Read and
// ReadMany inflate (n <= 0: DefaultMaxPayload). Call it before any read.
func (w *Writer) SetMaxPayload(n int64) { w.maxPayload = n }

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

// DefaultMaxPayload bounds what DecodeNodeRedis and Read inflate when no
// other limit is given: MAX_PAYLOAD_BYTES's default, the largest payload the
// worker itself would write.
const DefaultMaxPayload = 256 << 20

// ErrPayloadTooLarge is returned when a node-redis value inflates past the
// limit.
var ErrPayloadTooLarge = errors.New("payload too large")

// DecodeNodeRedis reverses EncodeNodeRedis (and reads what statsig-node-redis
// itself writes), refusing to inflate more than max bytes (max <= 0 means
// DefaultMaxPayload). The value comes from a Redis anyone with write access
// may fill: a zlib stream inflates about 1000:1, so without a bound a small
// value could make the reader allocate without limit. The output buffer grows
// only as inflated bytes arrive; nothing is reserved up front from any size
// the stream claims.
func DecodeNodeRedis(v []byte, max int64) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxPayload
	}
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
	// One byte past the limit tells "exactly max" from "more than max"
	// (saturating: max+1 must not wrap for a limit of MaxInt64).
	limit := max
	if limit < math.MaxInt64 {
		limit++
	}
	out, err := io.ReadAll(io.LimitReader(zr, limit))
	if int64(len(out)) > max {
		return nil, fmt.Errorf("%w: the value inflates to more than %d bytes", ErrPayloadTooLarge, max)
	}
	if err != nil {
		return nil, fmt.Errorf("corrupt zlib stream: %w", err)
	}
	return out, nil
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
		return nil, scrub(err, targets...)
	}
	for i := range targets {
		s := &out[i]
		if sizes[i] != nil {
			size, err := sizes[i].Result()
			if err != nil {
				s.Err = targetErr(targets[i], err)
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
			s.Err = targetErr(targets[i], err)
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
	// Errors name the target by version, format and schema, never by key
	// (targetErr): the caller adds the redacted SDK key.
	res, err := cmd.Slice()
	if err != nil {
		return WriteResult{}, targetErr(t, err)
	}
	if len(res) != 2 {
		return WriteResult{}, targetErr(t, fmt.Errorf("unexpected script reply of %d elements", len(res)))
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
	return scrub(err, targets...)
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
	return scrub(w.del(ctx, names, nil), targets...)
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
	return scrub(w.del(ctx, names, fields), targets...)
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
	// Sibling reports a statsig-br key next to the target (sfp and string
	// formats, /v2): server-core stores with getBytes read it instead.
	Sibling bool
	// Err is set (a *TargetError) when this target could not be read as an
	// SDK would: a key of another type, a value that does not decode. The
	// fields above hold what could be read.
	Err error
}

// ReadChunk is how many targets a caller of ReadMany should pass at once:
// one round trip each, and a chunk's payloads are all a reader holds.
const ReadChunk = 256

// Read fetches t's payload as an SDK adapter would (HGET config, HGET field
// and decode, or GET) together with its stored lcut. It never writes. The
// error is the entry's Err, or why Redis could not be asked.
func (w *Writer) Read(ctx context.Context, t keys.Target) (Entry, error) {
	es, err := w.ReadMany(ctx, []keys.Target{t})
	if err != nil {
		return Entry{}, err
	}
	return es[0], es[0].Err
}

// ReadMany does what Read does for every target, and asks whether each
// statsig-br sibling exists, in one pipelined round trip (one per node on a
// cluster). It never writes. It holds every payload of the batch at once:
// pass at most ReadChunk targets per call.
//
// The error is set only when Redis could not be asked or refused to answer
// (connection, authentication, permissions, loading): then no entry is
// valid, and the caller should stop rather than ask again per key. A failure
// that concerns one target is that entry's Err.
func (w *Writer) ReadMany(ctx context.Context, targets []keys.Target) ([]Entry, error) {
	out := make([]Entry, len(targets))
	if len(targets) == 0 {
		return out, nil
	}
	type reads struct {
		typ         *redis.StatusCmd
		value, lcut *redis.StringCmd
		ttl         *redis.DurationCmd
		sibling     *redis.IntCmd
	}
	rs := make([]reads, len(targets))
	cmds, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, t := range targets {
			r := &rs[i]
			// TYPE first: a key of another type is then reported by name
			// of its type rather than by a WRONGTYPE from whichever read
			// reached it.
			r.typ = p.Type(ctx, t.Key)
			switch t.Format {
			case keys.NodeRedis:
				r.value = p.HGet(ctx, t.Key, t.Field)
				r.lcut = p.HGet(ctx, t.Key, t.LcutRef)
			case keys.String:
				r.value = p.Get(ctx, t.Key)
				r.lcut = p.Get(ctx, t.LcutRef)
			default:
				r.value = p.HGet(ctx, t.Key, "config")
				r.lcut = p.HGet(ctx, t.Key, "lcut")
			}
			r.ttl = p.PTTL(ctx, t.Key)
			if sibling := t.BRSibling(); sibling != "" {
				r.sibling = p.Exists(ctx, sibling)
			}
		}
		return nil
	})
	// A connection that could not be set up (refused credentials) fails the
	// whole pipeline, and may leave no command behind to carry the error.
	if err != nil && !isPerKeyError(err) {
		return nil, scrub(err, targets...)
	}
	// Otherwise Pipelined returns only the first failed command's error,
	// which may be a harmless redis.Nil while a later command failed on the
	// connection: look at every command, and report the batch failed if any
	// did for a reason other than its own key.
	for _, c := range cmds {
		if err := c.Err(); err != nil && !isPerKeyError(err) {
			return nil, scrub(err, targets...)
		}
	}
	max := w.maxPayload
	if max <= 0 {
		max = DefaultMaxPayload
	}
	for i, t := range targets {
		r, e := &rs[i], &out[i]
		e.TTL = r.ttl.Val()
		if r.sibling != nil {
			e.Sibling = r.sibling.Val() > 0
		}
		typ, err := r.typ.Result()
		if err != nil {
			e.Err = targetErr(t, err)
			continue
		}
		if typ != "none" && typ != wantType(t) {
			e.Err = wrongType(t, "", typ)
			continue
		}
		l, err := r.lcut.Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil: // the string format's lcut key, of another type
			e.Err = targetErr(t, err)
			continue
		default:
			e.Lcut, _ = strconv.ParseInt(l, 10, 64)
		}
		v, err := r.value.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			e.Err = targetErr(t, err)
			continue
		}
		e.Size = len(v)
		if t.Format == keys.NodeRedis {
			if v, err = DecodeNodeRedis(v, max); err != nil {
				e.Err = targetErr(t, err)
				continue
			}
		}
		e.Payload = v
	}
	return out, nil
}
