// Package idlists is the worker's client of Statsig's ID lists: the manifest
// (GET {STATSIG_API_URL}/v1/get_id_lists/{key}.json), the list files it points
// to, and the pure decision of what to do with each list given what Redis
// already holds.
//
// A list file is an append-only text file of lines "+<id>\n" and "-<id>\n"
// (ids are 8 characters of base64(sha256(unit id))); the manifest gives, per
// list, its size in bytes so far, the absolute URL of the file, its fileID and
// its creationTime (ms). A new fileID means the file was recreated from
// scratch. The package:
//
//   - parses and screens the manifest strictly, refusing absurd entries one by
//     one (ParseManifest, Manifest.Screen) and never the whole manifest for one
//     bad entry;
//   - decides per list: nothing, append from an offset, replace, ignore or
//     remove (Decide, Plan);
//   - downloads only the new bytes of a list (OpenChunk: Range: bytes=N-,
//     no compression, exact lengths) through a validating streaming reader,
//     so that a 10 MB list is never held in memory and a bad chunk is reported
//     before the caller commits anything.
//
// The SDK key travels only in the manifest URL's path, to STATSIG_API_URL's
// host; it is never put in a header, and a list URL on another origin that
// carries the key is refused rather than fetched. Like pkg/fetcher, the
// client never follows redirects, never retries by itself and keeps no state
// between calls; every error text is free of the key.
package idlists

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
)

// Entry is one list of the manifest, as validated. Its JSON form (field names
// and order) is the CDN's, which every SDK parses.
type Entry struct {
	Name string `json:"name"`
	// Size is the file's length in bytes so far.
	Size int64  `json:"size"`
	URL  string `json:"url"`
	// CreationTime is when the file was created, epoch milliseconds.
	CreationTime int64 `json:"creationTime"`
	// FileID names this incarnation of the file; a new one means the file
	// was recreated and the list starts again from byte 0.
	FileID string `json:"fileID"`
}

// Manifest is a parsed get_id_lists answer.
type Manifest struct {
	// Entries holds every valid list, by name. Every name satisfies
	// ValidName.
	Entries map[string]Entry
	// Refused lists the entries that were present but not usable, sorted by
	// name. A stored list whose name is refused here is kept as it is (see
	// Plan): an entry that is garbage for a while must not delete its list.
	Refused []Refusal
}

// Refusal is one manifest entry that was refused.
type Refusal struct {
	// Name is the entry's name as sent, cut to MaxNameLen bytes. It is safe
	// in a Redis key or a URL only when ValidName(Name) holds; log it with %q.
	Name string
	// Reason is one of EntryReasons.
	Reason string
	// Detail says more, for logs; it never repeats a URL (a list URL may
	// carry a signature or the SDK key).
	Detail string
}

