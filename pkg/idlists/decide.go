package idlists

import "sort"

// Stored is what the worker holds for one list (in Redis), as the decision
// needs it.
type Stored struct {
	// FileID and CreationTime are those of the manifest entry the stored
	// bytes were downloaded for.
	FileID       string
	CreationTime int64
	// Length is the number of bytes of that file stored: the file's prefix
	// [0, Length).
	Length int64
	// BadChunks counts the chunks refused (a *ChunkError) in a row since the
	// last good one; the caller resets it after a successful write.
	BadChunks int
}

// MaxBadChunks is how many refused chunks in a row make Decide give up on
// appending and download the whole file again.
const MaxBadChunks = 3

// Action is what to do with one list.
type Action int

const (
	// Nothing: the stored list is current (or, for a refused entry, left
	// as it is).
	Nothing Action = iota
	// Append: download the file from Decision.Offset (the stored length) and
	// append the bytes to the stored list.
	Append
	// Replace: download the whole file (Offset 0) and store it in place of
	// whatever is stored, with the entry's fileID and creationTime.
	// Decision.Length may be 0 (an empty file): nothing to download, the
	// stored list becomes empty.
	Replace
	// Ignore: the entry is older than what is stored (a new fileID whose
	// creationTime is before the stored one); keep the stored list.
	Ignore
	// Remove: the list left the manifest; delete it.
	Remove
)

var actionNames = [...]string{"nothing", "append", "replace", "ignore", "remove"}

func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return "unknown"
	}
	return actionNames[a]
}

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	// Offset is the first byte of the file to download (Append: the stored
	// length; Replace: 0).
	Offset int64
	// Length is the number of bytes to download: the entry's size minus
	// Offset, for Append and Replace; 0 otherwise.
	Length int64
	// Reason is one of DecisionReasons, for logs and metrics.
	Reason string
}

// DecisionReasons is every Decision.Reason.
var DecisionReasons = []string{
	"unchanged",           // Nothing: size equals the stored length
	"refused_entry",       // Nothing: the manifest names the list but its entry was refused
	"grown",               // Append: same fileID, size larger than the stored length
	"new_list",            // Replace: nothing stored under this name
	"new_file_id",         // Replace: another fileID, creationTime not older
	"shrunk",              // Replace: same fileID, size smaller than the stored length
	"bad_chunks",          // Replace: MaxBadChunks refused chunks in a row
	"older_creation_time", // Ignore: creationTime older than the stored one
	"not_in_manifest",     // Remove
}

// Decide says what to do with one list. stored is nil when nothing is stored
// under the name, entry nil when the manifest does not list it (a refused
// entry is not "not listed": Plan keeps those). The rules, in order:
//
//  1. no entry: Remove (nothing stored either: Nothing);
//  2. nothing stored: Replace, from 0 (new_list);
//  3. entry creationTime older than the stored one: Ignore, whatever the
//     fileID (the SDKs skip such an entry too);
//  4. another fileID: Replace (the file was recreated);
//  5. MaxBadChunks refused chunks in a row: Replace (bad_chunks);
//  6. size equal to the stored length: Nothing;
//  7. size larger: Append from the stored length;
//  8. size smaller with the same fileID: Replace (the SDKs do nothing here;
//     a file cannot shrink, so what is stored no longer matches it).
func Decide(stored *Stored, entry *Entry) Decision {
	switch {
	case entry == nil && stored == nil:
		return Decision{Action: Nothing, Reason: "not_in_manifest"}
	case entry == nil:
		return Decision{Action: Remove, Reason: "not_in_manifest"}
	case stored == nil:
		return replace(entry, "new_list")
	case entry.CreationTime < stored.CreationTime:
		return Decision{Action: Ignore, Reason: "older_creation_time"}
	case entry.FileID != stored.FileID:
		return replace(entry, "new_file_id")
	case stored.BadChunks >= MaxBadChunks:
		return replace(entry, "bad_chunks")
	case entry.Size == stored.Length:
		return Decision{Action: Nothing, Reason: "unchanged"}
	case entry.Size > stored.Length && stored.Length >= 0:
		return Decision{Action: Append, Offset: stored.Length, Length: entry.Size - stored.Length, Reason: "grown"}
	}
	return replace(entry, "shrunk")
}

func replace(e *Entry, reason string) Decision {
	return Decision{Action: Replace, Offset: 0, Length: e.Size, Reason: reason}
}

// Step is the decision for one name.
type Step struct {
	Name string
	// Entry is the manifest's entry; zero for Remove and for a refused entry.
	Entry Entry
	Decision
}

// Plan decides for every name that is stored or in the manifest, sorted by
// name. A stored name whose manifest entry was refused (m.Refused) is left
// as it is (Nothing, refused_entry): only a list the manifest no longer
// names is removed.
func Plan(stored map[string]Stored, m Manifest) []Step {
	steps := make([]Step, 0, len(m.Entries)+len(stored))
	for name, e := range m.Entries {
		var s *Stored
		if st, ok := stored[name]; ok {
			s = &st
		}
		steps = append(steps, Step{Name: name, Entry: e, Decision: Decide(s, &e)})
	}
	for name := range stored {
		if _, ok := m.Entries[name]; ok {
			continue
		}
		if m.IsRefused(name) {
			steps = append(steps, Step{Name: name, Decision: Decision{Action: Nothing, Reason: "refused_entry"}})
			continue
		}
		st := stored[name]
		steps = append(steps, Step{Name: name, Decision: Decide(&st, nil)})
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].Name < steps[j].Name })
	return steps
}
