package fetcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Meta is what validation learns from a full payload.
type Meta struct {
	// Time is the body's "time": the project's last config update (lcut), in
	// epoch milliseconds. It is what the SDKs compare and what we store as lcut.
	Time int64
	// Checksum is the v2 body's "checksum", empty when absent.
	Checksum string
}

// InvalidPayloadError says why a body is not a payload we may store. Reason is a
// short, fixed identifier suitable for a metric label.
type InvalidPayloadError struct {
	Reason string
	Detail string
}

func (e *InvalidPayloadError) Error() string {
	if e.Detail == "" {
		return "invalid payload: " + e.Reason
	}
	return "invalid payload: " + e.Reason + ": " + e.Detail
}

func invalid(reason, format string, args ...any) *InvalidPayloadError {
	return &InvalidPayloadError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// errNoUpdate is returned by Validate for a well-formed body whose has_updates
// is not true: the "no updates" answer, which must never be stored.
var errNoUpdate = &InvalidPayloadError{Reason: "no_update"}

// Validate decides whether body is a complete download_config_specs payload of
// version v, fetched with the key whose djb2 is hashedKey. It checks, in one pass
// over the bytes and without building a document tree:
//
//   - the body is valid JSON and a single object;
//   - has_updates is true (anything else is a no-update answer: errNoUpdate);
//   - time is an integer > 0 (written without fraction or exponent, as the SDKs
//     that require an int need);
//   - hashed_sdk_key_used, when present and not null, equals hashedKey;
//   - the shape matches the version: v1 keeps feature_gates, dynamic_configs and
//     layer_configs in arrays, v2 in objects and also needs condition_map and
//     experiment_to_layer; a response_format naming the other version is refused.
func Validate(body []byte, v keys.Version, hashedKey string) (Meta, error) {
	meta, ip := validate(body, v, hashedKey)
	if ip != nil {
		return Meta{}, ip
	}
	return meta, nil
}

// validate is Validate with the error's type in its signature, so that the
// Fetch path reads Reason without a type assertion that could come up empty.
func validate(body []byte, v keys.Version, hashedKey string) (Meta, *InvalidPayloadError) {
	if !json.Valid(body) {
		return Meta{}, invalid("not_json", "body is not valid JSON (%d bytes)", len(body))
	}
	var (
		meta         Meta
		hasUpdates   []byte
		timeValue    []byte
		hashedUsed   []byte
		format       []byte
		checksum     []byte
		shapes       = map[string]byte{}
		requiredKind = shapeRules[v]
	)
	ip := eachMember(body, func(name string, value []byte) {
		switch name {
		case "has_updates":
			hasUpdates = value
		case "time":
			timeValue = value
		case "hashed_sdk_key_used":
			hashedUsed = value
		case "response_format":
			format = value
		case "checksum":
			checksum = value
		default:
			if _, ok := requiredKind[name]; ok {
				shapes[name] = value[0]
			}
		}
	})
	if ip != nil {
		return Meta{}, ip
	}
	if !bytes.Equal(hasUpdates, []byte("true")) {
		return Meta{}, errNoUpdate
	}
	if timeValue == nil {
		return Meta{}, invalid("bad_time", "no time field")
	}
	t, err := parseMillis(timeValue)
	if err != nil {
		return Meta{}, invalid("bad_time", "time %.40s: %v", timeValue, err)
	}
	meta.Time = t
	if hashedUsed != nil && !bytes.Equal(hashedUsed, []byte("null")) {
		var got string
		if json.Unmarshal(hashedUsed, &got) != nil || got != hashedKey {
			return Meta{}, invalid("wrong_sdk_key", "hashed_sdk_key_used %.40s is not djb2 of the key this payload was fetched with", hashedUsed)
		}
	}
	if format != nil {
		var f string
		_ = json.Unmarshal(format, &f)
		if other := otherFormat[v]; f == other {
			return Meta{}, invalid("wrong_version", "response_format %q under /%s", f, v)
		}
	}
	for name, kind := range requiredKind {
		got, ok := shapes[name]
		switch {
		case !ok:
			return Meta{}, invalid("wrong_shape", "%s payload has no %s", v, name)
		case got != kind:
			return Meta{}, invalid("wrong_shape", "%s must be %s in a %s payload", name, kindName[kind], v)
		}
	}
	if checksum != nil && !bytes.Equal(checksum, []byte("null")) {
		if json.Unmarshal(checksum, &meta.Checksum) != nil {
			return Meta{}, invalid("wrong_shape", "checksum %.40s is not a string", checksum)
		}
	}
	return meta, nil
}

// DefaultMaxClockSkew is how far ahead of the worker's clock a payload's time
// may be when Options.MaxClockSkew is 0.
const DefaultMaxClockSkew = time.Hour

// CheckTime refuses an lcut (epoch milliseconds) more than skew ahead of now,
// with an *InvalidPayloadError of reason future_time; it returns nil
// otherwise. A negative skew counts as 0. Such an lcut must never be stored:
// the write guard replaces a payload only with a newer one, so every real
// update would be refused until the clock caught up. The arithmetic saturates:
// no lcut, clock or skew can overflow it into accepting.
func CheckTime(lcutMillis int64, now time.Time, skew time.Duration) error {
	if ip := checkTime(lcutMillis, now, skew); ip != nil {
		return ip
	}
	return nil
}

func checkTime(lcutMillis int64, now time.Time, skew time.Duration) *InvalidPayloadError {
	skewMillis := max(skew, 0).Milliseconds()
	nowMillis := now.UnixMilli()
	limit := int64(math.MaxInt64)
	if nowMillis <= math.MaxInt64-skewMillis {
		limit = nowMillis + skewMillis
	}
	if lcutMillis <= limit {
		return nil
	}
	return invalid("future_time", "time %d is more than %s ahead of this worker's clock (%d)", lcutMillis, max(skew, 0), nowMillis)
}

// shapeRules lists, per version, the members that must be present and the
// first byte their value must start with ('[' array, '{' object).
var shapeRules = map[keys.Version]map[string]byte{
	keys.V1: {"feature_gates": '[', "dynamic_configs": '[', "layer_configs": '['},
	keys.V2: {"feature_gates": '{', "dynamic_configs": '{', "layer_configs": '{', "condition_map": '{', "experiment_to_layer": '{'},
}

var otherFormat = map[keys.Version]string{keys.V1: "dcs-v2", keys.V2: "dcs-v1"}

var kindName = map[byte]string{'[': "an array", '{': "an object"}

// parseMillis accepts a JSON integer > 0 that fits in int64.
func parseMillis(b []byte) (int64, error) {
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("not a positive integer")
		}
	}
	t, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("out of range")
	}
	if t <= 0 {
		return 0, fmt.Errorf("not positive")
	}
	return t, nil
}

