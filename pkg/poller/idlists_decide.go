package poller

import (
	"encoding/json"
	"sort"

	"github.com/statsig-populator/statsig-populator/pkg/idlists"
)

// The ID-list syncer's decisions, as pure functions.

// AbsentManifestsBeforeRemove is how many manifests in a row must leave a
// list out before its stored copy is removed: one manifest that forgets a
// list (a CDN answering from a half-built index, say) must not delete it
// from every reader.
const AbsentManifestsBeforeRemove = 2

// MaxAppendInMemory is the largest growth of a list appended in one piece.
// An append must be validated whole (its last byte a newline) before any of
// it reaches Redis, so it is held in memory; a list that grew by more is
// downloaded whole into a stage and renamed into place instead, which keeps
// memory bounded by the copy buffer whatever the growth.
const MaxAppendInMemory = 1 << 20

// StageChunkBytes is how many bytes of a replacement go to Redis per call.
const StageChunkBytes = 1 << 20

// keepAbsent reports whether a stored list the manifest no longer names is
// kept this round: until it has been absent from AbsentManifestsBeforeRemove
// manifests in a row.
func keepAbsent(absentCount int) bool { return absentCount < AbsentManifestsBeforeRemove }

// listDecision decides for one stored copy of a list (one schema). entry is
// nil when the manifest does not name the list (or keep says it stays).
func listDecision(stored *idlists.Stored, entry *idlists.Entry, keep bool) idlists.Decision {
	if entry == nil && keep {
		return idlists.Decision{Action: idlists.Nothing, Reason: "refused_entry"}
	}
	d := idlists.Decide(stored, entry)
	if d.Action == idlists.Append && d.Length > MaxAppendInMemory {
		return idlists.Decision{Action: idlists.Replace, Offset: 0, Length: entry.Size, Reason: d.Reason}
	}
	return d
}

// heldList is what one schema holds for one list after a sync round.
type heldList struct {
	Length int64
	FileID string
}

// storedManifest is the manifest JSON to store for one schema: an entry for
// every list held with content, its size the stored length, its url and
// creationTime those of the manifest entry for the same fileID (the CDN's
// current one, else the one stored before). A list held under a fileID that
// neither manifest describes is left out (go-sdk needs a url and a fileID it
// can trust), as is every list being removed. Lists are never announced
// beyond what is stored, and never with size 0.
func storedManifest(held map[string]heldList, cdn map[string]idlists.Entry, before map[string]idlists.Entry, removing map[string]bool) []byte {
	entries := make([]idlists.Entry, 0, len(held))
	for name, h := range held {
		if h.Length <= 0 || removing[name] {
			continue
		}
		var e idlists.Entry
		if c, ok := cdn[name]; ok && c.FileID == h.FileID {
			e = c
		} else if b, ok := before[name]; ok && b.FileID == h.FileID {
			e = b
		} else {
			continue
		}
		e.Name, e.Size = name, h.Length
		entries = append(entries, e)
	}
	return idlists.MarshalManifest(entries)
}

// parseStoredManifest reads a manifest this worker stored (nil or garbage:
// empty). Only entries with a name, a fileID and a url are kept.
func parseStoredManifest(b []byte) map[string]idlists.Entry {
	out := map[string]idlists.Entry{}
	if len(b) == 0 {
		return out
	}
	var m map[string]idlists.Entry
	if json.Unmarshal(b, &m) != nil {
		return out
	}
	for name, e := range m {
		if idlists.ValidName(name) && e.FileID != "" && e.URL != "" {
			e.Name = name
			out[name] = e
		}
	}
	return out
}

// listNames is every name the round must look at: in the CDN's manifest,
// refused by it, or stored before under any schema; sorted.
func listNames(m idlists.Manifest, before []map[string]idlists.Entry) []string {
	seen := map[string]bool{}
	for n := range m.Entries {
		seen[n] = true
	}
	for _, r := range m.Refused {
		if idlists.ValidName(r.Name) {
			seen[r.Name] = true
		}
	}
	for _, b := range before {
		for n := range b {
			seen[n] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// nextMarker is the change marker of a manifest written now: the clock in
// ms, but always after the marker stored (a replica whose clock is behind
// still moves it forward).
func nextMarker(nowMillis, stored int64) int64 {
	return max(nowMillis, stored+1)
}
