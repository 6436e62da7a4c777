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
	"sync/atomic"
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
	// waitReplicas and waitTimeout: a WAIT after each write that wrote
	// (SetWaitReplicas); 0 replicas means none.
	waitReplicas int
	waitTimeout  time.Duration
	// lastReload is when a cluster slot map reload was last asked for
	// (unix ns), to ask at most once per ReloadMinInterval.
	lastReload atomic.Int64
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
	// another type, or its cluster node down); the other targets of the
	// batch are still valid.
	Err error
	// Unreachable is set with Err when Redis could not be asked about the
	// target at all (IsUnreachable: its node refused or lost the
	// connection, timed out, or answered CLUSTERDOWN, MASTERDOWN, LOADING,
	// TRYAGAIN, READONLY, an unfollowed redirect or an authentication
	// failure) rather than answering about the key itself (a key of another
	// type: Unreachable false). Asking again later is the cure, not a
	// rewrite: nothing is known about what the target holds.
	Unreachable bool
}

// Present reports whether a payload is stored.
func (s Stored) Present() bool { return s.Err == nil && s.Lcut > 0 }

// Inspect reads the lcut of every target in one round trip (one per node on a
// cluster). It never reads payloads.
//
// Failures are per target: a target whose node cannot be reached (a cluster
// master that died, before the cluster fails over) gets Err and Unreachable,
// and the targets on the other nodes still get their lcut. The error is set
// only when no target at all could be read (Redis down, or every node
// holding these targets down): the caller can tell "Redis is down" from
// "one node is down". On a cluster, a connection-level failure also asks
// go-redis to reload its slot map (at most once per ReloadMinInterval), so a
// failover is noticed within a round trip rather than at the next periodic
// refresh.
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
	causes := make([]error, len(targets)) // the raw error of each unreachable target
	groups := w.byNode(ctx, targets)
	if len(groups) == 1 {
		st, ca := w.inspectGroup(ctx, pick(targets, groups[0]))
		for n, i := range groups[0] {
			out[i], causes[i] = st[n], ca[n]
		}
	} else {
		w.inspectNodes(ctx, targets, groups, out, causes)
	}
	var first error
	reached := false
	for i := range out {
		if !out[i].Unreachable {
			reached = true
		} else if first == nil {
			first = causes[i]
		}
	}
	if first != nil {
		w.noteUnreachable()
	}
	if !reached {
		return nil, scrub(first, targets...)
	}
	return out, nil
}

// StragglerWait is how long Inspect waits for the other nodes of a cluster
// once one node has answered (a node failing at once, connection refused,
// does not count as an answer). A node that does not answer (stopped, or its
// host gone without a reset, so that only a timeout ends the wait) would
// otherwise hold every batch, and so the keys on the healthy nodes, for the
// caller's whole timeout.
const StragglerWait = 500 * time.Millisecond

// inspectNodes runs one pipeline per node group, concurrently: a node that
// does not answer (its pipeline retried until the context ends) cannot stamp
// its error on the answers of the others, as one cluster-wide pipeline would
// once its retries run out of time. Groups still unanswered StragglerWait
// after the first node answered are reported unreachable; their pipelines
// end on their own, bounded by ctx, and what they find is dropped.
func (w *Writer) inspectNodes(ctx context.Context, targets []keys.Target, groups [][]int, out []Stored, causes []error) {
	type answer struct {
		group  int
		stored []Stored
		causes []error
	}
	answers := make(chan answer, len(groups)) // buffered: a straggler never blocks
	for g, idx := range groups {
		// The group's own copy: a straggler may still read it after
		// Inspect has returned.
		ts := pick(targets, idx)
		go func() {
			st, ca := w.inspectGroup(ctx, ts)
			answers <- answer{g, st, ca}
		}()
	}
	answered := make([]bool, len(groups))
	var straggle <-chan time.Time
	for pending := len(groups); pending > 0; {
		select {
		case a := <-answers:
			for n, i := range groups[a.group] {
				out[i], causes[i] = a.stored[n], a.causes[n]
			}
			answered[a.group] = true
			pending--
			if straggle == nil && reachedAny(a.stored) {
				timer := time.NewTimer(StragglerWait)
				defer timer.Stop()
				straggle = timer.C
			}
		case <-straggle:
			err := fmt.Errorf("no answer within %v of the other cluster nodes: %w", StragglerWait, context.DeadlineExceeded)
			for g, idx := range groups {
				if answered[g] {
					continue
				}
				for _, i := range idx {
					out[i] = Stored{Err: targetErr(targets[i], err), Unreachable: true}
					causes[i] = err
				}
			}
			pending = 0
		}
	}
}

func reachedAny(stored []Stored) bool {
	for _, s := range stored {
		if !s.Unreachable {
			return true
		}
	}
	return false
}

// pick is a new slice of targets[i] for each i of idx.
func pick(targets []keys.Target, idx []int) []keys.Target {
	out := make([]keys.Target, len(idx))
	for n, i := range idx {
		out[n] = targets[i]
	}
	return out
}

