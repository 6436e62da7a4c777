package writer

// ID lists (issue 12), the Redis side; pkg/poller's IDLists drives it.
//
// A list is a STRING the SDKs read whole (statsig-node) or from the offset
// they already consumed for its fileID (go-sdk), so it is append-only for a
// fileID, and a new file replaces it whole. Each script touches one key, or
// keys that keys.SameSlotKey put in one cluster slot, and never copies a list:
// it uses STRLEN, APPEND, RENAME and GETRANGE of one byte only. Refusals (the
// stored list is not what the caller expected) are answers, not errors: the
// caller reads the stored length and fileID and decides again. Errors never
// name a key: like the download_config_specs scripts, these reply with fixed
// texts ("WRONGTYPE list holds a hash"), and anything else is scrubbed of the
// key names and the schema's id.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// IDListStageTTL is the TTL of a staging key and its token, renewed by each
// staged chunk: a writer that died mid-download leaves nothing for longer.
const IDListStageTTL = 15 * time.Minute

// ErrEmptyChunk refuses a write that would store nothing: statsig-node
// rejects an empty list value (shared/spec/id-lists.md §1.3), so an empty
// list is deleted or left out of the manifest, never written.
var ErrEmptyChunk = errors.New("empty id list chunk")

// ErrBadOffset refuses a negative offset or length.
var ErrBadOffset = errors.New("negative id list offset or length")

// The scripts. Each first checks the TYPE of its keys and answers a key of
// another type with "WRONGTYPE <what> holds a <type>", what being list,
// fileid, staging or token: never a key name. The manifest is written by
// the config-spec scripts (writeSFP, writeString), whose replies name no key.
var (
	// KEYS[1] the list, KEYS[2] its fileID. ARGV[1] fileID, ARGV[2] offset,
	// ARGV[3] chunk, ARGV[4] TTL ms (0: none). Appends only if the list
	// holds exactly offset bytes of fileID; offset 0 over no list creates
	// it. Returns {1, new length, fileID} or {0, stored length, stored
	// fileID or ''}.
	appendIDList = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'string' then return redis.error_reply('WRONGTYPE list holds a ' .. t) end
local ft = redis.call('TYPE', KEYS[2])['ok']
if ft ~= 'none' and ft ~= 'string' then return redis.error_reply('WRONGTYPE fileid holds a ' .. ft) end
local len = redis.call('STRLEN', KEYS[1])
local fid = redis.call('GET', KEYS[2])
local off = tonumber(ARGV[2])
if len == 0 then
  if off ~= 0 then return {0, len, fid or ''} end
elseif fid ~= ARGV[1] or len ~= off then
  return {0, len, fid or ''}
end
local n = redis.call('APPEND', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
else
  redis.call('PERSIST', KEYS[1])
end
return {1, n, ARGV[1]}
`)
	// KEYS[1] staging, KEYS[2] its token. ARGV[1] token, ARGV[2] offset,
	// ARGV[3] chunk, ARGV[4] stage TTL ms. Offset 0 starts a stage (and
	// takes over another writer's: that one's next call is refused);
	// otherwise appends only if the stage is the token's and holds offset
	// bytes. Returns {1, new length, token} or {0, staged length, staged
	// token or ''}.
	stageIDList = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'string' then return redis.error_reply('WRONGTYPE staging holds a ' .. t) end
local tt = redis.call('TYPE', KEYS[2])['ok']
if tt ~= 'none' and tt ~= 'string' then return redis.error_reply('WRONGTYPE token holds a ' .. tt) end
local ttl = tonumber(ARGV[4])
if tonumber(ARGV[2]) == 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ttl)
  return {1, redis.call('STRLEN', KEYS[1]), ARGV[1]}
end
local tok = redis.call('GET', KEYS[2])
local len = redis.call('STRLEN', KEYS[1])
if tok ~= ARGV[1] or len ~= tonumber(ARGV[2]) then return {0, len, tok or ''} end
local n = redis.call('APPEND', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {1, n, ARGV[1]}
`)
	// KEYS[1] staging, KEYS[2] its token, KEYS[3] the list, KEYS[4] its
	// fileID. ARGV[1] token, ARGV[2] fileID, ARGV[3] length, ARGV[4] TTL ms
	// (0: none). Renames the stage over the list and sets the fileID only if
	// the stage is the token's and holds exactly length (> 0) bytes.
	// Returns {1, length, fileID} or {0, staged length, staged token or ''}.
	commitIDList = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'string' then return redis.error_reply('WRONGTYPE staging holds a ' .. t) end
local tt = redis.call('TYPE', KEYS[2])['ok']
if tt ~= 'none' and tt ~= 'string' then return redis.error_reply('WRONGTYPE token holds a ' .. tt) end
local lt = redis.call('TYPE', KEYS[3])['ok']
if lt ~= 'none' and lt ~= 'string' then return redis.error_reply('WRONGTYPE list holds a ' .. lt) end
local ft = redis.call('TYPE', KEYS[4])['ok']
if ft ~= 'none' and ft ~= 'string' then return redis.error_reply('WRONGTYPE fileid holds a ' .. ft) end
local tok = redis.call('GET', KEYS[2])
local len = redis.call('STRLEN', KEYS[1])
if tok ~= ARGV[1] or len == 0 or len ~= tonumber(ARGV[3]) then return {0, len, tok or ''} end
redis.call('RENAME', KEYS[1], KEYS[3])
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[4], ARGV[2])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
else
  redis.call('PERSIST', KEYS[3])
