package keys

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
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

// Format is a Redis layout the worker can write.
type Format string

const (
	// SFP is the forward-proxy HASH: fields config, lcut and encoding.
	SFP Format = "sfp"
	// NodeRedis is statsig-node-redis's layout: one HASH for every key, field =
	// the data-store key the SDK asks for, value = base64(zlib(payload)). The
	// lcut lives in a companion field of the same HASH.
	NodeRedis Format = "node-redis"
	// String is a plain STRING holding the payload at the SFP key names (for
	// GET/SET adapters). The lcut lives in a companion key placed in the same
	// Redis Cluster slot, so one script can guard both.
	String Format = "string"
)

// ParseFormat accepts sfp, node-redis or string.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case SFP, NodeRedis, String:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q (want sfp, node-redis or string)", s)
}

// Target is one place the worker keeps a payload current, for one SDK key
// and version.
type Target struct {
	Format  Format
	Schema  Schema
	Version Version
	// Key is the Redis key: the HASH (sfp, node-redis) or STRING (string).
	Key string
	// Field is, for node-redis, the hash field holding the payload: the exact
	// data-store key the SDK asks for. Empty otherwise.
	Field string
	// LcutRef locates the stored lcut: the companion field in Key (node-redis)
	// or the companion key in Key's cluster slot (string). Empty for sfp,
	// whose HASH has an lcut field.
	LcutRef string
}

// BRSibling is the statsig-br key to delete whenever a /v2 payload is written
// under a forward-proxy name (sfp and string formats); empty otherwise. It is
// derived on demand: it is needed only when writing, and a worker holds
// targets for thousands of keys.
func (t Target) BRSibling() string {
	if t.Version != V2 || t.Format == NodeRedis {
		return ""
	}
	// The id after the last '|' never contains '|', so the encoding segment
	// is the last "|plain_text|" whatever the prefix holds.
	i := strings.LastIndex(t.Key, "|"+string(PlainText)+"|")
	if i < 0 {
		return ""
	}
	return t.Key[:i] + "|" + string(StatsigBR) + "|" + t.Key[i+len(PlainText)+2:]
}

// Layout names everything the worker writes: the prefix for every key and the
// name of the node-redis HASH.
type Layout struct {
	Prefix        string
	NodeRedisHash string // default "statsig-redis"
	Formats       []Format
	Schemas       []Schema
}

// DefaultNodeRedisHash is statsig-node-redis's default hash name.
const DefaultNodeRedisHash = "statsig-redis"

// Targets lists the places written for k and v: one per format and schema, in
// that order.
func (l Layout) Targets(k SDKKey, v Version) []Target {
	out := make([]Target, 0, len(l.Formats)*len(l.Schemas))
	for _, f := range l.Formats {
		for _, s := range l.Schemas {
			id := s.ID(k)
			t := Target{Format: f, Schema: s, Version: v}
			switch f {
			case NodeRedis:
				hash := l.NodeRedisHash
				if hash == "" {
					hash = DefaultNodeRedisHash
				}
				t.Key = l.Prefix + hash
				t.Field = DCSKey("", v, PlainText, id)
				t.LcutRef = t.Field + "|lcut"
			default:
				t.Key = DCSKey(l.Prefix, v, PlainText, id)
				if f == String {
					t.LcutRef = SameSlotKey(t.Key, "|lcut")
				}
			}
			out = append(out, t)
		}
	}
	return out
}

// Targets lists the forward-proxy HASHes written for k and v, one per schema.
func Targets(prefix string, k SDKKey, v Version, schemas []Schema) []Target {
	return Layout{Prefix: prefix, Formats: []Format{SFP}, Schemas: schemas}.Targets(k, v)
}

// Type is the Redis type of t.Key.
func (t Target) Type() string {
	if t.Format == String {
		return "STRING"
	}
	return "HASH"
}

// Fields lists what t holds: hash fields, or the value and its companion.
func (t Target) Fields() string {
	switch t.Format {
	case NodeRedis:
		return "field " + t.Field + " = base64(zlib(payload)); field " + t.LcutRef + " = lcut"
	case String:
		return "value = payload; lcut in " + t.LcutRef
	}
	return "config = payload, lcut, encoding = plain_text"
}

// ReadBy says which SDKs and options read t.
func (t Target) ReadBy() string {
	switch t.Format {
	case NodeRedis:
		if t.Version == V1 && t.Schema == Hashed {
			return "statsig-node ≥ 6.0.1 with a statsig-node-redis adapter on this HASH"
		}
		return "adapters in the statsig-node-redis style that ask for this data-store key"
	case String:
		return "GET/SET adapters (.NET StatsigRedis, Python RedisDataStore styles) mapped to this key"
	}
	switch {
	case t.Version == V2 && t.Schema == Hashed:
		return "server-core SDKs, default key schema (V2Hashed / dataStoreKeySchemaVersion v2)"
	case t.Version == V2:
		return "server-core Node/Python with dataStoreKeySchemaVersion v3; forward proxy v4"
	case t.Schema == Hashed:
		return "statsig-node ≥ 6.0.1; legacy go/java/python adapters mapping statsig.cache here"
	default:
		return "forward proxy v4 (v1 clients); legacy adapters mapping statsig.cache here"
	}
}
