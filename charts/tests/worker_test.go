package tests

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"sort"
	"strconv"
	"testing"
)

// workerConfigFile holds the worker's environment variables (the Env struct with envconfig tags).
const workerConfigFile = "../../pkg/config/config.go"

// The variables that carry secrets: the chart passes them only as *_FILE.
var secretVars = map[string]bool{"STATSIG_SERVER_SDK_KEYS": true, "REDIS_PASSWORD": true, "REDIS_SENTINEL_PASSWORD": true}

// Standard variables the Go HTTP client reads, not part of the worker's Env struct.
var standardVars = map[string]bool{"HTTPS_PROXY": true, "NO_PROXY": true}

type workerVar struct {
	name       string
	def        string
	hasDefault bool
}

// workerVars reads the Env struct of the worker's config package from source, so that the chart
// tests notice a new variable or a changed default without importing the worker's module.
func workerVars(t *testing.T) []workerVar {
	t.Helper()
	if _, err := os.Stat(workerConfigFile); err != nil {
		t.Skipf("the worker's source is not beside the chart (%v)", err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), workerConfigFile, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []workerVar
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Env" {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return false
		}
		for _, field := range st.Fields.List {
			if field.Tag == nil {
				continue
			}
			raw, err := strconv.Unquote(field.Tag.Value)
			if err != nil {
				t.Fatal(err)
			}
			tag := reflect.StructTag(raw)
			name := tag.Get("envconfig")
			if name == "" {
				continue
			}
			def, has := tag.Lookup("default")
			out = append(out, workerVar{name, def, has})
		}
		return false
	})
	if len(out) < 10 {
		t.Fatalf("found only %d variables in %s: has the Env struct moved?", len(out), workerConfigFile)
	}
	return out
}

// TestWorkerDefaults: with default values the chart passes every variable that has a worker
// default, with exactly that default.
func TestWorkerDefaults(t *testing.T) {
	env := configOf(t, mustRender(t, valuesFile(t, "default.yaml")))
	for _, v := range workerVars(t) {
		if !v.hasDefault || v.def == "" {
			continue
		}
		got, ok := env[v.name]
		switch {
		case !ok:
			t.Errorf("%s (worker default %q) is not in the default ConfigMap", v.name, v.def)
		case got != v.def:
			t.Errorf("%s: chart default %q, worker default %q", v.name, got, v.def)
		}
	}
}

// TestEveryWorkerVariableReachable: every variable of the worker can be set through values (the
// secret ones through their *_FILE variant), and the chart sets no variable the worker does not
// know.
func TestEveryWorkerVariableReachable(t *testing.T) {
	known := map[string]bool{}
	for _, v := range workerVars(t) {
		known[v.name] = true
	}
	seen := map[string]bool{}
	for name, vals := range allCombinations(t) {
		env := configOf(t, mustRender(t, vals...))
		for k := range env {
			seen[k] = true
			if !known[k] && !standardVars[k] {
				t.Errorf("%s: the chart sets %s, which the worker does not read", name, k)
			}
		}
	}
	var missing []string
	for k := range known {
		want := k
		if secretVars[k] {
			want = k + "_FILE"
		}
		if !seen[want] {
			missing = append(missing, want)
		}
	}
	for k := range standardVars {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("no values combination in the tests sets %v: add the setting to values.yaml (and a test values file)", missing)
	}
}