end
return {1, len, ARGV[2]}
`)
	// KEYS[1] staging, KEYS[2] its token. ARGV[1] token ('' matches any).
	// Deletes both if the stage is the token's. Returns {1|0, staged length,
	// staged token or ''} (as it was before).
	abortIDList = redis.NewScript(`
local tt = redis.call('TYPE', KEYS[2])['ok']
if tt ~= 'none' and tt ~= 'string' then return redis.error_reply('WRONGTYPE token holds a ' .. tt) end
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'string' then return redis.error_reply('WRONGTYPE staging holds a ' .. t) end
local tok = redis.call('GET', KEYS[2])
local len = redis.call('STRLEN', KEYS[1])
if ARGV[1] ~= '' and tok ~= ARGV[1] then return {0, len, tok or ''} end
redis.call('DEL', KEYS[1], KEYS[2])
return {1, len, tok or ''}
`)
)

// IDListWrite says what an ID-list script did.
type IDListWrite struct {
	// Written is false when the script refused: the stored state was not
	// what the call expected. Nothing was changed then.
	Written bool
	// Length is, after the call, the list's length (AppendIDList,
	// CommitIDList when written) or the staging key's (StageIDList,
	// AbortIDList, a refused CommitIDList).
	Length int64
	// FileID is the list's fileID after the call (AppendIDList, a written
	// CommitIDList); "" when none is stored.
	FileID string
	// Token is the staging key's owner (StageIDList, AbortIDList, a refused
	// CommitIDList); "" when there is no stage.
	Token string
}

// AppendIDList appends chunk to t's list if the list holds exactly offset
// bytes of fileID (offset 0 over no list creates it and records fileID). A
// retried call, a racing replica that appended first, or a list replaced
// under another fileID makes it refuse (Written false, with the stored length
// and fileID), so a chunk is never stored twice or interleaved with another.
// It never replaces a list: a new fileID over a stored list goes through
// StageIDList and CommitIDList.
func (w *Writer) AppendIDList(ctx context.Context, t keys.IDListTarget, fileID string, offset int64, chunk []byte) (IDListWrite, error) {
	if len(chunk) == 0 {
		return IDListWrite{}, idListErr(t.Schema, t.Name, ErrEmptyChunk)
	}
	if offset < 0 {
		return IDListWrite{}, idListErr(t.Schema, t.Name, ErrBadOffset)
	}
	res, err := w.runIDList(ctx, appendIDList, []string{t.Key, t.FileIDKey}, fileID, offset, chunk, w.ttl.Milliseconds())
	if err != nil {
		return IDListWrite{}, idListErr(t.Schema, t.Name, scrubNames(err, t.Key, t.FileIDKey))
	}
	return IDListWrite{Written: res.written, Length: res.length, FileID: res.text}, nil
}

// StageIDList appends chunk to t's staging key, where a replacement of the
// list is assembled out of the readers' sight. offset 0 starts a new stage
// owned by token (taking over any other: its owner's next call is refused);
// a later chunk is appended only if the stage is still token's and holds
// exactly offset bytes, else it is refused (Written false, with the staged
// length and owner). The stage expires IDListStageTTL after its last chunk.
// token should be unique per download (random).
func (w *Writer) StageIDList(ctx context.Context, t keys.IDListTarget, token string, offset int64, chunk []byte) (IDListWrite, error) {
	if len(chunk) == 0 {
		return IDListWrite{}, idListErr(t.Schema, t.Name, ErrEmptyChunk)
	}
	if offset < 0 {
		return IDListWrite{}, idListErr(t.Schema, t.Name, ErrBadOffset)
	}
	if token == "" {
		return IDListWrite{}, idListErr(t.Schema, t.Name, errors.New("empty staging token"))
	}
	res, err := w.runIDList(ctx, stageIDList, []string{t.StagingKey, t.StagingTokenKey}, token, offset, chunk, IDListStageTTL.Milliseconds())
	if err != nil {
		return IDListWrite{}, idListErr(t.Schema, t.Name, scrubNames(err, t.StagingKey, t.StagingTokenKey))
	}
	return IDListWrite{Written: res.written, Length: res.length, Token: res.text}, nil
}

// CommitIDList makes token's stage the list, whole and at once: if the stage
// is token's and holds exactly length bytes (length > 0), one script renames
// it over the list and records fileID; readers see the old list or the new
// one, never a part. Otherwise it refuses (Written false, with the staged
// length and owner) and changes nothing.
func (w *Writer) CommitIDList(ctx context.Context, t keys.IDListTarget, token, fileID string, length int64) (IDListWrite, error) {
	if length <= 0 {
		return IDListWrite{}, idListErr(t.Schema, t.Name, ErrEmptyChunk)
	}
	if token == "" {
		return IDListWrite{}, idListErr(t.Schema, t.Name, errors.New("empty staging token"))
	}
	names := []string{t.StagingKey, t.StagingTokenKey, t.Key, t.FileIDKey}
	res, err := w.runIDList(ctx, commitIDList, names, token, fileID, length, w.ttl.Milliseconds())
	if err != nil {
		return IDListWrite{}, idListErr(t.Schema, t.Name, scrubNames(err, names...))
	}
	if res.written {
		return IDListWrite{Written: true, Length: res.length, FileID: res.text}, nil
	}
	return IDListWrite{Length: res.length, Token: res.text}, nil
}

// AbortIDList deletes token's stage (any stage when token is ""). Another
// writer's stage is left alone (Written false).
func (w *Writer) AbortIDList(ctx context.Context, t keys.IDListTarget, token string) (IDListWrite, error) {
	res, err := w.runIDList(ctx, abortIDList, []string{t.StagingKey, t.StagingTokenKey}, token)
	if err != nil {
		return IDListWrite{}, idListErr(t.Schema, t.Name, scrubNames(err, t.StagingKey, t.StagingTokenKey))
	}
	return IDListWrite{Written: res.written, Length: res.length, Token: res.text}, nil
}

// ManifestWrite says what WriteIDListManifest did.
type ManifestWrite struct {
	Written bool
	// Stored is the marker the HASH holds after the call.
	Stored int64
}

// WriteIDListManifest stores manifestJSON in t's HASH (fields config,
// encoding = plain_text, and lcut = marker), or for the string format in its
// STRING with the marker beside it, unless the same or a newer marker is
// stored: several writers and retries never move it back.
// Write the lists a manifest names before the manifest.
func (w *Writer) WriteIDListManifest(ctx context.Context, t keys.ManifestTarget, manifestJSON []byte, marker int64) (ManifestWrite, error) {
	// The manifest is stored as a payload is, with its marker as the lcut:
	// the config-spec scripts' layout (config, lcut, encoding; or a STRING
	// and its lcut companion) and their monotonic guard.
	script, names := writeSFP, []string{t.Key}
	if t.Format == keys.String {
		script, names = writeString, []string{t.Key, t.MarkerKey}
	}
	cmd := script.Run(ctx, w.rdb, names, marker, manifestJSON, w.ttl.Milliseconds())
	res, err := scriptResult(cmd)
	if err != nil {
		if IsUnreachable(err) {
			w.noteUnreachable()
		}
		return ManifestWrite{}, idListErr(t.Schema, "", scrubNames(err, names...))
	}
	return ManifestWrite{Written: res.Written, Stored: res.Stored}, nil
}

// ReadIDListManifest reads t back: the manifest JSON (nil when absent) and
// its marker.
func (w *Writer) ReadIDListManifest(ctx context.Context, t keys.ManifestTarget) ([]byte, int64, error) {
	var config, markerText any
	if t.Format == keys.String {
		var c, m *redis.StringCmd
		_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			c, m = p.Get(ctx, t.Key), p.Get(ctx, t.MarkerKey)
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, 0, idListErr(t.Schema, "", scrubNames(err, t.Key, t.MarkerKey))
		}
		if v, err := c.Result(); err == nil {
			config = v
		}
		if v, err := m.Result(); err == nil {
			markerText = v
		}
	} else {
		vals, err := w.rdb.HMGet(ctx, t.Key, "config", "lcut").Result()
		if err != nil {
			return nil, 0, idListErr(t.Schema, "", scrubNames(err, t.Key))
		}
		config, markerText = vals[0], vals[1]
	}
	var out []byte
	var marker int64
	if s, ok := config.(string); ok {
		out = []byte(s)
	}
	if s, ok := markerText.(string); ok {
		marker, _ = strconv.ParseInt(s, 10, 64)
	}
	return out, marker, nil
}

// DeleteIDList removes t's list, its fileID, and any stage (one DEL: the keys
// share a slot).
func (w *Writer) DeleteIDList(ctx context.Context, t keys.IDListTarget) error {
	names := []string{t.Key, t.FileIDKey, t.StagingKey, t.StagingTokenKey}
	err := w.rdb.Del(ctx, names...).Err()
	return w.seen(idListErrOrNil(t.Schema, t.Name, scrubNames(err, names...)))
}

// DeleteIDListManifest removes t's manifest (and its marker).
func (w *Writer) DeleteIDListManifest(ctx context.Context, t keys.ManifestTarget) error {
	names := []string{t.Key}
	if t.MarkerKey != "" {
		names = append(names, t.MarkerKey) // same slot: one DEL
	}
	err := w.rdb.Del(ctx, names...).Err()
	return w.seen(idListErrOrNil(t.Schema, "", scrubNames(err, names...)))
}

// TouchIDLists renews the TTL (REDIS_KEY_TTL) of manifests and of lists with
// their fileIDs, or removes it when there is none, in one pipeline.
func (w *Writer) TouchIDLists(ctx context.Context, manifests []keys.ManifestTarget, lists []keys.IDListTarget) error {
	var names []string
	for _, t := range manifests {
		names = append(names, t.Key)
		if t.MarkerKey != "" {
			names = append(names, t.MarkerKey)
		}
	}
	for _, t := range lists {
		names = append(names, t.Key, t.FileIDKey)
	}
	if len(names) == 0 {
		return nil
	}
	_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range names {
			if w.ttl > 0 {
				p.PExpire(ctx, k, w.ttl)
			} else {
				p.Persist(ctx, k)
			}
		}
		return nil
	})
	return w.seen(scrubNames(err, names...))
}

// IDListState is what Redis holds for one list.
type IDListState struct {
	// Length is the list's STRLEN (0: absent).
	Length int64
	// FileID is the recorded fileID ("" when none).
	FileID string
	// First is the list's first byte (0 when absent): '+' or '-' for a
	// value statsig-node accepts.
	First byte
	// Staged is the length of a stage in progress (0: none).
	Staged int64
	// Err is set when this list could not be read (a key of another type);
	// the other entries are still valid.
	Err error
}

// ReadIDLists reads the state of every target in one pipelined round trip
// (one per node on a cluster), never a list's content beyond its first byte.
// The error is set only when Redis could not be asked at all.
func (w *Writer) ReadIDLists(ctx context.Context, targets []keys.IDListTarget) ([]IDListState, error) {
	out := make([]IDListState, len(targets))
	if len(targets) == 0 {
		return out, nil
	}
	type reads struct {
		length, staged *redis.IntCmd
		fileID, first  *redis.StringCmd
	}
	rs := make([]reads, len(targets))
	var all []string
	cmds, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, t := range targets {
			all = append(all, t.Key, t.FileIDKey, t.StagingKey, t.StagingTokenKey)
			rs[i] = reads{
				length: p.StrLen(ctx, t.Key),
				fileID: p.Get(ctx, t.FileIDKey),
				first:  p.GetRange(ctx, t.Key, 0, 0),
				staged: p.StrLen(ctx, t.StagingKey),
			}
		}
		return nil
	})
	if err != nil && !isPerKeyError(err) {
		w.noteIfUnreachable(err)
		return nil, scrubNames(err, all...)
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil && !isPerKeyError(err) {
			w.noteIfUnreachable(err)
			return nil, scrubNames(err, all...)
		}
	}
	for i, t := range targets {
		r, s := &rs[i], &out[i]
		fail := func(what string, err error) {
			if s.Err != nil {
				return
			}
			var re redis.Error
			if errors.As(err, &re) && strings.HasPrefix(re.Error(), "WRONGTYPE") {
				// Redis's own WRONGTYPE: say which key, as the scripts do.
				err = replyError("WRONGTYPE " + what + " holds a key of another type")
			}
			s.Err = idListErr(t.Schema, t.Name, scrubNames(err, t.Key, t.FileIDKey, t.StagingKey, t.StagingTokenKey))
		}
		if n, err := r.length.Result(); err != nil {
			fail("list", err)
		} else {
			s.Length = n
		}
		if f, err := r.fileID.Result(); err != nil && !errors.Is(err, redis.Nil) {
			fail("fileid", err)
		} else {
			s.FileID = f
		}
		if b, err := r.first.Result(); err != nil {
			fail("list", err)
		} else if len(b) > 0 {
			s.First = b[0]
		}
		if n, err := r.staged.Result(); err != nil {
			fail("staging", err)
		} else {
			s.Staged = n
		}
	}
	return out, nil
}

func (w *Writer) noteIfUnreachable(err error) {
	if IsUnreachable(err) {
		w.noteUnreachable()
	}
}

// idListReply is a list script's reply, {written, length, text}.
type idListReply struct {
	written bool
	length  int64
	text    string
}

// runIDList runs one list script, retried like Write while its slot
// migrates (TRYAGAIN, an unfollowed redirect): every script is guarded by
// the stored length, so running one twice never stores a chunk twice.
func (w *Writer) runIDList(ctx context.Context, s *redis.Script, names []string, args ...any) (idListReply, error) {
	var (
		res idListReply
		err error
	)
	for attempt := 1; ; attempt++ {
		res, err = idListResult(s.Run(ctx, w.rdb, names, args...))
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
		w.noteIfUnreachable(err)
	}
	return res, err
}

func idListResult(cmd *redis.Cmd) (idListReply, error) {
	v, err := cmd.Slice()
	if err != nil {
		return idListReply{}, err
	}
	if len(v) != 3 {
		return idListReply{}, fmt.Errorf("unexpected script reply of %d elements", len(v))
	}
	written, _ := v[0].(int64)
	length, _ := v[1].(int64)
	text, _ := v[2].(string)
	return idListReply{written: written == 1, length: length, text: text}, nil
}

// IDListFormat and IDListsManifestFormat are the Format of a *TargetError
// about an ID list or a manifest.
const (
	IDListFormat          keys.Format = "id-list"
	IDListsManifestFormat keys.Format = "id-lists-manifest"
)

// idListErr describes err as a failure on list name (the manifest when name
// is "") of schema s, without a key name: "id list \"a\" (prefix): list
// holds a hash, not a string". The list name is not secret (idlists.ValidName
// keeps it to [A-Za-z0-9_.-]); the key's id is. err must already be
// scrubbed.
func idListErr(s keys.Schema, name string, err error) error {
	var te *TargetError
	if err == nil || errors.As(err, &te) {
		return err
	}
	e := &TargetError{Version: keys.V1, Format: IDListFormat, Schema: s, err: err}
	d := fmt.Sprintf("id list %q (%s)", name, s)
	want := "string"
	if name == "" {
		e.Format = IDListsManifestFormat
		d = fmt.Sprintf("id lists manifest (%s)", s)
		want = "hash"
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		if rest, ok := strings.CutPrefix(msg, "WRONGTYPE "); ok {
			e.err = ErrWrongType
			if strings.HasPrefix(rest, "holds a ") {
				// The config-spec scripts (which write the manifest) name
				// no key: it is the target's own.
				subject := "list"
				if name == "" {
					subject = "manifest"
				}
				rest = subject + " " + rest
			}
			what, typ, found := strings.Cut(rest, " holds a ")
			if !found || !plainWord(what) {
				e.text = d + " holds a key of another type"
				return e
			}
			if typ != "key of another type" {
				typ = firstWord(typ)
			}
			if typ != "key of another type" && !plainWord(typ) {
				typ = "key of another type"
			}
			e.text = fmt.Sprintf("%s: %s holds a %s, not a %s", d, what, typ, want)
			return e
		}
	}
	e.text = d + ": " + err.Error()
	return e
}

func idListErrOrNil(s keys.Schema, name string, err error) error {
	if err == nil {
		return nil
	}
	return idListErr(s, name, err)
}

// scrubNames replaces names, and the id their data-store part ends in, in
// err's text (see scrub). The id is the segment after the last '|' of the
// first name: every name passed starts with a list or manifest key.
func scrubNames(err error, names ...string) error {
	if err == nil || len(names) == 0 {
		return err
	}
	var ids []string
	if i := strings.LastIndexByte(names[0], '|'); i >= 0 {
		ids = append(ids, names[0][i+1:])
	}
	return scrubText(err, names, ids)
}
