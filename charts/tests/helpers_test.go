// Package tests checks the statsig-populator Helm chart with Helm's own Go packages (the code
// behind `helm template` and `helm lint`), so no helm binary is needed.
//
//	go test ./...            from charts/tests (or charts/test.sh)
//	go test ./... -update    rewrites the golden files and the README values table
package tests

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files and the README values table")

const (
	chartDir    = "../statsig-populator"
	valuesDir   = "testdata/values"
	goldenDir   = "testdata/golden"
	releaseName = "pop"
	namespace   = "statsig"
)

// The SDK keys and passwords used by the test values. None of them may appear anywhere in a
// rendered manifest except base64-encoded in the chart's Secret.
var secretsInTestValues = []string{
	"secret-testKeyOne0123456789abcdefghij",
	"secret-testKeyTwo0123456789abcdefghij",
	"secret-existingNotInValues",
	"redis-pass-Zq9",
	"sentinel-pass-Xw7",
}

var (
	chartOnce sync.Once
	theChart  *chart.Chart
	chartErr  error
)

// loadChart loads the chart from disk once per test binary. Callers get a fresh copy of the
// values so that renders never share state.
func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	chartOnce.Do(func() { theChart, chartErr = loader.Load(chartDir) })
	if chartErr != nil {
		t.Fatalf("load chart: %v", chartErr)
	}
	return theChart
}

// valuesFile reads one of testdata/values/*.yaml.
func valuesFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(valuesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// valuesFiles lists testdata/values/*.yaml.
func valuesFiles(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(valuesDir, "*.yaml"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no values files in %s: %v", valuesDir, err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// parseValues reads values the way `helm -f` does (numbers become float64, as in real use).
func parseValues(t *testing.T, docs ...string) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, d := range docs {
		v, err := chartutil.ReadValues([]byte(d))
		if err != nil {
			t.Fatalf("values do not parse: %v\n%s", err, d)
		}
		out = chartutil.CoalesceTables(v.AsMap(), out) // later documents win, like repeated -f
	}
	return out
}

// object is one rendered Kubernetes object.
type object struct {
	Source string         // template path, e.g. statsig-populator/templates/deployment.yaml
	Doc    string         // the YAML text
	U      map[string]any // the parsed object
	Kind   string
	Name   string
	Hook   bool
}

// rendering is the output of `helm template` for one set of values.
type rendering struct {
	Text    string // exactly what `helm template` prints
	Notes   string
	Objects []object
}

// render runs what `helm template pop ../statsig-populator -n statsig -f <values>` runs.
func render(t *testing.T, values ...string) (*rendering, error) {
	t.Helper()
	ch := loadChart(t)
	vals := parseValues(t, values...)

	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.DryRun = true
	inst.ClientOnly = true
	inst.Replace = true
	inst.ReleaseName = releaseName
	inst.Namespace = namespace
	inst.IncludeCRDs = true
	rel, err := inst.Run(ch, vals)
	if err != nil {
		return nil, err
	}

	var text strings.Builder
	text.WriteString(rel.Manifest)
	hooks := rel.Hooks
	sort.SliceStable(hooks, func(i, j int) bool { return hooks[i].Path < hooks[j].Path })
	for _, h := range hooks {
		fmt.Fprintf(&text, "---\n# Source: %s\n%s\n", h.Path, h.Manifest)
	}
	r := &rendering{Text: text.String(), Notes: rel.Info.Notes}
	r.Objects = append(r.Objects, splitDocs(t, rel.Manifest)...)
	for _, h := range hooks {
		for _, o := range splitDocs(t, "# Source: "+h.Path+"\n"+h.Manifest) {
			o.Hook = true
			r.Objects = append(r.Objects, o)
		}
	}
	return r, nil
}

// mustRender renders and fails the test on an error.
func mustRender(t *testing.T, values ...string) *rendering {
	t.Helper()
	r, err := render(t, values...)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return r
}

var sourceLine = regexp.MustCompile(`^# Source: (.+)$`)

func splitDocs(t *testing.T, manifest string) []object {
	t.Helper()
	var out []object
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(manifest, -1) {
		doc = strings.TrimSpace(doc)
		if doc == "" {
			continue
		}
		o := object{Doc: doc}
		first, _, _ := strings.Cut(doc, "\n")
		if m := sourceLine.FindStringSubmatch(first); m != nil {
			o.Source = m[1]
		}
		if err := yaml.Unmarshal([]byte(doc), &o.U); err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		if o.U == nil {
			continue
		}
		o.Kind, _ = o.U["kind"].(string)
		o.Name, _ = dig(o.U, "metadata", "name").(string)
		out = append(out, o)
	}
	return out
}

// kinds lists the kinds rendered, sorted, hooks marked with a "hook:" prefix.
func (r *rendering) kinds() []string {
	var k []string
	for _, o := range r.Objects {
		if o.Hook {
			k = append(k, "hook:"+o.Kind)
		} else {
			k = append(k, o.Kind)
		}
	}
	sort.Strings(k)
	return k
}

// one returns the only object of a kind (hooks excluded), failing the test otherwise.
func (r *rendering) one(t *testing.T, kind string) object {
	t.Helper()
	var found []object
	for _, o := range r.Objects {
		if o.Kind == kind && !o.Hook {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, got %d (kinds: %v)", kind, len(found), r.kinds())
	}
	return found[0]
}

// has tells whether a kind (hooks excluded) was rendered.
func (r *rendering) has(kind string) bool {
	for _, o := range r.Objects {
		if o.Kind == kind && !o.Hook {
			return true
		}
	}
	return false
}

// dig walks maps and lists: dig(m, "spec", "containers", 0, "name").
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// strictDecoder decodes YAML into typed Kubernetes objects and rejects unknown or duplicate
// fields: a misspelt field in a template fails the tests instead of being dropped by the API
// server.
var strictDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Yaml: true, Strict: true})
}()

// typed decodes an object strictly into its Go type.
func typed(t *testing.T, o object) runtime.Object {
	t.Helper()
	obj, _, err := strictDecoder.Decode([]byte(o.Doc), nil, nil)
	if err != nil {
		t.Fatalf("%s %s (%s) does not decode strictly: %v", o.Kind, o.Name, o.Source, err)
	}
	return obj
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./... -update` to create it)", err)
	}
	if !bytes.Equal(want, []byte(got)) {
		t.Errorf("%s differs from the rendering; if the change is intended run `go test ./... -update` and review the diff.\n%s",
			path, lineDiff(string(want), got))
	}
}

// lineDiff shows the first differing lines of two texts.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want: %q\n  got:  %q\n", i+1, wl, gl)
			if shown++; shown == 10 {
				b.WriteString("  …\n")
				break
			}
		}
	}
	return b.String()
}
