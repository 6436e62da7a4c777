package keys

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// Golden values computed independently (openssl dgst -sha256 | base64, and a
// Python djb2) for the worked examples of the layout reference.
const (
	longKey  = "secret-abc123XYZ0123456789example" // 33 characters
	shortKey = "secret-harness-00001"              // exactly 20 characters
)

func TestDCSKeyGolden(t *testing.T) {
	long, short := MustParse(longKey), MustParse(shortKey)
	cases := []struct {
		prefix string
		key    SDKKey
		v      Version
		enc    Encoding
		schema Schema
		want   string
	}{
		{"", long, V2, PlainText, Hashed, "statsig|/v2/download_config_specs|plain_text|DTAAZ4lexssiyUagx9aS5cly2FLf0wud0zKZT2l1qPM="},
		{"", long, V2, StatsigBR, Hashed, "statsig|/v2/download_config_specs|statsig-br|DTAAZ4lexssiyUagx9aS5cly2FLf0wud0zKZT2l1qPM="},
		{"", long, V2, PlainText, Prefix, "statsig|/v2/download_config_specs|plain_text|secret-abc123XYZ0123"},
		{"", long, V2, StatsigBR, Prefix, "statsig|/v2/download_config_specs|statsig-br|secret-abc123XYZ0123"},
		{"", long, V1, PlainText, Hashed, "statsig|/v1/download_config_specs|plain_text|DTAAZ4lexssiyUagx9aS5cly2FLf0wud0zKZT2l1qPM="},
		{"", long, V1, PlainText, Prefix, "statsig|/v1/download_config_specs|plain_text|secret-abc123XYZ0123"},
		{"", short, V2, PlainText, Hashed, "statsig|/v2/download_config_specs|plain_text|hLd8vCNmvjY0Hr+m4t8uZOMjbosunXfSY0Y41rKLnb0="},
		{"", short, V2, PlainText, Prefix, "statsig|/v2/download_config_specs|plain_text|secret-harness-00001"},
		{"", short, V1, PlainText, Hashed, "statsig|/v1/download_config_specs|plain_text|hLd8vCNmvjY0Hr+m4t8uZOMjbosunXfSY0Y41rKLnb0="},
		{"", short, V1, PlainText, Prefix, "statsig|/v1/download_config_specs|plain_text|secret-harness-00001"},
		{"team-a:", short, V1, PlainText, Prefix, "team-a:statsig|/v1/download_config_specs|plain_text|secret-harness-00001"},
	}
	for _, c := range cases {
		got := DCSKey(c.prefix, c.v, c.enc, c.schema.ID(c.key))
		if got != c.want {
			t.Errorf("DCSKey(%q, %s, %s, %s(%s)) = %q, want %q", c.prefix, c.v, c.enc, c.schema, c.key, got, c.want)
		}
	}
}

func TestTargets(t *testing.T) {
	k := MustParse(longKey)
	v2 := Targets("p:", k, V2, []Schema{Hashed, Prefix})
	want := []Target{
		{Format: SFP, Schema: Hashed, Version: V2, Key: "p:statsig|/v2/download_config_specs|plain_text|DTAAZ4lexssiyUagx9aS5cly2FLf0wud0zKZT2l1qPM="},
		{Format: SFP, Schema: Prefix, Version: V2, Key: "p:statsig|/v2/download_config_specs|plain_text|secret-abc123XYZ0123"},
	}
	if fmt.Sprint(v2) != fmt.Sprint(want) {
		t.Fatalf("v2 targets = %v, want %v", v2, want)
	}
	for i, sib := range []string{"p:statsig|/v2/download_config_specs|statsig-br|DTAAZ4lexssiyUagx9aS5cly2FLf0wud0zKZT2l1qPM=", "p:statsig|/v2/download_config_specs|statsig-br|secret-abc123XYZ0123"} {
		if got := v2[i].BRSibling(); got != sib {
			t.Errorf("sibling %d = %q, want %q", i, got, sib)
		}
	}
	// A prefix that itself holds the segment does not confuse it.
	odd := Targets("a|plain_text|b:", k, V2, []Schema{Hashed})[0]
	if got := odd.BRSibling(); got != "a|plain_text|b:statsig|/v2/download_config_specs|statsig-br|DTAAZ4lexssiyUagx9aS5cly2FLf0wud0zKZT2l1qPM=" {
		t.Errorf("sibling with an odd prefix = %q", got)
	}
	v1 := Targets("", k, V1, []Schema{Prefix})
	if len(v1) != 1 || v1[0].BRSibling() != "" || v1[0].Key != "statsig|/v1/download_config_specs|plain_text|secret-abc123XYZ0123" {
		t.Fatalf("v1 targets = %+v: v1 has no statsig-br sibling", v1)
	}
}

