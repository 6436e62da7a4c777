package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// operationsDoc is the operator's guide that every alert's runbook_url points into.
const operationsDoc = "../../docs/operations.md"

// The alerts the chart defines, each with a runbook section in docs/operations.md.
var chartAlerts = []string{
	"StatsigPopulatorDown", "StatsigPopulatorAbsent", "StatsigPopulatorNoLeader", "StatsigPopulatorKeyStale",
	"StatsigPopulatorKeysUnauthorized", "StatsigPopulatorInvalidPayloads", "StatsigPopulatorRedisErrors",
	"StatsigPopulatorNotReady",
}

const rulesOn = "prometheusRule: {enabled: true}\n"

func ruleOf(t *testing.T, r *rendering) *monitoringv1.PrometheusRule {
	t.Helper()
	return typed(t, r.one(t, "PrometheusRule")).(*monitoringv1.PrometheusRule)
}

// alertsOf maps alert name to rule (recording rules and additionalRules without a name are left out).
func alertsOf(t *testing.T, pr *monitoringv1.PrometheusRule) map[string]monitoringv1.Rule {
	t.Helper()
	out := map[string]monitoringv1.Rule{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if _, dup := out[r.Alert]; dup {
				t.Errorf("alert %s is defined twice", r.Alert)
			}
			out[r.Alert] = r
		}
	}
	return out
}

func TestPrometheusRuleRendering(t *testing.T) {
	if r := mustRender(t, valuesFile(t, "default.yaml")); r.has("PrometheusRule") {
		t.Error("a PrometheusRule is rendered by default")
	}

	r := mustRender(t, valuesFile(t, "default.yaml"), rulesOn)
	pr := ruleOf(t, r)
	wantEqual(t, "name", pr.Name, "pop-statsig-populator")
	wantEqual(t, "namespace", pr.Namespace, namespace)
	alerts := alertsOf(t, pr)
	var names []string
	for n := range alerts {
		names = append(names, n)
	}
	sort.Strings(names)
	want := slices.Clone(chartAlerts)
	sort.Strings(want)
	wantEqual(t, "alerts", names, want)

	for name, a := range alerts {
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("%s has no %s annotation", name, k)
			}
		}
		wantEqual(t, name+" runbook_url", a.Annotations["runbook_url"],
			"https://github.com/statsig-populator/statsig-populator/blob/main/docs/operations.md#"+strings.ToLower(name))
		if a.Labels["severity"] == "" {
			t.Errorf("%s has no severity label", name)
		}
		if a.For == nil {
			t.Errorf("%s has no for", name)
		}
		// Prometheus renders the annotations with Go's text/template and its own functions:
		// they must parse, with $labels and $value defined as Prometheus defines them.
		for k, v := range a.Annotations {
			if _, err := template.New(name).Funcs(prometheusTemplateFuncs).Parse("{{$labels := .Labels}}{{$value := .Value}}" + v); err != nil {
				t.Errorf("%s annotation %s is not a valid Prometheus template: %v", name, k, err)
			}
		}
	}
	wantEqual(t, "stale threshold: 3 × the default interval of 10s", staleThreshold(t, alerts), 30.0)
	wantEqual(t, "KeyStale severity", alerts["StatsigPopulatorKeyStale"].Labels["severity"], "critical")
	wantEqual(t, "KeysUnauthorized for", string(*alerts["StatsigPopulatorKeysUnauthorized"].For), "15m")
}

// staleThreshold is the number StatsigPopulatorKeyStale compares the staleness gauge with.
func staleThreshold(t *testing.T, alerts map[string]monitoringv1.Rule) float64 {
	t.Helper()
	a, ok := alerts["StatsigPopulatorKeyStale"]
	if !ok {
		t.Fatal("no StatsigPopulatorKeyStale alert")
	}
	expr, err := promql.ParseExpr(a.Expr.StrVal)
	if err != nil {
		t.Fatalf("StatsigPopulatorKeyStale: %v", err)
	}
	b, ok := expr.(*parser.BinaryExpr)
	if !ok || b.Op != parser.GTR {
		t.Fatalf("StatsigPopulatorKeyStale is not `… > threshold`: %s", expr)
	}
	n, ok := b.RHS.(*parser.NumberLiteral)
	if !ok {
		t.Fatalf("StatsigPopulatorKeyStale's threshold is not a number: %s", b.RHS)
	}
	return n.Val
}

