package poller

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
)

// Every outcome label the poller sets itself (poll.go) is explained in the
// README's paragraph on /status last_outcome; the fetch outcomes are checked
// against /metrics by cmd/populator's TestMetricsMatchREADME.
func TestOutcomeLabelsMatchREADME(t *testing.T) {
	src, err := os.ReadFile("poll.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(readme), "`last_outcome` in `/status`")
	if start < 0 {
		t.Fatal("README has no paragraph on last_outcome")
	}
	para := string(readme)[start:]
	para = para[:strings.Index(para, "\n\n")]
	set := regexp.MustCompile(`label(?:, o\.lcut)?(?::| =) "([a-z_]+)"`)
	found := set.FindAllStringSubmatch(string(src), -1)
	if len(found) < 8 {
		t.Fatalf("found only %d label literals in poll.go", len(found))
	}
	for _, m := range found {
		if label := m[1]; !strings.Contains(para, "`"+label+"`") && !slices.Contains(fetcher.Labels, label) {
			t.Errorf("poll.go sets the outcome %q, which the README's last_outcome paragraph does not explain", label)
		}
	}
}
