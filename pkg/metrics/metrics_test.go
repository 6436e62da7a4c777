package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFetchCountsPerSeries(t *testing.T) {
	m := New(false)
	for i := 0; i < 3; i++ {
		m.Fetch("v1", "no_update", 0.01)
	}
	m.Fetch("v2", "updated", 0.2)
	if got := testutil.ToFloat64(m.fetches.WithLabelValues("v1", "no_update")); got != 3 {
		t.Errorf("v1 no_update = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.fetches.WithLabelValues("v2", "updated")); got != 1 {
		t.Errorf("v2 updated = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(m.fetchDuration); n != 2 {
		t.Errorf("%d duration series, want 2", n)
	}
	if allocs := testing.AllocsPerRun(100, func() { m.Fetch("v1", "no_update", 0.01) }); allocs > 0 {
		t.Errorf("a repeated fetch allocates %v times", allocs)
	}
}

func TestOutcomeLabelsAreBounded(t *testing.T) {
	for class, want := range map[string]string{
		"http_503": "http_5xx", "http_599": "http_5xx", "http_404": "http_4xx", "http_429": "http_429",
		"invalid_payload:wrong_shape": "invalid_payload", "timeout": "timeout",
	} {
		if got := FetchOutcomeLabel(class); got != want {
			t.Errorf("%s → %s, want %s", class, got, want)
		}
	}
	if strings.Contains(FetchOutcomeLabel("http_200"), "200") {
		t.Error("status codes leak into labels")
	}
}