// TestPrometheusRuleValues: the values that shape the rule reach it.
func TestPrometheusRuleValues(t *testing.T) {
	threshold := func(vals string) float64 {
		t.Helper()
		return staleThreshold(t, alertsOf(t, ruleOf(t, mustRender(t, valuesFile(t, "default.yaml"), rulesOn, vals))))
	}
	// The staleness threshold follows the poll interval the chart gives the worker.
	wantEqual(t, "1m30s × 3", threshold("statsig: {pollInterval: 1m30s}"), 270.0)
	wantEqual(t, "500ms × 3", threshold("statsig: {pollInterval: 500ms}"), 1.5)
	wantEqual(t, "1.5h × 2", threshold("statsig: {pollInterval: 1.5h}\nprometheusRule: {alerts: {keyStale: {intervals: 2}}}"), 10800.0)
	wantEqual(t, "10s × 2.5", threshold("prometheusRule: {alerts: {keyStale: {intervals: 2.5}}}"), 25.0)
	wantEqual(t, "24h × 5: no exponent in the expression", threshold("statsig: {pollInterval: 24h}\nprometheusRule: {alerts: {keyStale: {intervals: 5}}}"), 432000.0)

	r := mustRender(t, valuesFile(t, "default.yaml"), `
prometheusRule:
  enabled: true
  namespace: monitoring
  labels: {release: kube-prometheus-stack}
  annotations: {example.com/owner: flags}
  interval: 1m
  alertLabels: {team: flags, severity: ignored}
  runbookBaseUrl: https://wiki.example.com/statsig
  selector: 'cluster="eu", job="kubernetes-pods"'
  alerts:
    down: {enabled: false}
    redisErrors: {window: 10m, threshold: 0.5, for: 1m, severity: critical}
    invalidPayloads: {window: 1h}
  additionalRules:
    - record: statsig_populator:fetches:rate5m
      expr: sum by (outcome) (rate(statsig_populator_fetches_total[5m]))
`)
	pr := ruleOf(t, r)
	wantEqual(t, "namespace", pr.Namespace, "monitoring")
	wantEqual(t, "release label", pr.Labels["release"], "kube-prometheus-stack")
	wantEqual(t, "annotation", pr.Annotations["example.com/owner"], "flags")
	wantEqual(t, "group interval", string(*pr.Spec.Groups[0].Interval), "1m")
	alerts := alertsOf(t, pr)
	if _, ok := alerts["StatsigPopulatorDown"]; ok {
		t.Error("alerts.down.enabled: false still renders StatsigPopulatorDown")
	}
	re := alerts["StatsigPopulatorRedisErrors"]
	wantEqual(t, "redisErrors expr", re.Expr.StrVal,
		`sum by (namespace, job, op) (rate(statsig_populator_redis_errors_total{cluster="eu", job="kubernetes-pods"}[10m])) > 0.5`)
	wantEqual(t, "redisErrors for", string(*re.For), "1m")
	wantEqual(t, "redisErrors severity", re.Labels["severity"], "critical")
	if !strings.Contains(alerts["StatsigPopulatorInvalidPayloads"].Expr.StrVal, "[1h]") {
		t.Errorf("invalidPayloads.window not used: %s", alerts["StatsigPopulatorInvalidPayloads"].Expr.StrVal)
	}
	for name, a := range alerts {
		wantEqual(t, name+" team label", a.Labels["team"], "flags")
		if name != "StatsigPopulatorRedisErrors" {
			// alertLabels cannot replace an alert's own severity.
			if a.Labels["severity"] == "ignored" {
				t.Errorf("%s: alertLabels replaced the severity", name)
			}
		}
		wantEqual(t, name+" runbook_url", a.Annotations["runbook_url"], "https://wiki.example.com/statsig#"+strings.ToLower(name))
		// Every selector carries the configured matchers.
		expr, err := promql.ParseExpr(a.Expr.StrVal)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, vs := range vectorSelectors(expr) {
			if !hasMatcher(vs, "cluster", "eu") || !hasMatcher(vs, "job", "kubernetes-pods") {
				t.Errorf("%s: selector %s does not carry prometheusRule.selector", name, vs)
			}
		}
	}
	last := pr.Spec.Groups[0].Rules[len(pr.Spec.Groups[0].Rules)-1]
	wantEqual(t, "additional rule", last.Record, "statsig_populator:fetches:rate5m")

	// The chart's own selector matches the job names of its PodMonitor and ServiceMonitor.
	for _, monitor := range []string{"podMonitor: {enabled: true, namespace: monitoring}", "serviceMonitor: {enabled: true}"} {
		r := mustRender(t, valuesFile(t, "default.yaml"), rulesOn, monitor)
		var job string
		if r.has("PodMonitor") {
			pm := typed(t, r.one(t, "PodMonitor")).(*monitoringv1.PodMonitor)
			job = pm.Namespace + "/" + pm.Name // Prometheus Operator's job label for a PodMonitor
		} else {
			job = typed(t, r.one(t, "ServiceMonitor")).(*monitoringv1.ServiceMonitor).Name // the Service's name, same as the monitor's
			wantEqual(t, "Service name", r.one(t, "Service").Name, job)
		}
		for name, a := range alertsOf(t, ruleOf(t, r)) {
			expr, err := promql.ParseExpr(a.Expr.StrVal)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, vs := range vectorSelectors(expr) {
				if !selects(vs, map[string]string{"namespace": namespace, "job": job}) {
					t.Errorf("%s with %s: %s does not select job %q in namespace %q", name, monitor, vs, job, namespace)
				}
			}
		}
	}
}

