package keys

import (
	"reflect"
	"strings"
	"testing"
)

const (
	listA = "secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	listB = "secret-bbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	listC = "secret-cccccccccccccccccccccccccccc"
)

func reveal(ks []SDKKey) []string {
	var out []string
	for _, k := range ks {
		out = append(out, k.Reveal())
	}
	return out
}

func TestParseList(t *testing.T) {
	cases := []struct {
		name    string
		text    string
		want    []string
		wantBad []string // substrings, one per message
	}{
		{"empty", "", nil, nil},
		{"only a comment", "# none yet\n", nil, nil},
		{"separators", listA + ", " + listB + "\n\t" + listC + "\r\n", []string{listA, listB, listC}, nil},
		{"duplicates dropped in order", listB + "," + listA + "," + listB, []string{listB, listA}, nil},
		{"comments", "# production\n" + listA + "   # team a\n#" + listB + "\n", []string{listA}, nil},
		// A byte order mark from a Windows editor is invisible; it must not
		// turn the first key into an invalid one.
		{"byte order mark", "\uFEFF" + listA + "\n" + listB, []string{listA, listB}, nil},
		{"byte order mark then comment", "\uFEFF# keys\n" + listA, []string{listA}, nil},
		{"byte order mark inside is an error", listA + "\n\uFEFF" + listB, []string{listA}, []string{"key 2"}},
		{"invalid keys numbered", "client-abcdefghijklmnop " + listA + " console-zyxwvutsrqponm", []string{listA}, []string{"key 1: ", "client key", "key 3: ", "console API key"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, bad := ParseList(c.text)
			if !reflect.DeepEqual(reveal(got), c.want) {
				t.Errorf("keys = %v, want %v", reveal(got), c.want)
			}
			joined := strings.Join(bad, "\n")
			for _, w := range c.wantBad {
				if !strings.Contains(joined, w) {
					t.Errorf("messages %q lack %q", bad, w)
				}
			}
			if len(c.wantBad) == 0 && len(bad) > 0 {
				t.Errorf("unexpected messages %q", bad)
			}
			for _, secret := range []string{"abcdefghijklmnop", "zyxwvutsrqponm"} {
				if strings.Contains(joined, secret) {
					t.Errorf("message echoes a secret: %q", bad)
				}
			}
		})
	}
}

func TestMerge(t *testing.T) {
	a, b, c := MustParse(listA), MustParse(listB), MustParse(listC)
	cases := []struct {
		name  string
		lists [][]SDKKey
		want  []string
	}{
		{"nothing", nil, nil},
		{"one list", [][]SDKKey{{a, b}}, []string{listA, listB}},
		{"overlap keeps first position", [][]SDKKey{{a, b}, {c, a}}, []string{listA, listB, listC}},
		{"empty lists", [][]SDKKey{{}, nil, {c}}, []string{listC}},
	}
	for _, tc := range cases {
		if got := reveal(Merge(tc.lists...)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Merge = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestStripComments(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"a # b\nc":        "a \nc",
		"#x\n#y":          "\n",
		"a#b#c\r\nd":      "a\nd",
		"no comment here": "no comment here",
	} {
		if got := StripComments(in); got != want {
			t.Errorf("StripComments(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckSet(t *testing.T) {
	// Both 20-character prefixes are "secret-shared-prefix".
	one := MustParse("secret-shared-prefix-one")
	two := MustParse("secret-shared-prefix-two")
	short := MustParse("secret-shared-prefix") // exactly the 20 characters: its ID is itself
	other := MustParse(listA)
	cases := []struct {
		name    string
		set     []SDKKey
		schemas []Schema
		want    int
	}{
		{"distinct prefixes", []SDKKey{one, other}, []Schema{Hashed, Prefix}, 0},
		{"collision with prefix schema", []SDKKey{one, other, two}, []Schema{Hashed, Prefix}, 1},
		{"collision with prefix schema alone", []SDKKey{one, two}, []Schema{Prefix}, 1},
		{"collision without prefix schema", []SDKKey{one, two}, []Schema{Hashed}, 0},
		{"a key equal to another's prefix", []SDKKey{short, one}, []Schema{Prefix}, 1},
		{"three sharing one prefix", []SDKKey{one, two, short}, []Schema{Prefix}, 2},
		{"empty set", nil, []Schema{Prefix}, 0},
	}
	for _, c := range cases {
		got := CheckSet(c.set, c.schemas)
		if len(got) != c.want {
			t.Errorf("%s: %d problems %q, want %d", c.name, len(got), got, c.want)
		}
		for _, msg := range got {
			// Both keys appear, redacted; the shared prefix itself is 20
			// characters of the secret and must not.
			if strings.Contains(msg, "secret-shared-prefix") || !strings.Contains(msg, "secret-sha...#") {
				t.Errorf("%s: message %q does not name the keys redacted", c.name, msg)
			}
		}
	}
	if got := CheckSet([]SDKKey{one, two}, []Schema{Prefix}); len(got) == 1 && (!strings.Contains(got[0], one.Redacted()) || !strings.Contains(got[0], two.Redacted())) {
		t.Errorf("message %q does not name both keys", got[0])
	}
}

// FuzzParseList: any text in the keys file either yields valid keys or
// redacted complaints, never a panic.
func FuzzParseList(f *testing.F) {
	f.Add("secret-abc\n# comment\nsecret-def, secret-abc")
	f.Add("client-xyzxyzxyzxyz\n\r\n\t,,")
	f.Add("\uFEFFsecret-abc")
	f.Fuzz(func(t *testing.T, text string) {
		got, bad := ParseList(text)
		seen := map[string]bool{}
		for _, k := range got {
			if _, err := Parse(k.Reveal()); err != nil || seen[k.Reveal()] {
				t.Fatalf("returned an invalid or duplicate key %q", k.Reveal())
			}
			seen[k.Reveal()] = true
		}
		if len(bad) == 0 {
			return
		}
		long := []string{}
		for _, tok := range splitList(StripComments(text)) {
			if len(tok) >= 21 {
				long = append(long, tok)
			}
		}
		for _, msg := range bad {
			for _, tok := range long {
				if strings.Contains(msg, tok) {
					t.Fatalf("message %q echoes %q", msg, tok)
				}
			}
		}
	})
}
