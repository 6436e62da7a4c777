// Package keyfile watches STATSIG_SERVER_SDK_KEYS_FILE and reports a new key
// set whenever its content changes, so keys can be added and removed without
// a restart. It polls the file's content, which also works for Kubernetes
// Secret volumes (updated by swapping a symlink, which inotify misses on the
// file itself).
//
// It parses and validates with pkg/keys, exactly as the configuration does at
// start-up, so a file the watcher accepts is one start-up would accept.
//
// Additions apply at once; removals only once confirmed. A file rewritten in
// place (truncated, then written) can be read in between, empty or holding
// only its first keys, and with DELETE_REMOVED_KEYS a key dropped on the
// strength of one such read loses its Redis entries (issue 15, item 4). So a
// key leaves the applied set only when two consecutive usable reads, at least
// one period apart, both lack it; Next is that rule, without I/O.
package keyfile

import (
	"bytes"
	"context"
	"time"
	"unicode"

	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Step is what one usable read of the keys file does to the applied set.
type Step struct {
	// Apply is the key set to apply after this read: the keys it holds
	// (less Deferred), then Leaving. It equals the applied set, as a set,
	// when nothing changes.
	Apply []keys.SDKKey
	// Added are the keys of Apply that were not applied before.
	Added []keys.SDKKey
	// Leaving are applied keys this read lacks that are kept for now: the
	// previous read held them, or was not usable. The next read that lacks
	// them too removes them.
	Leaving []keys.SDKKey
	// Removed are applied keys lacking from this read and the previous
	// usable one: they are not in Apply.
	Removed []keys.SDKKey
	// Deferred are keys new in this read that are held back because, under
	// the prefix schema, they share their first 20 characters with a key in
	// Leaving: both would write the same Redis keys. They are added once
	// that key is removed, one read later. (A key cut short by a half-written
	// file collides so with the real one; the real one must not go for it.)
	Deferred []keys.SDKKey
}

// Changed reports whether Apply differs from the applied set it was computed
// from.
func (s Step) Changed() bool { return len(s.Added) > 0 || len(s.Removed) > 0 }

// Next decides the key set to apply after a usable read of the file. applied
// is the set applied now; prev is the set the previous read gave, or nil when
// that read was not usable (unreadable, empty, invalid keys, no key,
// colliding keys; a usable read is never empty, as it always holds a key);
// cur is the set this read gives. All three are merged sets (the
// environment's keys first) and cur passed keys.CheckSet under schemas.
//
// A key of cur is added at once (unless Deferred); a key of applied that cur
// lacks is removed only when prev is known and lacks it too, otherwise it is
// Leaving and stays. Next has no side effect and keeps the order of cur, then
// of applied.
func Next(applied, prev, cur []keys.SDKKey, schemas []keys.Schema) Step {
	inCur, inPrev, inApplied := set(cur), set(prev), set(applied)
	var s Step
	for _, k := range applied {
		switch {
		case inCur[k.Reveal()]:
		case len(prev) > 0 && !inPrev[k.Reveal()]:
			s.Removed = append(s.Removed, k)
		default:
			s.Leaving = append(s.Leaving, k)
		}
	}
	leavingIDs := map[string]bool{}
	for _, sc := range schemas {
		if sc == keys.Prefix {
			for _, k := range s.Leaving {
				leavingIDs[keys.Prefix.ID(k)] = true
			}
		}
	}
	for _, k := range cur {
		if inApplied[k.Reveal()] {
			s.Apply = append(s.Apply, k)
			continue
		}
		if leavingIDs[keys.Prefix.ID(k)] {
			s.Deferred = append(s.Deferred, k)
			continue
		}
		s.Apply = append(s.Apply, k)
		s.Added = append(s.Added, k)
	}
	s.Apply = append(s.Apply, s.Leaving...)
	return s
}

func set(ks []keys.SDKKey) map[string]bool {
	m := make(map[string]bool, len(ks))
	for _, k := range ks {
		m[k.Reveal()] = true
	}
	return m
}

// Watch re-reads path every period until ctx ends, and calls apply with the
// new key set (the file's keys merged after fixed, the keys from the
// environment) whenever a read changes it, by Next's rule: a key new in the
// file is applied at once; a key gone from it is dropped only when two
// consecutive usable reads lack it. Reads are at least period apart (the
// next wait starts after a read ends), so a removal takes one to two periods
// to apply.
//
// A read is unusable, and changes nothing, when the file cannot be read, is
// larger than keys.MaxFileSize, is empty or white space only (a writer
// between truncating and writing it), holds an invalid key, leaves no key
// at all once merged, or holds keys that keys.CheckSet refuses under
// schemas (two keys sharing their first 20 characters with the prefix
// schema). It is logged, the current set stays, and it breaks the pair of
// consecutive reads a removal needs: the next usable read cannot remove a
// key, only the one after it.
//
// The content at start-up is what the configuration was loaded from: it is
// the applied set and the first "previous read", and is not applied again.
func Watch(ctx context.Context, path string, fixed []keys.SDKKey, schemas []keys.Schema, period time.Duration, apply func([]keys.SDKKey), log zerolog.Logger) {
	w := &watcher{path: path, fixed: fixed, schemas: schemas, apply: apply, log: log.With().Str("file", path).Logger()}
	w.applied = fixed
	if data, err := keys.ReadFile(path); err == nil {
		w.last = data
		if cur, ok := w.parse(data); ok {
			w.applied, w.prev = cur, cur
		}
	}
	w.log.Debug().Int("sdk_keys", len(w.applied)).Dur("period", period).Msg("watching the SDK keys file")
	t := time.NewTimer(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.check()
		t.Reset(period)
	}
}

type watcher struct {
	path    string
	fixed   []keys.SDKKey
	schemas []keys.Schema
	apply   func([]keys.SDKKey)
	log     zerolog.Logger
	last    []byte        // the content last read, usable or not (refusals are logged once per content)
	applied []keys.SDKKey // the set last applied (or loaded at start-up)
	prev    []keys.SDKKey // the set of the previous read; nil when it was not usable
}

// check reads the file once and applies what Next decides.
func (w *watcher) check() {
	data, err := keys.ReadFile(w.path)
	if err != nil {
		w.prev = nil
		w.log.Warn().Err(err).Msg("cannot read the SDK keys file; keeping the current keys")
		return
	}
	changed := !bytes.Equal(data, w.last)
	w.last = data
	quiet := w.log
	if !changed {
		quiet = zerolog.Nop() // refusals of the same content are logged once
	}
	cur, ok := w.parseLogged(data, quiet)
	if !ok {
		w.prev = nil
		return
	}
	s := Next(w.applied, w.prev, cur, w.schemas)
	w.prev = cur
	if len(s.Leaving) > 0 || len(s.Deferred) > 0 {
		// Every read while keys are leaving: it is at most one line per
		// period, and says what the next read will do.
		w.log.Info().Strs("leaving", redact(s.Leaving)).Strs("deferred", redact(s.Deferred)).
			Msg("SDK keys missing from the SDK keys file; they are removed if the next read lacks them too (a file being rewritten must not remove keys)")
	}
	if !s.Changed() {
		return
	}
	w.log.Info().Int("sdk_keys", len(s.Apply)).Int("added", len(s.Added)).Strs("removed", redact(s.Removed)).Msg("SDK keys file changed")
	w.applied = s.Apply
	w.apply(s.Apply)
}

// parse is parseLogged without logging.
func (w *watcher) parse(data []byte) ([]keys.SDKKey, bool) { return w.parseLogged(data, zerolog.Nop()) }

// parseLogged turns the file's content into the merged key set, or reports
// (to log) why this read is not usable.
func (w *watcher) parseLogged(data []byte, log zerolog.Logger) ([]keys.SDKKey, bool) {
	if len(bytes.TrimFunc(bytes.TrimPrefix(data, []byte("\uFEFF")), unicode.IsSpace)) == 0 {
		log.Warn().Msg("the SDK keys file is empty (being written?); keeping the current keys")
		return nil, false
	}
	fromFile, bad := keys.ParseList(string(data))
	if len(bad) > 0 {
		log.Error().Strs("problems", bad).Msg("the SDK keys file holds invalid keys; keeping the current keys until it is fixed")
		return nil, false
	}
	merged := keys.Merge(w.fixed, fromFile)
	if len(merged) == 0 {
		log.Error().Msg("the SDK keys file holds no key; keeping the current keys")
		return nil, false
	}
	if problems := keys.CheckSet(merged, w.schemas); len(problems) > 0 {
		log.Error().Strs("problems", problems).Msg("the SDK keys would collide in Redis; keeping the current keys until the file is fixed")
		return nil, false
	}
	return merged, true
}

func redact(ks []keys.SDKKey) []string {
	out := make([]string, 0, len(ks))
	for _, k := range ks {
		out = append(out, k.Redacted())
	}
	return out
}
