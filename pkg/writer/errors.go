package writer

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Errors from this package never quote a Redis key name. A name built with
// the prefix schema holds the first 20 characters of the secret SDK key, and
// these errors travel to logs, /status and the output of once and check.
// Targets are named by version, format and schema instead; the caller adds
// the redacted SDK key.

// ErrWrongType means a target's key (or the string format's lcut key) holds
// another Redis type. It is never overwritten: it is not ours.
var ErrWrongType = errors.New("key of another type")

// TargetError is a failure on one target, described without its key name:
// "v2 string/prefix target holds a hash, not a string".
type TargetError struct {
	Version keys.Version
	Format  keys.Format
	Schema  keys.Schema
	text    string // the whole message
	err     error  // ErrWrongType, or the underlying error with key names scrubbed
}

func (e *TargetError) Error() string { return e.text }

// Unwrap gives the cause: ErrWrongType, a context or network error, or a
// Redis reply (as a redis.Error whose text has no key name).
func (e *TargetError) Unwrap() error { return e.err }

// describe names t without its key: "v2 sfp/prefix target".
func describe(t keys.Target) string {
	f := t.Format
	if f == "" {
		f = keys.SFP // what Write and Read do with a Target of no format
	}
	d := string(f)
	if t.Schema != "" {
		d += "/" + string(t.Schema)
	}
	if t.Version != "" {
		d = string(t.Version) + " " + d
	}
	return d + " target"
}

// wantType is the Redis type t.Key must have, as TYPE spells it.
func wantType(t keys.Target) string {
	if t.Format == keys.String {
		return "string"
	}
	return "hash"
}

// wrongType is the error for t.Key (what "") or its lcut key (what "lcut")
// holding a key of Redis type typ.
func wrongType(t keys.Target, what, typ string) *TargetError {
	if !plainWord(typ) {
		typ = "key of another type" // not a type name we can vouch for
	}
	whose := ""
	if what == "lcut" {
		whose = "'s lcut key"
	}
	return &TargetError{Version: t.Version, Format: t.Format, Schema: t.Schema, err: ErrWrongType,
		text: fmt.Sprintf("%s%s holds a %s, not a %s", describe(t), whose, typ, wantType(t))}
}

// plainWord accepts a Redis type name (hash, string, list, set, zset,
// stream, a module's 9-character type): short, letters, digits, '-' or '_'.
func plainWord(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// targetErr describes err as a failure on t. The write scripts' own
// WRONGTYPE replies ("WRONGTYPE holds a hash", "WRONGTYPE lcut holds a
// hash") become wrongType errors; Redis's own WRONGTYPE (a read reaching a
// key of another type) becomes ErrWrongType too; anything else keeps its text,
// with t's key names scrubbed.
func targetErr(t keys.Target, err error) error {
	if err == nil {
		return nil
	}
	var te *TargetError
	if errors.As(err, &te) {
		return err
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		if rest, ok := strings.CutPrefix(msg, "WRONGTYPE holds a "); ok {
			return wrongType(t, "", firstWord(rest))
		}
		if rest, ok := strings.CutPrefix(msg, "WRONGTYPE lcut holds a "); ok {
			return wrongType(t, "lcut", firstWord(rest))
		}
		if strings.HasPrefix(msg, "WRONGTYPE") {
			return &TargetError{Version: t.Version, Format: t.Format, Schema: t.Schema, err: ErrWrongType,
				text: describe(t) + " (or its lcut key) holds a key of another type, not a " + wantType(t)}
		}
	}
	err = scrub(err, t)
	return &TargetError{Version: t.Version, Format: t.Format, Schema: t.Schema, err: err,
		text: describe(t) + ": " + err.Error()}
}

// firstWord is s up to its first space: Redis (≥ 7) may append " script:
// <sha>, on @user_script:<line>." to a script's error reply.
func firstWord(s string) string {
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[:i]
	}
	return s
}

// scrub replaces the key names of targets, and the identifier they end in
// (which, in the prefix schema, is 20 characters of the secret SDK key),
// wherever they occur in err's text. Redis's replies rarely quote a key, but
// some do (a verbose ACL refusal names "the '<key>' key"), and network or
// context errors never do: err comes back unchanged when nothing matched, so
// that errors.Is and errors.As keep working on it. A changed Redis reply
// stays a redis.Error.
func scrub(err error, targets ...keys.Target) error {
	if err == nil {
		return nil
	}
	var names, ids []string
	for _, t := range targets {
		names = append(names, t.Key, t.LcutRef, t.Field, t.BRSibling())
		ids = append(ids, targetID(t))
	}
	return scrubText(err, names, ids)
}

// scrubText replaces every name, longest first (the lcut key and the field
// contain the key name or the id: replacing a shorter one first would leave
// a tail), then every id, in err's text. Names and ids shorter than 8
// characters (a test's "a") cannot hold an id and are left alone: replacing
// them would only garble the message.
func scrubText(err error, names, ids []string) error {
	msg := err.Error()
	orig := msg
	names = append([]string(nil), names...)
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, n := range names {
		if len(n) >= 8 && strings.Contains(msg, n) {
			msg = strings.ReplaceAll(msg, n, "<key>")
		}
	}
	for _, id := range ids {
		if len(id) >= 8 && strings.Contains(msg, id) {
			msg = strings.ReplaceAll(msg, id, "<id>")
		}
	}
	if msg == orig {
		return err
	}
	var re redis.Error
	if errors.As(err, &re) {
		return replyError(msg)
	}
	return errors.New(msg)
}

// targetID is the last segment of t's data-store key: the schema's id for
// the SDK key (base64 of its SHA-256, or its first 20 characters).
func targetID(t keys.Target) string {
	name := t.Field // node-redis: the field is the data-store key
	if name == "" {
		name = t.Key
	}
	if i := strings.LastIndexByte(name, '|'); i >= 0 {
		return name[i+1:]
	}
	return ""
}

// replyError is a Redis error reply whose text was scrubbed; it is still a
// redis.Error, so isPerKeyError and go-redis's retry rules see it as one.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}