func TestLayoutTargets(t *testing.T) {
	k := MustParse(shortKey)
	l := Layout{Prefix: "x:", Formats: []Format{NodeRedis, String}, Schemas: []Schema{Hashed}}
	got := l.Targets(k, V1)
	nr, str := got[0], got[1]
	if nr.Format != NodeRedis || nr.Key != "x:statsig-redis" ||
		nr.Field != "statsig|/v1/download_config_specs|plain_text|hLd8vCNmvjY0Hr+m4t8uZOMjbosunXfSY0Y41rKLnb0=" ||
		nr.LcutRef != nr.Field+"|lcut" || nr.BRSibling() != "" {
		t.Errorf("node-redis target = %+v", nr)
	}
	if str.Format != String || str.Key != "x:statsig|/v1/download_config_specs|plain_text|hLd8vCNmvjY0Hr+m4t8uZOMjbosunXfSY0Y41rKLnb0=" ||
		Slot(str.LcutRef) != Slot(str.Key) || str.LcutRef == str.Key {
		t.Errorf("string target = %+v (lcut key slot %d, key slot %d)", str, Slot(str.LcutRef), Slot(str.Key))
	}
	l.NodeRedisHash = "statsig-redis-team-a"
	if got := l.Targets(k, V2)[0]; got.Key != "x:statsig-redis-team-a" || got.Field != "statsig|/v2/download_config_specs|plain_text|hLd8vCNmvjY0Hr+m4t8uZOMjbosunXfSY0Y41rKLnb0=" {
		t.Errorf("custom hash target = %+v", got)
	}
	if got := l.Targets(k, V2)[1]; got.BRSibling() != "x:statsig|/v2/download_config_specs|statsig-br|hLd8vCNmvjY0Hr+m4t8uZOMjbosunXfSY0Y41rKLnb0=" {
		t.Errorf("string v2 target has no statsig-br sibling: %+v", got)
	}
}

func TestSlot(t *testing.T) {
	// Values from the Redis Cluster specification and redis-cli CLUSTER KEYSLOT.
	if got := crc16("123456789"); got != 0x31C3 {
		t.Fatalf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	for key, want := range map[string]uint16{"foo": 12182, "bar": 5061, "{user1000}.following": Slot("user1000"), "foo{}{bar}": Slot("foo{}{bar}")} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if Slot("foo{}{bar}") == Slot("bar") {
		t.Error("an empty first tag must hash the whole key")
	}
	for _, key := range []string{"statsig|/v1/download_config_specs|plain_text|abc", "{team}:statsig|x", "a{b:statsig|x", "a}b{", ""} {
		c := SameSlotKey(key, "|lcut")
		if Slot(c) != Slot(key) || c == key {
			t.Errorf("SameSlotKey(%q) = %q in slot %d, want slot %d", key, c, Slot(c), Slot(key))
		}
	}
	tags := slotTags()
	for s, tag := range tags {
		if tag == "" || Slot(tag) != uint16(s) {
			t.Fatalf("slot %d has tag %q", s, tag)
		}
	}
}

func TestHashedSDKKeyUsed(t *testing.T) {
	for key, want := range map[string]string{
		"secret-key":  "2842331586",
		"secret-test": "2213201295",
		longKey:       "645855033",
		shortKey:      "3707332663",
	} {
		if got := MustParse(key).HashedSDKKeyUsed(); got != want {
			t.Errorf("djb2(%s) = %s, want %s", key, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in      string
		wantErr string
	}{
		{longKey, ""},
		{"secret-a_b-C9", ""},
		{"", "empty"},
		{"client-abcdefghijklmnop", "client key"},
		{"console-abcdefghijklmnop", "console API key"},
		{"secret-", "not a server secret key"},
		{"sk-live-abcdef", "not a server secret key"},
		{"secret-abc def", "character"},
		{"secret-abc/def", "character"},
	} {
		_, err := Parse(c.in)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("Parse(%q): unexpected error %v", c.in, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("Parse(%q) error = %v, want one containing %q", c.in, err, c.wantErr)
		case err != nil && len(c.in) > 12 && strings.Contains(err.Error(), c.in):
			t.Errorf("Parse(%q) error echoes the secret: %v", c.in, err)
		}
	}
}

// A key must not reach any output in full, whatever way it is formatted.
func TestKeyNeverFormatsInFull(t *testing.T) {
	k := MustParse(longKey)
	js, _ := json.Marshal(map[string]any{"k": k})
	outputs := []string{
		k.String(), fmt.Sprint(k), fmt.Sprintf("%v %s %q %+v %#v %x", k, k, k, k, k, k),
		fmt.Sprintf("%v", struct{ K SDKKey }{k}), fmt.Sprintf("%#v", []SDKKey{k}), string(js),
	}
	for _, out := range outputs {
		if strings.Contains(out, longKey) || strings.Contains(out, "0123456789") {
			t.Errorf("formatted key leaks the secret: %s", out)
		}
	}
	if got := k.Redacted(); got != "secret-abc...#0d300067" {
		t.Errorf("Redacted() = %q, want secret-abc...#0d300067 (first 10 characters, ASCII dots, sha256 prefix)", got)
	}
	if got := Redact("secret-ab"); strings.Contains(got, "secret-ab") {
		t.Errorf("Redact of a short string shows it whole: %q", got)
	}
	if MustParse(shortKey).Redacted() == MustParse("secret-harness-00002").Redacted() {
		t.Error("two keys with the same first characters redact to the same name")
	}
}
