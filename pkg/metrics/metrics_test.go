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

func TestHealthGauges(t *testing.T) {
	m := New(false)
	m.RegisterHealth(func() KeyHealth {
		return KeyHealth{Unauthorized: 2, Failing: map[string]int{"http_5xx": 3, "timeout": 1}, OldestSuccessAge: 42, OldestLcutAge: 7}
	})
	text, err := testutil.GatherAndCount(m.Registry, "statsig_populator_keys_failing")
	if err != nil || text != 2 {
		t.Fatalf("keys_failing series = %d (%v), want 2", text, err)
	}
	want := `
# HELP statsig_populator_keys_unauthorized SDK keys the CDN currently refuses (401/403).
# TYPE statsig_populator_keys_unauthorized gauge
statsig_populator_keys_unauthorized 2
# HELP statsig_populator_oldest_success_age_seconds Longest time any authorized key/version pair polled by this replica has gone without a successful poll (0 on a follower).
# TYPE statsig_populator_oldest_success_age_seconds gauge
statsig_populator_oldest_success_age_seconds 42
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "statsig_populator_keys_unauthorized", "statsig_populator_oldest_success_age_seconds"); err != nil {
		t.Error(err)
	}
}