// Names returns the names of m's entries, sorted.
func (m Manifest) Names() []string {
	names := make([]string, 0, len(m.Entries))
	for n := range m.Entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// IsRefused reports whether m names name but refused its entry.
func (m Manifest) IsRefused(name string) bool {
	for _, r := range m.Refused {
		if r.Name == name {
			return true
		}
	}
	return false
}

// ManifestError says why a whole manifest body was refused. Reason is one of
// ManifestReasons, a bounded metric label.
type ManifestError struct {
	Reason string
	Detail string
}

func (e *ManifestError) Error() string {
	if e.Detail == "" {
		return "invalid ID-list manifest: " + e.Reason
	}
	return "invalid ID-list manifest: " + e.Reason + ": " + e.Detail
}

// ManifestReasons is every ManifestError.Reason.
var ManifestReasons = []string{
	// not_json: the body is not valid JSON (empty, truncated, garbage, an
	// HTML error page).
	"not_json",
	// not_object: valid JSON, but not an object (an array, null, a string).
	"not_object",
	// too_large: the body is longer than the manifest cap.
	"too_large",
	// bad_encoding: Content-Encoding gzip, but not a valid gzip stream.
	"bad_encoding",
}

// EntryReasons is every Refusal.Reason.
var EntryReasons = []string{
	// bad_name: the name is empty, longer than MaxNameLen, or has a
	// character outside [A-Za-z0-9_.-] (or starts with '.'), so it could
	// break a Redis key name ('|', ':', '{', spaces) or a URL.
	"bad_name",
	// duplicate_name: the manifest object has the name twice; both are refused.
	"duplicate_name",
	// name_mismatch: the entry's "name" is not the name it is listed under.
	"name_mismatch",
	// not_object: the entry is not a JSON object.
	"not_object",
	// bad_url: url missing, not a string, longer than MaxURLLen, not an
	// absolute http(s) URL with a host, or carrying user:password@.
	"bad_url",
	// bad_file_id: fileID missing, empty, not a string, longer than
	// MaxFileIDLen or holding control characters.
	"bad_file_id",
	// bad_size: size missing, not an integer (a fraction, an exponent, a
	// string), negative or beyond 2^53-1.
	"bad_size",
	// bad_creation_time: creationTime missing, not an integer, negative or
	// beyond 2^53-1.
	"bad_creation_time",
	// too_large: size beyond the client's MaxListBytes (Screen).
	"too_large",
	// future_creation_time: creationTime further ahead of the worker's clock
	// than the allowed skew (Screen). Stored, it would make every real
	// recreation look older, and ignored, until the clock caught up.
	"future_creation_time",
	// key_in_url: the url carries the SDK key but points to another origin
	// than STATSIG_API_URL; fetching it would send the key there.
	"key_in_url",
}

const (
	// MaxNameLen bounds a list name, in bytes.
	MaxNameLen = 128
	// MaxURLLen bounds a list URL, in bytes.
	MaxURLLen = 4096
	// MaxFileIDLen bounds a fileID, in bytes.
	MaxFileIDLen = 256
	// maxSafeInteger is 2^53-1, the largest integer every SDK (JavaScript
	// included) reads exactly; sizes and creation times beyond it are absurd.
	maxSafeInteger = 1<<53 - 1
	// DefaultMaxManifestBytes is the manifest body cap when none is given.
	DefaultMaxManifestBytes = 1 << 20
)

// ValidName reports whether name is a list name the worker stores: 1 to
// MaxNameLen bytes of ASCII letters, digits, '_', '-' and '.', not starting
// with '.'. Such a name needs no escaping in a URL path, holds none of the
// separators of the SDKs' Redis key names ('|', ':') and no Redis Cluster hash
// tag ('{', '}'), and is neither "." nor "..".
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen || name[0] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// ParseManifest parses a get_id_lists body of at most max bytes (max <= 0
// means DefaultMaxManifestBytes). The body as a whole is refused, with a
// *ManifestError, only when it is too large, not JSON or not a JSON object;
// any entry that is not usable is refused alone and listed in
// Manifest.Refused, with the others kept. An entry needs:
//
//   - a name (the object key) that satisfies ValidName, appearing once; its
//     "name" member, when present, must be the same string;
//   - "url": an absolute http or https URL with a host and no user info;
//   - "fileID": a non-empty string without control characters;
//   - "size" and "creationTime": JSON integers (no fraction, no exponent)
//     from 0 to 2^53-1.
//
// Members are matched by exact name (encoding/json would also take "SIZE");
// unknown members are ignored. ParseManifest needs no clock: Screen applies
// the limits that depend on the configuration and the time.
func ParseManifest(body []byte, max int64) (Manifest, error) {
	if max <= 0 {
		max = DefaultMaxManifestBytes
	}
	if int64(len(body)) > max {
		return Manifest{}, &ManifestError{Reason: "too_large", Detail: fmt.Sprintf("%d bytes, more than the cap of %d", len(body), max)}
	}
	if !json.Valid(body) {
		return Manifest{}, &ManifestError{Reason: "not_json", Detail: fmt.Sprintf("body is not valid JSON (%d bytes)", len(body))}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, _ := dec.Token(); tok != json.Delim('{') {
		return Manifest{}, &ManifestError{Reason: "not_object", Detail: "the manifest must be a JSON object of lists"}
	}

	raws := map[string]json.RawMessage{}
	dups := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			// Unreachable after json.Valid; kept so that a change above
			// cannot turn into a panic.
			return Manifest{}, &ManifestError{Reason: "not_json", Detail: err.Error()}
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return Manifest{}, &ManifestError{Reason: "not_json", Detail: err.Error()}
		}
		if _, seen := raws[name]; seen {
			dups[name] = true
		}
		raws[name] = raw
	}

	m := Manifest{Entries: make(map[string]Entry, len(raws))}
	for name, raw := range raws {
		if dups[name] {
			m.refuse(name, "duplicate_name", "the manifest lists this name more than once")
			continue
		}
		e, reason, detail := parseEntry(name, raw)
		if reason != "" {
			m.refuse(name, reason, detail)
			continue
		}
		m.Entries[name] = e
	}
	m.sortRefused()
	return m, nil
}

func (m *Manifest) refuse(name, reason, detail string) {
	if len(name) > MaxNameLen {
		name = name[:MaxNameLen]
	}
	m.Refused = append(m.Refused, Refusal{Name: name, Reason: reason, Detail: detail})
}

func (m *Manifest) sortRefused() {
	sort.Slice(m.Refused, func(i, j int) bool {
		if m.Refused[i].Name != m.Refused[j].Name {
			return m.Refused[i].Name < m.Refused[j].Name
		}
		return m.Refused[i].Reason < m.Refused[j].Reason
	})
}