// TestPrometheusRuleRefused: values the schema or the template must refuse.
func TestPrometheusRuleRefused(t *testing.T) {
	for _, c := range []struct{ values, want string }{
		{"prometheusRule: {enabled: true, alerts: {keyStale: {for: 2 minutes}}}", "/prometheusRule/alerts/keyStale/for"},
		{"prometheusRule: {enabled: true, alerts: {keyStale: {for: 1.5m}}}", "/prometheusRule/alerts/keyStale/for"},
		{"prometheusRule: {enabled: true, alerts: {keyStale: {intervals: 0}}}", "/prometheusRule/alerts/keyStale/intervals"},
		{"prometheusRule: {enabled: true, alerts: {redisErrors: {threshold: -1}}}", "/prometheusRule/alerts/redisErrors/threshold"},
		{"prometheusRule: {enabled: true, alerts: {unknownAlert: {enabled: true}}}", "unknownAlert"},
		{"prometheusRule: {enabled: true, selector: '{job=\"x\"}'}", "/prometheusRule/selector"},
		{"prometheusRule: {enabled: true, runbookBaseUrl: 'docs/operations.md'}", "/prometheusRule/runbookBaseUrl"},
		{"prometheusRule: {enabled: true, additionalRules: [{alert: X}]}", "/prometheusRule/additionalRules/0"},
		{"prometheusRule: {enabled: true, interval: 30}", "/prometheusRule/interval"},
	} {
		_, err := render(t, oneKey, c.values)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("values %s: want an error naming %q, got %v", c.values, c.want, err)
		}
	}
	_, err := render(t, oneKey, "mode: cronjob\n"+rulesOn)
	if err == nil || !strings.Contains(err.Error(), "prometheusRule.enabled applies to mode deployment only") {
		t.Errorf("cronjob mode with a PrometheusRule: %v", err)
	}
}

// TestPrometheusRuleLint: helm lint --strict passes with the rule (and the dashboard) on.
func TestPrometheusRuleLint(t *testing.T) {
	lintValues(t, valuesFile(t, "podmonitor.yaml"), rulesOn, dashboardsOn)
}

