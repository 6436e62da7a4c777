package compat

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The adapters in docs/adapters.md are the files this suite runs: each code
// block announced by a line "<!-- compat/<file> -->" must equal that file byte
// for byte, and every adapter file must be shown.
func TestDocsShowTheTestedAdapters(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "adapters.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	lines := strings.SplitAfter(string(doc), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, "<!-- compat/") || !strings.HasSuffix(line, " -->") {
			continue
		}
		file := strings.TrimSuffix(strings.TrimPrefix(line, "<!-- "), " -->")
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			t.Errorf("docs/adapters.md line %d: %q is not followed by a code block", i+1, line)
			continue
		}
		var b strings.Builder
		j := i + 2
		for ; j < len(lines) && strings.TrimRight(lines[j], "\n") != "```"; j++ {
			b.WriteString(lines[j])
		}
		if j == len(lines) {
			t.Errorf("docs/adapters.md line %d: the code block for %s is not closed", i+2, file)
		}
		if _, dup := blocks[file]; dup {
			t.Errorf("docs/adapters.md shows %s twice", file)
		}
		blocks[file] = b.String()
		i = j
	}

	adapters, err := filepath.Glob(filepath.Join("adapters", "*.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	goAdapters, _ := filepath.Glob(filepath.Join("adapters", "*", "*.go"))
	adapters = append(adapters, goAdapters...)
	if len(adapters) < 4 {
		t.Fatalf("found only %d adapter files: %q", len(adapters), adapters)
	}
	for _, f := range adapters {
		name := "compat/" + filepath.ToSlash(f)
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := blocks[name]
		switch {
		case !ok:
			t.Errorf("docs/adapters.md does not show %s (add a line <!-- %s --> before a code block with it)", name, name)
		case got != string(want):
			t.Errorf("docs/adapters.md shows a different %s than the file:\n%s", name, firstDiff(got, string(want)))
		}
		delete(blocks, name)
	}
	for name := range blocks {
		t.Errorf("docs/adapters.md shows %s, which is not an adapter file of the suite", name)
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		gl, wl := "<end>", "<end>"
		if i < len(g) {
			gl = strconv.Quote(g[i])
		}
		if i < len(w) {
			wl = strconv.Quote(w[i])
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n  doc:  %s\n  file: %s", i+1, gl, wl)
		}
	}
	return "(no line differs)"
}