// parseEntry validates one entry; reason is "" when it is usable.
func parseEntry(name string, raw json.RawMessage) (e Entry, reason, detail string) {
	if !ValidName(name) {
		return Entry{}, "bad_name", fmt.Sprintf("list name of %d bytes outside [A-Za-z0-9_.-] (at most %d, not starting with '.')", len(name), MaxNameLen)
	}
	if len(raw) == 0 || raw[0] != '{' {
		return Entry{}, "not_object", "the entry is not a JSON object"
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return Entry{}, "not_object", "the entry is not a JSON object"
	}
	e.Name = name
	if v, ok := members["name"]; ok {
		var s string
		if json.Unmarshal(v, &s) != nil || s != name {
			return Entry{}, "name_mismatch", "the entry's name member differs from the name it is listed under"
		}
	}

	var ok bool
	if e.URL, ok = jsonString(members["url"]); !ok {
		return Entry{}, "bad_url", "url is missing or not a string"
	}
	if d := checkURL(e.URL); d != "" {
		return Entry{}, "bad_url", d
	}
	if e.FileID, ok = jsonString(members["fileID"]); !ok || e.FileID == "" {
		return Entry{}, "bad_file_id", "fileID is missing, empty or not a string"
	}
	if len(e.FileID) > MaxFileIDLen || !printable(e.FileID) {
		return Entry{}, "bad_file_id", fmt.Sprintf("fileID of %d bytes is longer than %d or holds control characters or invalid UTF-8", len(e.FileID), MaxFileIDLen)
	}
	if e.Size, ok = jsonCount(members["size"]); !ok {
		return Entry{}, "bad_size", "size is missing or not an integer from 0 to 2^53-1"
	}
	if e.CreationTime, ok = jsonCount(members["creationTime"]); !ok {
		return Entry{}, "bad_creation_time", "creationTime is missing or not an integer from 0 to 2^53-1"
	}
	return e, "", ""
}

// jsonString reads a JSON string; false for anything else (null included).
func jsonString(v json.RawMessage) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonCount reads a JSON integer from 0 to 2^53-1, written with digits only:
// no sign, fraction or exponent. A number too large for int64 is refused like
// any other out of range (never saturated into a plausible size).
func jsonCount(v json.RawMessage) (int64, bool) {
	if len(v) == 0 || len(v) > 16 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	if len(v) > 1 && v[0] == '0' { // not valid JSON; json.Valid already said so
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n > maxSafeInteger {
		return 0, false
	}
	return n, true
}

// checkURL says what is wrong with a list URL, "" when it is usable. The
// detail never quotes the URL.
func checkURL(s string) string {
	if len(s) > MaxURLLen {
		return fmt.Sprintf("url of %d bytes is longer than %d", len(s), MaxURLLen)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "url does not parse"
	case u.Scheme != "http" && u.Scheme != "https":
		return "url is not an absolute http or https URL"
	case u.Opaque != "" || u.Hostname() == "":
		return "url has no host"
	case u.User != nil:
		return "url carries user information"
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "url has a port outside 1-65535"
		}
	}
	return ""
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return false
		}
	}
	return true
}

// Limits are the bounds Screen applies on top of ParseManifest's.
type Limits struct {
	// MaxListBytes refuses (too_large) an entry whose size is larger; 0 or
	// less means no bound beyond ParseManifest's.
	MaxListBytes int64
	// Now and MaxClockSkew refuse (future_creation_time) an entry created
	// more than MaxClockSkew after Now. A zero Now skips the check; a
	// MaxClockSkew of 0 or less means fetcher.DefaultMaxClockSkew.
	Now          time.Time
	MaxClockSkew time.Duration
}

// Screen returns m with the entries beyond l moved to Refused. m itself is
// not changed.
func (m Manifest) Screen(l Limits) Manifest {
	skew := l.MaxClockSkew
	if skew <= 0 {
		skew = fetcher.DefaultMaxClockSkew
	}
	out := Manifest{Entries: make(map[string]Entry, len(m.Entries)), Refused: append([]Refusal(nil), m.Refused...)}
	for name, e := range m.Entries {
		switch {
		case l.MaxListBytes > 0 && e.Size > l.MaxListBytes:
			out.refuse(name, "too_large", fmt.Sprintf("size %d is larger than the cap of %d bytes", e.Size, l.MaxListBytes))
		case !l.Now.IsZero() && fetcher.CheckTime(e.CreationTime, l.Now, skew) != nil:
			out.refuse(name, "future_creation_time", fmt.Sprintf("creationTime %d is more than %s ahead of this worker's clock (%d)", e.CreationTime, skew, l.Now.UnixMilli()))
		default:
			out.Entries[name] = e
		}
	}
	out.sortRefused()
	return out
}

// MarshalManifest is the JSON of entries as the SDKs read a stored manifest:
// an object keyed by name, each value {"name","size","url","creationTime",
// "fileID"}, names in sorted order. The writer should pass entries whose Size
// is the byte length actually stored (go-sdk reads the stored list from that
// offset onwards).
func MarshalManifest(entries []Entry) []byte {
	sorted := append([]Entry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range sorted {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(e.Name)
		v, _ := json.Marshal(e) // cannot fail: strings and integers only
		b.Write(name)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return []byte(b.String())
}
