// Package keys derives every name the worker uses from a Statsig server SDK key:
// the Redis key names the SDK data adapters read, the djb2 value Statsig puts in
// a payload's hashed_sdk_key_used field, and the redacted form that is the only
// way a key may appear in logs, metrics, errors and status output.
//
// Everything here is a pure function of its inputs.
package keys

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SDKKey is a Statsig server secret key. Its zero value is invalid.
//
// Every formatting path (%v, %s, %q, %#v, JSON, text) yields the redacted form,
// so a key cannot leak into a log line by accident; Reveal is the one way to
// get the secret, and only the fetcher (for the URL) and the hash functions
// here call it.
type SDKKey struct {
	secret string
}

// ServerKeyPrefix is what every Statsig server secret key starts with.
const ServerKeyPrefix = "secret-"

// Parse checks that s looks like a server secret key. Errors never contain the
// key itself, only its redacted form.
func Parse(s string) (SDKKey, error) {
	k := SDKKey{secret: s}
	switch {
	case s == "":
		return SDKKey{}, errors.New("empty key")
	case strings.HasPrefix(s, "client-"):
		return SDKKey{}, fmt.Errorf("%s is a client key; the worker needs server secret keys (secret-…)", k.Redacted())
	case strings.HasPrefix(s, "console-"):
		return SDKKey{}, fmt.Errorf("%s is a console API key; the worker needs server secret keys (secret-…)", k.Redacted())
	case !strings.HasPrefix(s, ServerKeyPrefix) || len(s) == len(ServerKeyPrefix):
		return SDKKey{}, fmt.Errorf("%s is not a server secret key (it must start with %q)", k.Redacted(), ServerKeyPrefix)
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return SDKKey{}, fmt.Errorf("%s contains a character other than letters, digits, '-' and '_'", k.Redacted())
		}
	}
	return k, nil
}

// MustParse is Parse for tests and constants; it panics on an invalid key.
func MustParse(s string) SDKKey {
	k, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return k
}

// Reveal returns the secret. Use it only to build the CDN URL or a hash.
func (k SDKKey) Reveal() string { return k.secret }

// IsZero reports whether k is the zero value.
func (k SDKKey) IsZero() bool { return k.secret == "" }

// Redacted is the key's public name: the first 10 characters (the "secret-"
// prefix and three more), "...", '#' and 8 hex digits of its SHA-256, so that
// thousands of keys stay distinguishable without revealing them. The marker is
// plain ASCII so that the name can be typed into grep, a log query or a
// terminal without a Unicode ellipsis.
func (k SDKKey) Redacted() string { return Redact(k.secret) }

// Redact gives the redacted form of any string that may be a secret, for
// callers that hold a raw string (for example a key that failed to parse).
func Redact(s string) string {
	sum := sha256.Sum256([]byte(s))
	shown := s
	if len(shown) > 10 {
		shown = shown[:10]
	}
	// Never show more than half of a short string.
	if len(shown) > len(s)/2 {
		shown = shown[:len(s)/2]
	}
	return shown + "...#" + hex.EncodeToString(sum[:4])
}

func (k SDKKey) String() string                { return k.Redacted() }
func (k SDKKey) GoString() string              { return strconv.Quote(k.Redacted()) }
func (k SDKKey) MarshalText() ([]byte, error)  { return []byte(k.Redacted()), nil }
func (k SDKKey) Format(f fmt.State, verb rune) { fmt.Fprint(f, k.Redacted()) }

// HashedSDKKeyUsed is djb2 of the key as Statsig writes it into a payload's
// hashed_sdk_key_used field: h = h*31 + c over the key's bytes, unsigned 32-bit,
// as a decimal string. It is never used as a Redis key.
func (k SDKKey) HashedSDKKeyUsed() string {
	var h uint32 // wraps modulo 2^32 like the SDKs' implementations
	for _, c := range []byte(k.secret) {
		h = (h << 5) - h + uint32(c)
	}
	return strconv.FormatUint(uint64(h), 10)
}
