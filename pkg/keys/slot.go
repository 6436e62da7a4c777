package keys

import (
	"strconv"
	"strings"
	"sync"
)

// Slot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of the key, or of
// its hash tag (the text between the first '{' and the next '}', when not
// empty), modulo 16384.
func Slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % 16384
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// SameSlotKey names a companion of key, key+suffix plus a hash tag chosen so
// that both live in the same cluster slot: a script may then touch both and
// still run on Redis Cluster.
func SameSlotKey(key, suffix string) string {
	want := Slot(key)
	if c := key + suffix; Slot(c) == want {
		return c // key has its own hash tag, which the companion inherits
	}
	if !strings.ContainsAny(key, "{}") {
		return key + suffix + "{" + slotTags()[want] + "}"
	}
	// Unbalanced braces in a custom prefix: search directly (rare, slower).
	for n := uint64(0); ; n++ {
		if c := key + suffix + "{" + strconv.FormatUint(n, 36) + "}"; Slot(c) == want {
			return c
		}
	}
}

var (
	tagsOnce sync.Once
	tags     []string
)

// slotTags returns, for each slot, the shortest base-36 counter whose CRC16
// lands in it: a hash tag that pins a key to that slot.
func slotTags() []string {
	tagsOnce.Do(func() {
		tags = make([]string, 16384)
		left := len(tags)
		for n := uint64(0); left > 0; n++ {
			t := strconv.FormatUint(n, 36)
			if s := crc16(t) % 16384; tags[s] == "" {
				tags[s] = t
				left--
			}
		}
	})
	return tags
}
