package keys

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// Version is a download_config_specs payload format. v1 is read by the legacy
// SDKs (statsig-node, go-sdk, python, java), v2 by the server-core SDKs. The two
// are not interchangeable: each is fetched from, and stored under, its own path.
type Version string

const (
	V1 Version = "v1"
	V2 Version = "v2"
)

// ParseVersion accepts "v1" or "v2".
func ParseVersion(s string) (Version, error) {
	switch v := Version(s); v {
	case V1, V2:
		return v, nil
	}
	return "", fmt.Errorf("unknown payload version %q (want v1 or v2)", s)
}

// DCSPath is the path segment SDKs use in their data-store key, and the CDN
// path without the key: /v1/download_config_specs or /v2/download_config_specs.
func (v Version) DCSPath() string { return "/" + string(v) + "/download_config_specs" }

// Schema decides the last segment of a Redis key name: how the SDK key is
// turned into an identifier.
type Schema string

const (
	// Hashed is base64(sha256(key)), standard alphabet with padding (44
	// characters): server-core's default key schema ("V2Hashed") and
	// statsig-node ≥ 6.0.1.
	Hashed Schema = "hashed"
	// Prefix is the key's first 20 characters: the forward proxy v4 layout and
	// server-core's dataStoreKeySchemaVersion "v3" option.
	Prefix Schema = "prefix"
)

// ParseSchema accepts "hashed" or "prefix".
func ParseSchema(s string) (Schema, error) {
	switch sc := Schema(s); sc {
	case Hashed, Prefix:
		return sc, nil
	}
	return "", fmt.Errorf("unknown key schema %q (want hashed or prefix)", s)
}

// ID is the key-name segment for k under schema s.
func (s Schema) ID(k SDKKey) string {
	switch s {
	case Prefix:
		if len(k.secret) <= 20 {
			return k.secret
		}
		return k.secret[:20]
	default:
		sum := sha256.Sum256([]byte(k.secret))
		return base64.StdEncoding.EncodeToString(sum[:])
	}
}

// Encoding is the third segment of a forward-proxy key name.
type Encoding string

const (
	// PlainText keys hold uncompressed JSON; they are the only ones we write.
	PlainText Encoding = "plain_text"
	// StatsigBR keys hold brotli protobuf. Server-core stores that implement
	// getBytes read them before the plain_text key, so a leftover one would hide
	// every JSON write: we only ever delete them.
	StatsigBR Encoding = "statsig-br"
)

// DCSKey is the forward-proxy key name statsig|<path>|<encoding>|<id>, with the
// deployment's prefix in front. The data-store key an SDK asks its adapter for
// is DCSKey("", …).
func DCSKey(prefix string, v Version, enc Encoding, id string) string {
	return prefix + "statsig|" + v.DCSPath() + "|" + string(enc) + "|" + id
}

// Target is one Redis key the worker keeps current for one SDK key and version.
type Target struct {
	Schema Schema
	// Key is the plain_text HASH the payload is written to.
	Key string
	// BRSibling is the statsig-br key to delete whenever Key is written; empty
	// for v1, whose readers never look at statsig-br keys.
	BRSibling string
}

// Targets lists the keys written for k and v, one per schema, in schema order.
// Two schemas that give the same name (a key of 20 characters or fewer is its
// own prefix, but never its own hash) are not deduplicated: they cannot collide.
func Targets(prefix string, k SDKKey, v Version, schemas []Schema) []Target {
	out := make([]Target, 0, len(schemas))
	for _, s := range schemas {
		id := s.ID(k)
		t := Target{Schema: s, Key: DCSKey(prefix, v, PlainText, id)}
		if v == V2 {
			t.BRSibling = DCSKey(prefix, v, StatsigBR, id)
		}
		out = append(out, t)
	}
	return out
}
