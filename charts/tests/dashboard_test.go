package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/lint/support"
	corev1 "k8s.io/api/core/v1"
)

const (
	dashboardFile = "dashboards/statsig-populator.json" // in the chart
	dashboardKey  = "statsig-populator.json"            // the ConfigMap's key: the file name the sidecar writes
	dashboardsOn  = "dashboards: {enabled: true}\n"
)

// dashboardConfigMap is the ConfigMap the Grafana sidecar selects, or nil.
func dashboardConfigMap(t *testing.T, r *rendering) *corev1.ConfigMap {
	t.Helper()
	var found *corev1.ConfigMap
	for _, o := range r.Objects {
		if o.Kind != "ConfigMap" || o.Hook {
			continue
		}
		cm := typed(t, o).(*corev1.ConfigMap)
		if _, ok := cm.Labels["grafana_dashboard"]; !ok {
			continue
		}
		if found != nil {
			t.Fatalf("two dashboard ConfigMaps: %s and %s", found.Name, cm.Name)
		}
		found = cm
	}
	return found
}

func loadDashboardFile(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboardFile, err)
	}
	return d
}

func TestDashboardConfigMap(t *testing.T) {
	if cm := dashboardConfigMap(t, mustRender(t, valuesFile(t, "default.yaml"))); cm != nil {
		t.Errorf("a dashboard ConfigMap (%s) is rendered by default", cm.Name)
	}

	r := mustRender(t, valuesFile(t, "default.yaml"), dashboardsOn)
	cm := dashboardConfigMap(t, r)
	if cm == nil {
		t.Fatalf("dashboards.enabled renders no ConfigMap labelled grafana_dashboard (kinds %v)", r.kinds())
	}
	wantEqual(t, "name", cm.Name, "pop-statsig-populator-dashboard")
	wantEqual(t, "namespace", cm.Namespace, namespace)
	wantEqual(t, "sidecar label", cm.Labels["grafana_dashboard"], "1")
	wantEqual(t, "chart labels", cm.Labels["app.kubernetes.io/instance"], releaseName)
	file, err := os.ReadFile(filepath.Join(chartDir, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "data keys", keysOf(cm.Data), []string{dashboardKey})
	if strings.TrimSpace(cm.Data[dashboardKey]) != strings.TrimSpace(string(file)) {
		t.Errorf("the ConfigMap's %s is not %s byte for byte", dashboardKey, dashboardFile)
	}
	// A ConfigMap holds at most 1 MiB; the sidecar and kubectl apply's annotation want far less.
	if n := len(cm.Data[dashboardKey]); n > 256<<10 {
		t.Errorf("the dashboard is %d bytes: keep it under 256 KiB", n)
	}
	// The worker's own ConfigMap is still the only other one.
	wantEqual(t, "kinds", r.kinds(), []string{"ConfigMap", "ConfigMap", "Deployment", "Secret", "ServiceAccount", "hook:Pod"})

	r = mustRender(t, valuesFile(t, "default.yaml"), `
dashboards:
  enabled: true
  namespace: grafana
  labels: {grafana_dashboard: statsig, team: flags}
  annotations: {grafana_folder: Statsig}
fullnameOverride: `+strings.Repeat("x", 63))
	cm = dashboardConfigMap(t, r)
	wantEqual(t, "namespace override", cm.Namespace, "grafana")
	wantEqual(t, "label value override", cm.Labels["grafana_dashboard"], "statsig")
	wantEqual(t, "extra label", cm.Labels["team"], "flags")
	wantEqual(t, "folder annotation", cm.Annotations["grafana_folder"], "Statsig")
	if len(cm.Name) > 63 || !strings.HasSuffix(cm.Name, "-dashboard") {
		t.Errorf("name %q: want at most 63 characters ending in -dashboard", cm.Name)
	}

	_, err = render(t, oneKey, "mode: cronjob\n"+dashboardsOn)
	if err == nil || !strings.Contains(err.Error(), "dashboards.enabled applies to mode deployment only") {
		t.Errorf("cronjob mode with a dashboard: %v", err)
	}
	for _, c := range []struct{ values, want string }{
		{"dashboards: {enabled: yes-please}", "/dashboards/enabled"},
		{"dashboards: {enabled: true, labels: {a: 1}}", "/dashboards/labels/a"},
		{"dashboards: {enabled: true, folder: x}", "folder"},
		{"dashboards: {enabled: true, namespace: Not_A_Name}", "/dashboards/namespace"},
	} {
		if _, err := render(t, oneKey, c.values); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("values %s: want an error naming %q, got %v", c.values, c.want, err)
		}
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// lintValues runs helm lint --strict with the given values.
func lintValues(t *testing.T, values ...string) {
	t.Helper()
	l := action.NewLint()
	l.Strict = true
	l.Namespace = namespace
	res := l.Run([]string{chartDir}, parseValues(t, values...))
	for _, m := range res.Messages {
		if m.Severity == support.InfoSev && strings.Contains(m.Err.Error(), "icon is recommended") {
			continue
		}
		t.Errorf("lint: %s", m)
	}
	for _, e := range res.Errors {
		t.Errorf("lint error: %v", e)
	}
}

// panelsOf lists every panel, those inside collapsed rows included.
func panelsOf(d map[string]any) []map[string]any {
	var out []map[string]any
	var walk func(list any)
	walk = func(list any) {
		l, _ := list.([]any)
		for _, p := range l {
			pm, ok := p.(map[string]any)
			if !ok {
				continue
			}
			out = append(out, pm)
			walk(pm["panels"])
		}
	}
	walk(d["panels"])
	return out
}

// query is one PromQL query of the dashboard, with where it is.
type query struct {
	Where string
	Expr  string
}

// dashboardQueries lists every panel target's expression and every variable's label_values query.
func dashboardQueries(t *testing.T, d map[string]any) []query {
	t.Helper()
	var out []query
	for _, p := range panelsOf(d) {
		targets, _ := p["targets"].([]any)
		for _, tg := range targets {
			expr, _ := dig(tg, "expr").(string)
			ref, _ := dig(tg, "refId").(string)
			out = append(out, query{Where: fmt.Sprintf("panel %q target %s", p["title"], ref), Expr: expr})
		}
	}
	for _, v := range templateVars(d) {
		if v["type"] != "query" {
			continue
		}
		q, _ := dig(v, "query", "query").(string)
		if q == "" {
			q, _ = v["query"].(string)
		}
		out = append(out, query{Where: fmt.Sprintf("variable $%s", v["name"]), Expr: q})
	}
	return out
}

func templateVars(d map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := dig(d, "templating", "list").([]any)
	for _, v := range list {
		if vm, ok := v.(map[string]any); ok {
			out = append(out, vm)
		}
	}
	return out
}

// Plausible values for Grafana's variables, so that the queries can be parsed as PromQL.
var grafanaVarValues = map[string]string{
	"__rate_interval": "2m", "__interval": "1m", "__range": "6h",
	"namespace": "statsig", "job": "statsig/pop-statsig-populator", "pod": "pop-statsig-populator-7d9f8-abcde",
}

var (
	grafanaVarRE   = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))`)
	labelValuesRE  = regexp.MustCompile(`(?s)^\s*label_values\((.*),\s*(\w+)\s*\)\s*$`)
	errUnknownVars = errors.New("unknown Grafana variable")
)

// grafanaToPromQL substitutes the variables of a Grafana query, and turns a variable's
// label_values(selector, label) into the PromQL `group by (label) (selector)`, which uses the same
// metric and label names.
func grafanaToPromQL(q string) (string, error) {
	var unknown []string
	out := grafanaVarRE.ReplaceAllStringFunc(q, func(v string) string {
		m := grafanaVarRE.FindStringSubmatch(v)
		name := m[1] + m[2]
		val, ok := grafanaVarValues[name]
		if !ok {
			unknown = append(unknown, v)
		}
		return val
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("%w %v: add a plausible value to grafanaVarValues", errUnknownVars, unknown)
	}
	if m := labelValuesRE.FindStringSubmatch(out); m != nil {
		out = fmt.Sprintf("group by (%s) (%s)", m[2], m[1])
	}
	return out, nil
}

// TestDashboardShape: the things Grafana and the sidecar rely on.
func TestDashboardShape(t *testing.T) {
	d := loadDashboardFile(t)
	if d["uid"] != "statsig-populator" || d["title"] == "" {
		t.Errorf("uid %v, title %v", d["uid"], d["title"])
	}
	if d["id"] != nil {
		t.Errorf("a provisioned dashboard has no id, got %v", d["id"])
	}

	// Variables: a Prometheus data source, and namespace, job and pod to narrow every query.
	vars := map[string]map[string]any{}
	for _, v := range templateVars(d) {
		vars[v["name"].(string)] = v
	}
	if ds := vars["datasource"]; ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
		t.Errorf("want a datasource variable of type prometheus, got %v", ds)
	}
	for _, name := range []string{"namespace", "job", "pod"} {
		v := vars[name]
		if v == nil || v["type"] != "query" || dig(v, "datasource", "uid") != "${datasource}" {
			t.Errorf("want a query variable $%s on ${datasource}, got %v", name, v)
		}
	}

	ids := map[float64]string{}
	type box struct{ x, y, w, h float64 }
	var boxes []box
	var titles []string
	for _, p := range panelsOf(d) {
		title, _ := p["title"].(string)
		id, _ := p["id"].(float64)
		if prev, dup := ids[id]; dup || id == 0 {
			t.Errorf("panel %q: id %v missing or also used by %q", title, p["id"], prev)
		}
		ids[id] = title
		g := box{}
		g.x, _ = dig(p, "gridPos", "x").(float64)
		g.y, _ = dig(p, "gridPos", "y").(float64)
		g.w, _ = dig(p, "gridPos", "w").(float64)
		g.h, _ = dig(p, "gridPos", "h").(float64)
		if g.w <= 0 || g.h <= 0 || g.x+g.w > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", title, g)
		}
		for i, o := range boxes {
			if g.x < o.x+o.w && o.x < g.x+g.w && g.y < o.y+o.h && o.y < g.y+g.h {
				t.Errorf("panel %q overlaps panel %q", title, titles[i])
			}
		}
		boxes, titles = append(boxes, g), append(titles, title)
		if p["type"] == "row" {
			continue
		}
		if dig(p, "datasource", "uid") != "${datasource}" {
			t.Errorf("panel %q does not use the ${datasource} variable: %v", title, p["datasource"])
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q has no query", title)
		}
		for _, tg := range targets {
			if dig(tg, "datasource", "uid") != "${datasource}" {
				t.Errorf("panel %q: a target does not use ${datasource}", title)
			}
		}
	}
}

// TestDashboardMatchesWorker: every query of the dashboard parses with Prometheus' PromQL parser,
// every selector honours the namespace, job and pod variables, and every metric and label name is
// one a real worker emits. And the other way round: every statsig_populator_* series the worker
// emits has a panel.
func TestDashboardMatchesWorker(t *testing.T) {
	sc := workerScrape(t)
	d := loadDashboardFile(t)
	shown := map[string]bool{}
	for _, q := range dashboardQueries(t, d) {
		if strings.TrimSpace(q.Expr) == "" {
			t.Errorf("%s: empty query", q.Where)
			continue
		}
		promQL, err := grafanaToPromQL(q.Expr)
		if err != nil {
			t.Errorf("%s: %v", q.Where, err)
			continue
		}
		expr, err := promql.ParseExpr(promQL)
		if err != nil {
			t.Errorf("%s: %v\n%s", q.Where, err, promQL)
			continue
		}
		for _, problem := range sc.check(expr) {
			t.Errorf("%s: %s", q.Where, problem)
		}
		isVariable := strings.HasPrefix(q.Where, "variable")
		for _, vs := range vectorSelectors(expr) {
			shown[metricName(vs)] = true
			if isVariable {
				continue // the variables' own queries narrow by the variables before them only
			}
			if !selects(vs, map[string]string{"namespace": grafanaVarValues["namespace"], "job": grafanaVarValues["job"], "pod": grafanaVarValues["pod"]}) ||
				!strings.Contains(q.Expr, `namespace=~"$namespace"`) || !strings.Contains(q.Expr, `job=~"$job"`) || !strings.Contains(q.Expr, `pod=~"$pod"`) {
				t.Errorf("%s: %s does not narrow by $namespace, $job and $pod", q.Where, vs)
			}
		}
	}
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if !shown[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
	var missing []string
	for name := range sc {
		if !strings.HasPrefix(name, "statsig_populator_") || shown[name] {
			continue
		}
		// A histogram is shown when any of its series is.
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if shown[base+"_bucket"] || shown[base+"_sum"] || shown[base+"_count"] {
			continue
		}
		missing = append(missing, name)
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the worker emits %v, which no panel of %s shows", missing, dashboardFile)
	}
}
