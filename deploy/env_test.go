package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeVariables is every variable name in the first column of the README's configuration
// tables, parsed as cmd/populator/env_doc_test.go parses them (that test keeps those tables
// equal to what the worker reads, so a name found here is one the worker accepts).
func readmeVariables(t *testing.T) (documented map[string]bool, readme string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start, end := strings.Index(text, "## Configuration"), strings.Index(text, "## What is written to Redis")
	if start < 0 || end < start {
		t.Fatal("README has no Configuration section before 'What is written to Redis'")
	}
	documented = map[string]bool{}
	firstCell := regexp.MustCompile("(?m)^\\| ([^|]+) \\|")
	name := regexp.MustCompile("`([A-Z_]+)`")
	for _, cell := range firstCell.FindAllStringSubmatch(text[start:end], -1) {
		var last string
		for _, m := range name.FindAllStringSubmatch(cell[1], -1) {
			v := m[1]
			if v == "_FILE" { // "`REDIS_SENTINEL_PASSWORD` / `_FILE`"
				v = last + "_FILE"
			}
			documented[v], last = true, v
		}
	}
	if len(documented) < 30 {
		t.Fatalf("found only %d variables in the README: the tables were not parsed", len(documented))
	}
	return documented, text[start:end]
}

// envLine is a variable assignment in .env.example, set or commented out ("# NAME=value"): a
// commented one is a name users are invited to uncomment, so it must be valid too.
var envLine = regexp.MustCompile(`^#?\s*([A-Za-z_][A-Za-z0-9_]*)=`)

// The proxy variables are Go's (net/http), not the worker's tables; the README's Configuration
// section names them in prose ("CDN requests honour …").
var goProxyVars = []string{"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"}

// TestEnvExampleVariables: every variable .env.example sets or offers is one the worker
// accepts, so a typo there cannot silently configure nothing.
func TestEnvExampleVariables(t *testing.T) {
	accepted, section := readmeVariables(t)
	for _, v := range goProxyVars {
		if strings.Contains(section, "`"+v+"`") {
			accepted[v] = true
		}
	}
	b, err := os.ReadFile(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	var set int
	for i, line := range strings.Split(string(b), "\n") {
		m := envLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		set++
		switch v := m[1]; {
		case !accepted[v]:
			t.Errorf(".env.example:%d: %s is not a variable the worker accepts (README.md, Configuration)", i+1, v)
		case v == "REDIS_URL" || v == keysFileVar || v == "ADMIN_ADDR" || v == keysVar:
			t.Errorf(".env.example:%d: %s is set by docker-compose.yml (or must not be set at all): a value here would be ignored or leak keys", i+1, v)
		}
	}
	if set == 0 {
		t.Fatal(".env.example assigns no variable: the pattern no longer matches its lines")
	}
}

func TestEnvLine(t *testing.T) {
	for line, want := range map[string]string{
		"LOG_LEVEL=info":          "LOG_LEVEL",
		"# REDIS_KEY_TTL=0":       "REDIS_KEY_TTL",
		"#HTTPS_PROXY=":           "HTTPS_PROXY",
		"# console: readable":     "",
		"# a comment with a = in": "",
		"":                        "",
	} {
		got := ""
		if m := envLine.FindStringSubmatch(line); m != nil {
			got = m[1]
		}
		if got != want {
			t.Errorf("envLine(%q) = %q, want %q", line, got, want)
		}
	}
}