// TestRunbooks: every alert's runbook_url names a section of docs/operations.md, and every alert
// section there belongs to an alert the chart defines.
func TestRunbooks(t *testing.T) {
	anchors := markdownAnchors(t, operationsDoc)
	alerts := alertsOf(t, ruleOf(t, mustRender(t, valuesFile(t, "default.yaml"), rulesOn)))
	for name, a := range alerts {
		_, anchor, _ := strings.Cut(a.Annotations["runbook_url"], "#")
		if !anchors[anchor] {
			t.Errorf("%s: %s has no section with the anchor #%s", name, operationsDoc, anchor)
		}
	}
	for anchor := range anchors {
		if !strings.HasPrefix(anchor, "statsigpopulator") {
			continue
		}
		found := false
		for name := range alerts {
			found = found || strings.ToLower(name) == anchor
		}
		if !found {
			t.Errorf("%s has a runbook #%s for an alert the chart does not define", operationsDoc, anchor)
		}
	}
}

// markdownAnchors lists the anchors GitHub gives the headings of a Markdown file.
func markdownAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		out[githubSlug(strings.TrimLeft(line, "# "))] = true
	}
	return out
}

// githubSlug is GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens.
func githubSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestPrometheusRuleMatchesWorker: every rule expression parses with Prometheus' own PromQL
// parser, and every metric and label name it uses is one a real worker emits.
func TestPrometheusRuleMatchesWorker(t *testing.T) {
	sc := workerScrape(t)
	alerts := alertsOf(t, ruleOf(t, mustRender(t, valuesFile(t, "default.yaml"), rulesOn)))
	for name, a := range alerts {
		expr, err := promql.ParseExpr(a.Expr.StrVal)
		if err != nil {
			t.Errorf("%s: %v\n%s", name, err, a.Expr.StrVal)
			continue
		}
		for _, problem := range sc.check(expr) {
			t.Errorf("%s: %s", name, problem)
		}
	}
}

// ---- PromQL helpers, shared with the dashboard tests.

var promql = parser.NewParser(parser.Options{})

func vectorSelectors(e parser.Node) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel {
			return m.Value
		}
	}
	return ""
}

func hasMatcher(vs *parser.VectorSelector, name, value string) bool {
	for _, m := range vs.LabelMatchers {
		if m.Name == name && m.Value == value {
			return true
		}
	}
	return false
}

// selects tells whether every matcher of vs on these labels accepts the given values.
func selects(vs *parser.VectorSelector, lbls map[string]string) bool {
	for name, value := range lbls {
		matched := false
		for _, m := range vs.LabelMatchers {
			if m.Name == name {
				if !m.Matches(value) {
					return false
				}
				matched = true
			}
		}
		if !matched {
			return false
		}
	}
	return true
}

// ---- A real scrape of the worker.

// targetLabels are the labels Prometheus itself adds to every series of a Kubernetes target
// (the Prometheus Operator's monitors add namespace and pod); they are in no scrape.
var targetLabels = map[string]bool{"job": true, "namespace": true, "pod": true, "instance": true, model.MetricNameLabel: true}

// prometheusSeries are series Prometheus makes for every target, which therefore are in no scrape
// of the worker: `up` (1 when the scrape succeeded). Only target labels are on them.
var prometheusSeries = map[string]bool{"up": true}

// scrape maps each series name of one /metrics answer (histograms and summaries expanded into
// their _bucket, _sum and _count series) to the label names it carries.
type scrape map[string]map[string]bool

