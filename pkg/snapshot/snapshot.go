// Package snapshot is the populator's archive format (issue 14): a .tar.gz
// holding, for a set of SDK keys, each download_config_specs payload byte for
// byte with its lcut, and each key's ID lists with their manifest, so that a
// Redis can be refilled without the CDN (disaster recovery, air-gapped
// environments, seeding a new region).
//
// The package is pure: it reads and writes the archive, it knows nothing of
// Redis or of the CDN. Everything streams: a writer holds no payload (the
// caller hands one at a time), and a reader holds at most one payload (or one
// ID-list manifest) in memory beyond the decompressor's window; ID lists are
// never held at all. See docs/snapshots.md for the format.
//
// Layout (format 1), in this order inside the tar:
//
//	keys/<id>/v1.json          a v1 payload, byte for byte
//	keys/<id>/v2.json          a v2 payload, byte for byte
//	keys/<id>/id_lists/<name>  one ID list's bytes (+id / -id lines)
//	keys/<id>/id_lists.json    the key's ID-list manifest, as the SDKs read it
//	snapshot.json              the manifest: format, creation time, worker
//	                           version, and every member's path, size, SHA-256
//	                           (and lcut, fileID or marker)
//
// <id> is the lowercase hex SHA-256 of the SDK key: the archive never holds a
// key or any part of one. snapshot.json comes last so that a writer computes
// the digests while streaming, in one pass; a reader therefore verifies in a
// first pass (Verify) and writes in a second (Walk), which re-checks every
// digest before handing a member over.
package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Format is the archive format version this package writes and reads.
const Format = 1

// ManifestPath is the name of the manifest member, the last of the archive.
const ManifestPath = "snapshot.json"

// DefaultMaxManifestBytes bounds snapshot.json: about 200 bytes a member, so
// room for some 300,000 members (ID lists included).
const DefaultMaxManifestBytes = 64 << 20

// DefaultMaxMembers bounds the number of members an archive may hold, so that
// the per-member records a reader keeps stay small.
const DefaultMaxMembers = 1_000_000

// Kind is what a member holds.
type Kind string

const (
	KindPayload        Kind = "dcs"               // a download_config_specs payload
	KindIDList         Kind = "id_list"           // one ID list's bytes
	KindIDListManifest Kind = "id_lists_manifest" // a key's ID-list manifest
)

// Manifest is snapshot.json.
type Manifest struct {
	Format        int       `json:"format"`
	CreatedAt     time.Time `json:"created_at"`
	WorkerVersion string    `json:"worker_version"`
	// Source is where the exporter read the payloads: "redis" or "cdn".
	Source  string   `json:"source"`
	Members []Member `json:"members"`
}

// Member is one archive member, as the manifest records it.
type Member struct {
	Path string `json:"path"`
	Kind Kind   `json:"kind"`
	Size int64  `json:"size"`
	// SHA256 is the lowercase hex digest of the member's bytes.
	SHA256 string `json:"sha256"`
	// Lcut is a payload's lcut (its "time"), epoch ms.
	Lcut int64 `json:"lcut,omitempty"`
	// FileID is an ID list's fileID.
	FileID string `json:"file_id,omitempty"`
	// Marker is an ID-list manifest's change marker as Redis held it (or
	// the export time for a CDN export): import never replaces a manifest
	// whose stored marker is the same or newer.
	Marker int64 `json:"marker,omitempty"`
}

// KeyID is the archive's name for k: the lowercase hex SHA-256 of the key.
// It is the hash the hashed schema's Redis names already carry (in base64),
// so it reveals nothing those names do not.
func KeyID(k keys.SDKKey) string {
	sum := sha256.Sum256([]byte(k.Reveal()))
	return hex.EncodeToString(sum[:])
}

// PayloadPath is the member path of k's payload of version v.
func PayloadPath(id string, v keys.Version) string { return "keys/" + id + "/" + string(v) + ".json" }

// IDListPath is the member path of one ID list. Lists live in a directory of
// their own and the manifest beside it (id_lists.json): a list may be named
// "manifest.json", a valid list name, and must not collide with it.
func IDListPath(id, name string) string { return "keys/" + id + "/id_lists/" + name }

// IDListManifestPath is the member path of a key's ID-list manifest.
func IDListManifestPath(id string) string { return "keys/" + id + "/id_lists.json" }

// parsed is what a member path says.
type parsed struct {
	kind    Kind
	id      string
	version keys.Version
	name    string // ID lists
}

// parsePath accepts exactly the paths this package writes, and nothing
// else: no "..", no absolute path, no directory, no unknown file. Its errors
// never quote more of the path than 160 bytes.
func parsePath(p string) (parsed, error) {
	if p == ManifestPath {
		return parsed{}, nil
	}
	bad := func(why string) (parsed, error) {
		return parsed{}, fmt.Errorf("member %q: %s", cut(p), why)
	}
	if strings.HasPrefix(p, "/") || strings.Contains(p, "\\") {
		return bad("absolute or backslashed path refused")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return bad("path traversal or empty segment refused")
		}
	}
	rest, ok := strings.CutPrefix(p, "keys/")
	if !ok {
		return bad("unknown member")
	}
	id, rest, ok := strings.Cut(rest, "/")
	if !ok || !validID(id) {
		return bad("unknown member (the key id must be 64 lowercase hex digits)")
	}
	switch {
	case rest == "v1.json":
		return parsed{kind: KindPayload, id: id, version: keys.V1}, nil
	case rest == "v2.json":
		return parsed{kind: KindPayload, id: id, version: keys.V2}, nil
	case rest == "id_lists.json":
		return parsed{kind: KindIDListManifest, id: id}, nil
	}
	if name, ok := strings.CutPrefix(rest, "id_lists/"); ok {
		if !idlists.ValidName(name) {
			return bad("invalid ID-list name")
		}
		return parsed{kind: KindIDList, id: id, name: name}, nil
	}
	return bad("unknown member")
}

func validID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// cut bounds a path quoted in an error: it comes from the archive.
func cut(s string) string {
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}