// inspectGroup reads targets (all on one node on a cluster) in one pipeline:
// what each holds and, for each unreachable one, the raw error.
func (w *Writer) inspectGroup(ctx context.Context, targets []keys.Target) ([]Stored, []error) {
	out := make([]Stored, len(targets))
	causes := make([]error, len(targets))
	lcuts := make([]*redis.StringCmd, len(targets))
	sizes := make([]*redis.IntCmd, len(targets))
	cmds, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for n, t := range targets {
			switch t.Format {
			case keys.NodeRedis:
				lcuts[n] = p.HGet(ctx, t.Key, t.LcutRef)
			case keys.String:
				lcuts[n] = p.Get(ctx, t.LcutRef)
				sizes[n] = p.StrLen(ctx, t.Key)
			default:
				lcuts[n] = p.HGet(ctx, t.Key, "lcut")
			}
		}
		return nil
	})
	// A connection that could not be set up (refused credentials) fails the
	// whole pipeline and may leave no command behind to carry the error:
	// then every target of the group failed with it. Otherwise each command
	// carries its own result.
	whole := err != nil && !isPerKeyError(err)
	if whole {
		for _, c := range cmds {
			if e := c.Err(); e != nil && !isPerKeyError(e) {
				whole = false
				break
			}
		}
	}
	fail := func(n int, err error) {
		out[n].Err = targetErr(targets[n], err)
		if IsUnreachable(err) {
			out[n].Unreachable = true
			causes[n] = err
		}
	}
	for n := range targets {
		if whole {
			fail(n, err)
			continue
		}
		if sizes[n] != nil {
			size, err := sizes[n].Result()
			if err != nil {
				fail(n, err)
				continue
			}
			if size == 0 {
				continue
			}
		}
		text, err := lcuts[n].Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			fail(n, err)
		default:
			out[n].Lcut, _ = strconv.ParseInt(text, 10, 64)
		}
	}
	return out, causes
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
	// Waited is set when a WAIT followed the write (SetWaitReplicas asked
	// for one and this call wrote); Replicas is then how many replicas
	// acknowledged the write within the WAIT timeout.
	Waited   bool
	Replicas int
	// Warning, when not empty, says the write is done but not confirmed on
	// as many replicas as SetWaitReplicas asked for ("1 of 2 replicas
	// acknowledged the write within 100ms"), or that no WAIT could follow
	// it. It is not an error: the master holds the payload, and the caller
	// should log it and carry on. It never names a key.
	Warning string
}

// Write stores p into t unless t already holds the same or a newer lcut. It
// is one atomic script call: Redis applies all of it or nothing, and a retried
// call is harmless.
//
// On a cluster, a string-format write (two keys in one slot) answered
// TRYAGAIN while its slot migrates, or a redirect go-redis gave up on, is
// retried up to WriteAttempts times with a short backoff (20 ms doubling, at
// most 250 ms between attempts) within ctx. A connection-level failure asks
// for a reload of the slot map (see Inspect).
func (w *Writer) Write(ctx context.Context, t keys.Target, p *Payload) (WriteResult, error) {
	var (
		res WriteResult
		err error
	)
	for attempt := 1; ; attempt++ {
		res, err = w.writeOnce(ctx, t, p)
		if err == nil || attempt >= WriteAttempts || !isMigrating(err) {
			break
		}
		if isRedirect(err) {
			w.noteUnreachable()
		}
		if sleep(ctx, retryDelay(attempt)) != nil {
			break
		}
	}
	if err != nil {
		if IsUnreachable(err) {
			w.noteUnreachable()
		}
		// Errors name the target by version, format and schema, never by
		// key (targetErr): the caller adds the redacted SDK key.
		return WriteResult{}, targetErr(t, err)
	}
	if res.Warning != "" {
		res.Warning = scrub(errors.New(res.Warning), t).Error()
	}
	return res, nil
}

// writeOnce runs t's write script once (and the WAIT after it, if asked).
func (w *Writer) writeOnce(ctx context.Context, t keys.Target, p *Payload) (WriteResult, error) {
	script, names, args := w.call(t, p)
	if w.waitReplicas <= 0 {
		return scriptResult(script.Run(ctx, w.rdb, names, args...))
	}
	return w.writeAndWait(ctx, t, script, names, args)
}

// call is t's write script with its keys and arguments.
func (w *Writer) call(t keys.Target, p *Payload) (*redis.Script, []string, []any) {
	ttl := w.ttl.Milliseconds()
	switch t.Format {
	case keys.NodeRedis:
		return writeNodeRedis, []string{t.Key}, []any{p.Lcut, p.NodeRedisValue(), ttl, t.Field, t.LcutRef}
	case keys.String:
		return writeString, []string{t.Key, t.LcutRef}, []any{p.Lcut, p.Body, ttl}
	default:
		return writeSFP, []string{t.Key}, []any{p.Lcut, p.Body, ttl}
	}
}

// scriptResult reads a write script's reply, {written, stored lcut}.
func scriptResult(cmd *redis.Cmd) (WriteResult, error) {
	res, err := cmd.Slice()
	if err != nil {
		return WriteResult{}, err
	}
	if len(res) != 2 {
		return WriteResult{}, fmt.Errorf("unexpected script reply of %d elements", len(res))
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
	return w.seen(scrub(err, targets...))
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
	return w.seen(scrub(w.del(ctx, names, nil), targets...))
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
	return w.seen(scrub(w.del(ctx, names, fields), targets...))
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
