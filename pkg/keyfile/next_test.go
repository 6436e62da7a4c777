package keyfile

import (
	"reflect"
	"strings"
	"testing"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// TestNext: the rule alone. A key is added at once; it leaves only when two
// consecutive usable reads lack it (prev and cur), never on one read, and
// never when the read before was not usable (prev nil).
func TestNext(t *testing.T) {
	named := map[string]keys.SDKKey{
		"A": keys.MustParse(keyA), "B": keys.MustParse(keyB), "C": keys.MustParse(keyC), "D": keys.MustParse(keyD),
		// P1 and P2 share their first 20 characters; P1cut is P1 cut short
		// by a half-written file.
		"P1": keys.MustParse("secret-shared-prefix-one"), "P2": keys.MustParse("secret-shared-prefix-two"),
		"P1cut": keys.MustParse("secret-shared-prefix-o"),
	}
	ks := func(spec string) []keys.SDKKey {
		if spec == "-" {
			return nil
		}
		var out []keys.SDKKey
		for _, n := range strings.Fields(spec) {
			out = append(out, named[n])
		}
		return out
	}
	names := func(l []keys.SDKKey) string {
		var out []string
		for _, k := range l {
			for n, nk := range named {
				if nk == k {
					out = append(out, n)
				}
			}
		}
		return strings.Join(out, " ")
	}
	both := []keys.Schema{keys.Hashed, keys.Prefix}
	hashed := []keys.Schema{keys.Hashed}
	cases := []struct {
		name                   string
		applied, prev, cur     string // key names; "-" for nil
		schemas                []keys.Schema
		apply                  string
		added, leaving, remove string
		deferred               string
		changed                bool
	}{
		{"nothing changes", "A B", "A B", "A B", both, "A B", "", "", "", "", false},
		{"an addition applies at once", "A", "A", "A B", both, "A B", "B", "", "", "", true},
		{"additions at once, after an unusable read too", "A", "-", "A B C", both, "A B C", "B C", "", "", "", true},
		{"a truncated file holding some keys removes none", "A B C D", "A B C D", "A B", both, "A B C D", "", "C D", "", "", false},
		{"the rest written before the next read: nothing happened", "A B C D", "A B", "A B C D", both, "A B C D", "", "", "", "", false},
		{"still missing at the next read: removed", "A B C D", "A B", "A B", both, "A B", "", "", "C D", "", true},
		{"missing now, missing before but back in between is not two reads", "A B C", "A B C", "A", both, "A B C", "", "B C", "", "", false},
		{"the read before was not usable: kept", "A B C", "-", "A", both, "A B C", "", "B C", "", "", false},
		{"the read before lacked only one of them", "A B C", "A B", "A", both, "A B", "", "B", "C", "", true},
		{"a replacement: added at once, the old key one read later", "A B", "A B", "A C", both, "A C B", "C", "B", "", "", true},
		{"the replacement confirmed", "A C B", "A C", "A C", both, "A C", "", "", "B", "", true},
		{"a key dropped and re-added before the second read stays", "A B", "A", "A B", both, "A B", "", "", "", "", false},
		{"order: the read's, then the leaving keys in applied order", "D C B A", "D C B A", "A", both, "A D C B", "", "D C B", "", "", false},
		// The prefix schema: a key sharing 20 characters with a leaving key
		// waits for it to go, or both would write the same Redis keys.
		{"a key cut short by a half-written file is not added", "A P1", "A P1", "A P1cut", both, "A P1", "", "P1", "", "P1cut", false},
		{"the whole file again", "A P1", "A P1cut", "A P1", both, "A P1", "", "", "", "", false},
		{"a same-prefix rotation waits one read", "A P1", "A P1", "A P2", both, "A P1", "", "P1", "", "P2", false},
		{"and then swaps in one step", "A P1", "A P2", "A P2", both, "A P2", "P2", "", "P1", "", true},
		{"without the prefix schema no key waits", "A P1", "A P1", "A P2", hashed, "A P2 P1", "P2", "P1", "", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			applied, prev, cur := ks(c.applied), ks(c.prev), ks(c.cur)
			keep := [][]keys.SDKKey{append([]keys.SDKKey(nil), applied...), append([]keys.SDKKey(nil), prev...), append([]keys.SDKKey(nil), cur...)}
			s := Next(applied, prev, cur, c.schemas)
			got := []string{names(s.Apply), names(s.Added), names(s.Leaving), names(s.Removed), names(s.Deferred)}
			want := []string{c.apply, c.added, c.leaving, c.remove, c.deferred}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("apply, added, leaving, removed, deferred = %q\nwant %q", got, want)
			}
			if s.Changed() != c.changed {
				t.Errorf("Changed() = %v, want %v", s.Changed(), c.changed)
			}
			if !reflect.DeepEqual(keep, [][]keys.SDKKey{applied, prev, cur}) {
				t.Error("Next modified its arguments")
			}
		})
	}
}
