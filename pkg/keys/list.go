package keys

import (
	"fmt"
	"strings"
)

// The key-list functions live here, beside Parse, so that both places that
// read a list of keys (the configuration at start-up and the keys-file
// watcher afterwards) share one parser and one set of rules: a key the
// watcher accepts is exactly a key start-up would have accepted.

// bom is the UTF-8 byte order mark some Windows editors put at the start of a
// text file. It is invisible, so a key file saved that way would otherwise
// fail with "not a server secret key" on a key that looks right.
const bom = "\uFEFF"

// ParseList reads a list of SDK keys separated by commas, white space or
// newlines, where '#' starts a comment; a UTF-8 byte order mark at the very
// start is dropped. It returns the valid keys, without duplicates, in order
// of appearance, and one message per invalid key (redacted, numbered from 1).
func ParseList(text string) ([]SDKKey, []string) {
	var (
		out  []SDKKey
		bad  []string
		seen = map[string]bool{}
	)
	text = strings.TrimPrefix(text, bom)
	for i, raw := range splitList(StripComments(text)) {
		k, err := Parse(raw)
		if err != nil {
			bad = append(bad, fmt.Sprintf("key %d: %v", i+1, err))
			continue
		}
		if !seen[raw] {
			seen[raw] = true
			out = append(out, k)
		}
	}
	return out, bad
}

// Merge concatenates key lists, dropping duplicates, in order.
func Merge(lists ...[]SDKKey) []SDKKey {
	var out []SDKKey
	seen := map[string]bool{}
	for _, l := range lists {
		for _, k := range l {
			if !seen[k.secret] {
				seen[k.secret] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// StripComments removes everything from a '#' to the end of its line.
func StripComments(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if j := strings.IndexByte(l, '#'); j >= 0 {
			lines[i] = l[:j]
		}
	}
	return strings.Join(lines, "\n")
}

// splitList splits on commas and any white space, dropping empty items.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t'
	})
}

// CheckSet validates a whole key set as it will be written with schemas, and
// returns one message per problem (keys redacted). Today that is one rule:
// with the prefix schema, two keys whose first 20 characters are equal would
// be written to the same Redis keys, each poll overwriting the other's
// payload, and the SDKs of one project would read the other's configuration.
func CheckSet(set []SDKKey, schemas []Schema) []string {
	hasPrefix := false
	for _, s := range schemas {
		hasPrefix = hasPrefix || s == Prefix
	}
	if !hasPrefix {
		return nil
	}
	var msgs []string
	first := map[string]SDKKey{}
	for _, k := range set {
		id := Prefix.ID(k)
		if other, ok := first[id]; ok {
			msgs = append(msgs, fmt.Sprintf("%s and %s share their first 20 characters, so the prefix schema would write both to the same Redis keys; remove one of them or stop writing the prefix schema", other.Redacted(), k.Redacted()))
			continue
		}
		first[id] = k
	}
	return msgs
}
