package poller

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every ID-list outcome (IDListOutcomes) is named in the README's paragraph
// on /status id_lists, and the paragraph names no other; every outcome the
// syncer sets is in IDListOutcomes.
func TestIDListOutcomesMatchREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(readme), "With ID lists on, `/status` also has `id_lists`")
	if start < 0 {
		t.Fatal("README has no paragraph on /status id_lists")
	}
	para := string(readme)[start:]
	para = para[:strings.Index(para, "\n\n")]
	para = para[strings.Index(para, "`last_outcome`, one of"):]
	para = para[:strings.Index(para, "`/readyz`")]
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(para, -1) {
		named[m[1]] = true
	}
	delete(named, "last_outcome")
	delete(named, "id_list_manifest_fetches_total")
	delete(named, "DELETE_ON_UNAUTHORIZED")
	for _, o := range IDListOutcomes {
		if !named[o] {
			t.Errorf("outcome %q is not in the README", o)
		}
		delete(named, o)
	}
	for o := range named {
		t.Errorf("the README names outcome %q, which the syncer never sets", o)
	}
	src, err := os.ReadFile("idlists.go")
	if err != nil {
		t.Fatal(err)
	}
	set := regexp.MustCompile(`(?:outcome(?:, r\.err)?\s*(?::|=)\s*|outcome := )"([a-z_]+)"`)
	found := set.FindAllStringSubmatch(string(src), -1)
	if len(found) < 5 {
		t.Fatalf("found only %d outcome literals in idlists.go", len(found))
	}
	for _, m := range found {
		if !slices.Contains(IDListOutcomes, m[1]) {
			t.Errorf("idlists.go sets the outcome %q, which IDListOutcomes lacks", m[1])
		}
	}
}