// check lists the metric and label names of expr that the scrape does not have.
func (sc scrape) check(expr parser.Expr) []string {
	var problems []string
	labelsOf := func(n parser.Node) map[string]bool {
		out := map[string]bool{}
		for _, vs := range vectorSelectors(n) {
			for l := range sc[metricName(vs)] {
				out[l] = true
			}
		}
		return out
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := metricName(n)
			lbls, emitted := sc[name]
			switch {
			case name == "":
				problems = append(problems, fmt.Sprintf("%s has no metric name", n))
				return nil
			case prometheusSeries[name]:
				lbls = map[string]bool{}
			case !emitted:
				problems = append(problems, fmt.Sprintf("metric %s is not in the worker's /metrics", name))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if !lbls[m.Name] && !targetLabels[m.Name] {
					problems = append(problems, fmt.Sprintf("%s: %s has no label %q", n, name, m.Name))
				}
			}
		case *parser.AggregateExpr:
			have := labelsOf(n.Expr)
			for _, l := range n.Grouping {
				if !have[l] && !targetLabels[l] {
					problems = append(problems, fmt.Sprintf("%s: no series under it has the label %q", n.Op, l))
				}
			}
		case *parser.BinaryExpr:
			if n.VectorMatching == nil {
				return nil
			}
			have := labelsOf(n)
			for _, l := range append(slices.Clone(n.VectorMatching.MatchingLabels), n.VectorMatching.Include...) {
				if !have[l] && !targetLabels[l] {
					problems = append(problems, fmt.Sprintf("%s: vector matching on %q, which no side has", n.Op, l))
				}
			}
		}
		return nil
	})
	return problems
}

var (
	scrapeOnce   sync.Once
	theScrape    scrape
	theScrapeErr error
)

// workerScrape builds the worker from this repository, runs it against a real redis-server and a
// fake CDN until its /metrics holds every series the dashboard and the rules use (or 30 s have
// passed, which the tests then report name by name), and returns that scrape. It runs once per
// test binary.
func workerScrape(t *testing.T) scrape {
	t.Helper()
	if _, err := os.Stat("../../cmd/populator"); err != nil {
		t.Skipf("the worker's source is not beside the chart (%v)", err)
	}
	want := usedSeries(t) // outside Do: a failure here fails this test, not the Once
	scrapeOnce.Do(func() { theScrape, theScrapeErr = runWorkerAndScrape(want) })
	if theScrapeErr != nil {
		t.Fatal(theScrapeErr)
	}
	return theScrape
}

// usedSeries lists the metric names the dashboard and the rules select, so that the worker can be
// run until they have all appeared: counters with labels appear only after their first event.
func usedSeries(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	add := func(expr string) {
		e, err := promql.ParseExpr(expr)
		if err != nil {
			return // the tests report it
		}
		for _, vs := range vectorSelectors(e) {
			if n := metricName(vs); n != "" && !prometheusSeries[n] {
				out[n] = true
			}
		}
	}
	r := mustRender(t, valuesFile(t, "default.yaml"), rulesOn)
	for _, a := range alertsOf(t, ruleOf(t, r)) {
		add(a.Expr.StrVal)
	}
	for _, q := range dashboardQueries(t, loadDashboardFile(t)) {
		if expr, err := grafanaToPromQL(q.Expr); err == nil {
			add(expr)
		}
	}
	return out
}

// The SDK keys the fake CDN knows. Their first 20 characters differ (the prefix schema).
const (
	keyGood     = "secret-chartsGood0123456789abcdef" // full payload, then one config change, then "no updates"
	keyRevoked  = "secret-chartsRevoked0123456789abc" // 401: keys_unauthorized, fetches_total{outcome="unauthorized"}
	keyFlaky    = "secret-chartsFlaky0123456789abcde" // valid once, then not JSON: invalid_payloads_total, keys_failing
	keyMismatch = "secret-chartsMismatch0123456789ab" // x-since-time header differs from the body: lcut_header_mismatch_total
)

// fakeCDN answers /v1|v2/download_config_specs/<key>.json the way the worker's faults need.
type fakeCDN struct {
	mu      sync.Mutex
	lcut    map[string]int64 // key/version → the payload's time
	changed map[string]bool  // key/version → its one config change has been served
}

var (
	dcsPath      = regexp.MustCompile(`^/(v1|v2)/download_config_specs/([A-Za-z0-9_-]+)\.json$`)
	idListsPath  = regexp.MustCompile(`^/v1/get_id_lists/([A-Za-z0-9_-]+)\.json$`)
	idListFile   = "+charts0001\n+charts0002\n" // the one ID list, held by keyGood
	idListFileID = "charts-list-file-1"
)