// eachMember calls fn for every member of the top-level object in body, which
// must already be known to be valid JSON. The value slice aliases body. A later
// duplicate member overrides an earlier one, as in the SDKs' parsers.
func eachMember(body []byte, fn func(name string, value []byte)) *InvalidPayloadError {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return invalid("not_object", "body is not a JSON object")
	}
	i = skipSpace(body, i+1)
	if body[i] == '}' {
		return nil
	}
	for {
		end := skipString(body, i)
		name := body[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			var decoded string
			_ = json.Unmarshal(body[i:end], &decoded)
			name = []byte(decoded)
		}
		i = skipSpace(body, end)
		i = skipSpace(body, i+1) // the colon
		valueEnd := skipValue(body, i)
		fn(string(name), body[i:valueEnd])
		i = skipSpace(body, valueEnd)
		if body[i] == '}' {
			return nil
		}
		i = skipSpace(body, i+1) // the comma
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexAny(b[i:], `"\`)
		i += j
		if b[i] == '"' {
			return i + 1
		}
		i += 2 // a backslash and the character it escapes
	}
}

// skipValue returns the index just past the value starting at b[i]. Strings are
// skipped as units so that brackets inside them do not count.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
	default: // number, true, false, null
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\n' && b[i] != '\r' && b[i] != '\t' {
			i++
		}
		return i
	}
}
