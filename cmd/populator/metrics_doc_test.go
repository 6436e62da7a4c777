package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/metrics"
)

// readmeMetrics reads the README's metric table: for each metric (without
// the statsig_populator_ prefix) the text of its row, where every label
// value the worker can emit must appear in backticks.
func readmeMetrics(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "### Metrics")
	if start < 0 {
		t.Fatal("README has no ### Metrics section")
	}
	text = text[start:]
	if end := strings.Index(text[4:], "\n### "); end >= 0 {
		text = text[:end+4]
	}
	rows := map[string]string{}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|(.*)\\|$")
	for _, m := range row.FindAllStringSubmatch(text, -1) {
		rows[m[1]] = m[2]
	}
	if len(rows) < 10 {
		t.Fatalf("found only %d metric rows in the README", len(rows))
	}
	return rows
}

// TestMetricsMatchREADME runs the worker through faults that produce every
// kind of outcome, scrapes /metrics, and fails when a metric or a label
// value it emitted is missing from the README's table, or when the table
// names a metric it never emitted.
func TestMetricsMatchREADME(t *testing.T) {
	s := newStack(t)
	// One key per fault, beside the two healthy ones.
	type faulty struct {
		key   keys.SDKKey
		setup func(k keys.SDKKey)
	}
	faults := []faulty{
		{keys.MustParse("secret-metrics-unauthorized"), func(k keys.SDKKey) { s.CDN.Revoke(k, 401) }},
		{keys.MustParse("secret-metrics-forbidden00"), func(k keys.SDKKey) { s.CDN.Revoke(k, 403) }},
		{keys.MustParse("secret-metrics-ratelimited"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{Status: 429, RetryAfter: "1"}) }},
		{keys.MustParse("secret-metrics-unavailable"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{Status: 503}) }},
		{keys.MustParse("secret-metrics-notfound000"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{Status: 404}) }},
		{keys.MustParse("secret-metrics-redirected0"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{Status: 302}) }},
		{keys.MustParse("secret-metrics-nocontent00"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{Status: 204}) }},
		{keys.MustParse("secret-metrics-invalidjson"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{InvalidJSON: true}) }},
		{keys.MustParse("secret-metrics-protobuf000"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{Protobuf: true}) }},
		{keys.MustParse("secret-metrics-toolarge000"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{Pad: 40 << 10}) }},
		{keys.MustParse("secret-metrics-slow0000000"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{Delay: 5 * time.Second}) }},
		{keys.MustParse("secret-metrics-reset000000"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{Reset: true}) }},
		{keys.MustParse("secret-metrics-wrongshape0"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{WrongVersion: true}) }},
		{keys.MustParse("secret-metrics-nosince0000"), func(k keys.SDKKey) { s.CDN.SetFault(k, fakecdn.Fault{IgnoreSinceTime: true, OlderTime: true}) }},
	}
	all := []string{keyA.Reveal(), keyB.Reveal()}
	for i, f := range faults {
		s.CDN.SetProject(f.key, fakecdn.Project{Lcut: 1700000000000 + int64(i), Value: 1})
		f.setup(f.key)
		all = append(all, f.key.Reveal())
	}
	// A key dated in the year 2100 (refused as future_time).
	future := keys.MustParse("secret-metrics-future00000")
	s.CDN.SetProject(future, fakecdn.Project{Lcut: 4102444800000, Value: 1})
	all = append(all, future.Reveal())

	addr := freeAddr(t)
	p := start(t, s.BaseEnv("STATSIG_SERVER_SDK_KEYS="+strings.Join(all, ","), "ADMIN_ADDR="+addr,
		"POLL_INTERVAL=300ms", "FETCH_TIMEOUT=400ms", "MAX_PAYLOAD_BYTES=32768", "METRICS_PER_KEY=true", "LEADER_ELECTION=true"))
	waitFor(t, "healthy keys written", 10*time.Second, s.AllCurrent)
	s.CDN.Change(keyA, 1000) // a conditional update: propagation delay

	// Every outcome the faults above produce, before comparing.
	want := []string{"updated", "no_update", "unauthorized", "http_429", "http_5xx", "http_4xx", "http_3xx",
		"http_other", "invalid_payload", "unsupported_format", "too_large", "timeout", "network"}
	var families map[string]*dtoFamily
	waitFor(t, "every outcome in /metrics", 15*time.Second, func() bool {
		families = scrape(t, addr)
		got := families["statsig_populator_fetches_total"].values("outcome")
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return families["statsig_populator_propagation_delay_seconds"] != nil
	})
	p.Stop(t)

	rows := readmeMetrics(t)
	emitted := map[string]bool{}
	for name, f := range families {
		short, ok := strings.CutPrefix(name, "statsig_populator_")
		if !ok {
			continue // Go runtime and process metrics
		}
		emitted[short] = true
		row, documented := rows[short]
		if !documented {
			t.Errorf("/metrics emits %s, which the README's metric table does not list", name)
			continue
		}
		// A row may name another metric's values by naming that metric
		// (keys_failing takes fetches_total's failure outcomes).
		for other, otherRow := range rows {
			if other != short && strings.Contains(row, "`"+other+"`") {
				row += otherRow
			}
		}
		for label, values := range f.labels {
			if label == "version" || label == "key" {
				continue
			}
			if !strings.Contains(row, "`"+label+"`") {
				t.Errorf("%s has label %q, not in its README row", name, label)
			}
			for _, v := range values {
				if !strings.Contains(row, "`"+v+"`") {
					t.Errorf("%s{%s=%q} is emitted but the README row does not name `%s`", name, label, v, v)
				}
			}
		}
	}
	for short := range rows {
		if !emitted[short] {
			t.Errorf("the README lists statsig_populator_%s, which /metrics did not emit", short)
		}
	}
}

// dtoFamily is what the test needs of a metric family: its label values.
type dtoFamily struct{ labels map[string][]string }

func (f *dtoFamily) values(label string) []string {
	if f == nil {
		return nil
	}
	return f.labels[label]
}

// scrape reads /metrics with Prometheus' own text parser.
func scrape(t *testing.T, addr string) map[string]*dtoFamily {
	t.Helper()
	_, body := adminGet(addr, "/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]*dtoFamily{}
	for name, mf := range mfs {
		f := &dtoFamily{labels: map[string][]string{}}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(f.labels[lp.GetName()], lp.GetValue()) {
					f.labels[lp.GetName()] = append(f.labels[lp.GetName()], lp.GetValue())
				}
			}
		}
		out[name] = f
	}
	return out
}

// The README rows of the metrics whose label values are a fixed vocabulary
// name every value of it, emitted yet or not: the fault run above cannot
// produce every ID-list outcome.
func TestMetricVocabulariesMatchREADME(t *testing.T) {
	rows := readmeMetrics(t)
	for metric, vocabulary := range map[string][]string{
		"id_list_manifest_fetches_total": idlists.ManifestLabels,
		"id_list_downloads_total":        idlists.ChunkLabels,
		"id_list_written_bytes_total":    metrics.IDListWriteModes,
		"redis_errors_total":             metrics.RedisOps,
	} {
		row, ok := rows[metric]
		if !ok {
			t.Errorf("the README has no row for %s", metric)
			continue
		}
		for _, v := range vocabulary {
			if !strings.Contains(row, "`"+v+"`") {
				t.Errorf("%s can carry `%s`, which its README row does not name", metric, v)
			}
		}
	}
}