func (f *fakeCDN) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m := idListsPath.FindStringSubmatch(r.URL.Path); m != nil {
		f.serveIDLists(w, r, m[1])
		return
	}
	if r.URL.Path == "/id_list_files/"+idListFileID {
		serveIDListFile(w, r)
		return
	}
	m := dcsPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		http.NotFound(w, r)
		return
	}
	version, key := m[1], m[2]
	since, _ := strconv.ParseInt(r.URL.Query().Get("sinceTime"), 10, 64)

	f.mu.Lock()
	id := key + "/" + version
	lcut, ok := f.lcut[id]
	if !ok {
		lcut = time.Now().Add(-time.Hour).UnixMilli()
		f.lcut[id] = lcut
	}
	if key == keyGood && since > 0 && !f.changed[id] {
		// A change found by a conditional poll: what propagation_delay_seconds measures.
		f.changed[id] = true
		lcut = time.Now().Add(-200 * time.Millisecond).UnixMilli()
		f.lcut[id] = lcut
	}
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	switch {
	case key == keyRevoked:
		http.Error(w, `{"message":"invalid key"}`, http.StatusUnauthorized)
		return
	case key == keyFlaky && since > 0:
		_, _ = io.WriteString(w, "<html>not a payload</html>")
		return
	case since >= lcut:
		_, _ = io.WriteString(w, `{"has_updates":false}`)
		return
	case key == keyMismatch:
		w.Header().Set("x-since-time", strconv.FormatInt(lcut+1000, 10))
	}
	if version == "v1" {
		fmt.Fprintf(w, `{"has_updates":true,"time":%d,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, lcut)
		return
	}
	fmt.Fprintf(w, `{"has_updates":true,"time":%d,"checksum":"%d","feature_gates":{},"dynamic_configs":{},"layer_configs":{},"condition_map":{},"experiment_to_layer":{}}`, lcut, lcut)
}

// serveIDLists answers a key's ID-list manifest: one list for keyGood (so that downloads and
// writes happen), none for the others, 401 for keyRevoked.
func (f *fakeCDN) serveIDLists(w http.ResponseWriter, r *http.Request, key string) {
	w.Header().Set("Content-Type", "application/json")
	switch key {
	case keyRevoked:
		http.Error(w, `{"message":"invalid key"}`, http.StatusUnauthorized)
	case keyGood:
		fmt.Fprintf(w, `{"chartsList":{"name":"chartsList","size":%d,"url":"http://%s/id_list_files/%s","creationTime":%d,"fileID":%q}}`,
			len(idListFile), r.Host, idListFileID, time.Now().Add(-time.Hour).UnixMilli(), idListFileID)
	default:
		_, _ = io.WriteString(w, `{}`)
	}
}

// serveIDListFile answers the list file, honouring "Range: bytes=N-" as the CDN does.
func serveIDListFile(w http.ResponseWriter, r *http.Request) {
	from := 0
	if rng, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
		from, _ = strconv.Atoi(strings.TrimSuffix(rng, "-"))
	}
	switch {
	case from >= len(idListFile):
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(idListFile)))
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
	case from > 0:
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(idListFile)-1, len(idListFile)))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, idListFile[from:])
	default:
		_, _ = io.WriteString(w, idListFile)
	}
}

func runWorkerAndScrape(want map[string]bool) (scrape, error) {
	dir, err := os.MkdirTemp("", "chart-metrics-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// The worker, built from this checkout by the root module's own go.mod.
	bin := filepath.Join(dir, "populator")
	build := exec.Command(goTool(), "build", "-o", bin, "./cmd/populator")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the worker: %v\n%s", err, out)
	}

	redisPort, stopRedis, err := startRedis(dir)
	if err != nil {
		return nil, err
	}
	defer stopRedis()

	cdn := httptest.NewServer(&fakeCDN{lcut: map[string]int64{}, changed: map[string]bool{}})
	defer cdn.Close()

	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	worker := exec.Command(bin, "run")
	// A clean environment: no proxy or Redis variable of the machine may reach the worker.
	worker.Env = []string{
		"STATSIG_SERVER_SDK_KEYS=" + strings.Join([]string{keyGood, keyRevoked, keyFlaky, keyMismatch}, ","),
		"STATSIG_API_URL=" + cdn.URL,
		"REDIS_URL=redis://127.0.0.1:" + strconv.Itoa(redisPort) + "/0",
		"ADMIN_ADDR=" + adminAddr,
		"POLL_INTERVAL=300ms",
		"ID_LISTS_POLL_INTERVAL=300ms", // ID lists hold readiness back until their first sync
		"METRICS_PER_KEY=true",
		"LOG_LEVEL=warn",
	}
	logFile, err := os.Create(filepath.Join(dir, "worker.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	worker.Stdout, worker.Stderr = logFile, logFile
	worker.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := worker.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = worker.Process.Kill(); _ = worker.Wait() }()
	workerLog := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }

	client := &http.Client{Timeout: 2 * time.Second}
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + adminAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Ready first: every key the CDN does not refuse is current in Redis.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get("/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the worker did not become ready within 30 s: /readyz %d %s\nworker log:\n%s", code, body, workerLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Then until every used series is there: the faults above produce them within a few polls.
	var sc scrape
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, body := get("/metrics")
		if code != http.StatusOK {
			return nil, fmt.Errorf("/metrics answered %d: %s", code, body)
		}
		if sc, err = parseScrape(body); err != nil {
			return nil, err
		}
		missing := 0
		for name := range want {
			if sc[name] == nil {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return sc, nil // what is still missing is reported by the tests, name by name
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// parseScrape reads /metrics with Prometheus' own text parser.
func parseScrape(body string) (scrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %v", err)
	}
	sc := scrape{}
	add := func(name string, extra string, m *dto.Metric) {
		if sc[name] == nil {
			sc[name] = map[string]bool{}
		}
		for _, lp := range m.GetLabel() {
			sc[name][lp.GetName()] = true
		}
		if extra != "" {
			sc[name][extra] = true
		}
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", "le", m)
				add(name+"_sum", "", m)
				add(name+"_count", "", m)
			case dto.MetricType_SUMMARY:
				add(name, "quantile", m)
				add(name+"_sum", "", m)
				add(name+"_count", "", m)
			default:
				add(name, "", m)
			}
		}
	}
	return sc, nil
}

// startRedis runs a redis-server of its own on a free port (never 6379), without persistence.
func startRedis(dir string) (int, func(), error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return 0, nil, fmt.Errorf("redis-server not found on PATH (install it: apt-get install -y redis-server); the chart tests scrape a real worker: %v", err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return 0, nil, err
		}
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--protected-mode", "no", "--daemonize", "no")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return 0, nil, err
		}
		stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
		if lastErr = waitRedis(port, 5*time.Second); lastErr == nil {
			return port, stop, nil
		}
		stop() // the port was taken in between, most likely: another one
	}
	return 0, nil, fmt.Errorf("starting redis-server: %v", lastErr)
}

// waitRedis waits until the server answers PING.
func waitRedis(port int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Second))
			if _, err := io.WriteString(c, "PING\r\n"); err != nil {
				return err
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return err
			}
			if line != "+PONG\r\n" {
				return fmt.Errorf("PING answered %q", line)
			}
			return nil
		}()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freeAddr() (string, error) {
	p, err := freePort()
	return "127.0.0.1:" + strconv.Itoa(p), err
}

// goTool is the go command that runs these tests.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// prometheusTemplateFuncs are the names Prometheus adds to Go's templates for alert annotations
// (enough to parse them; the bodies are never run).
var prometheusTemplateFuncs = func() template.FuncMap {
	m := template.FuncMap{}
	for _, n := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp",
		"toTime", "toDuration", "title", "toUpper", "toLower", "stripPort", "stripDomain", "query", "first", "label",
		"value", "strvalue", "args", "tmpl", "safeHtml", "match", "reReplaceAll", "graphLink", "tableLink", "sortByLabel",
		"externalURL", "pathPrefix", "parseDuration", "now"} {
		m[n] = func(...any) any { return nil }
	}
	return m
}()
