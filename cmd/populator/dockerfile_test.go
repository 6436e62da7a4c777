package main

import (
	"bufio"
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// dockerfile is the repository's Dockerfile split into what the tests need:
// the build stage's COPY sources and RUN commands, and the runtime stage's
// instructions.
type dockerfile struct {
	buildCopies []string          // sources of the build stage's COPY lines
	buildRuns   []string          // the build stage's RUN commands
	buildArgs   map[string]string // ARG defaults of the build stage
	runtime     []string          // every line of the last stage, FROM included
}

func parseDockerfile(t *testing.T, name string) dockerfile {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := dockerfile{buildArgs: map[string]string{}}
	stage := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		switch instr := strings.ToUpper(fields[0]); {
		case instr == "FROM":
			stage++
			d.runtime = nil
		case stage == 1 && instr == "COPY" && !strings.HasPrefix(fields[1], "--from"):
			d.buildCopies = append(d.buildCopies, fields[1:len(fields)-1]...)
		case stage == 1 && instr == "RUN":
			d.buildRuns = append(d.buildRuns, strings.TrimSpace(strings.TrimPrefix(line, fields[0])))
		case stage == 1 && instr == "ARG":
			name, def, _ := strings.Cut(fields[1], "=")
			d.buildArgs[name] = def
		}
		d.runtime = append(d.runtime, line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if stage != 2 {
		t.Fatalf("Dockerfile has %d stages, want 2 (build, runtime)", stage)
	}
	return d
}

// dockerignored reports whether rel (slash-separated, relative to the build
// context) is excluded by .dockerignore, as Docker decides it.
func dockerignored(ignore *patternmatcher.PatternMatcher, rel string) bool {
	excluded, err := ignore.MatchesOrParentMatches(rel)
	return err == nil && excluded
}

// readDockerignore is the repository's .dockerignore as Docker reads it.
func readDockerignore(t *testing.T, name string) *patternmatcher.PatternMatcher {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

// TestDockerfileBuildStage rebuilds what the image's build stage builds, from
// only what the build stage copies (minus .dockerignore), with its own RUN
// command, and checks the result is the static, version-stamped binary that a
// distroless image can run. No Docker engine is needed: this catches a
// package the COPY lines miss, an ignore rule that drops a needed file, and a
// build that is not static.
func TestDockerfileBuildStage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the worker")
	}
	root := filepath.Join("..", "..")
	d := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	ignore := readDockerignore(t, filepath.Join(root, ".dockerignore"))

	// The build context as Docker sends it, then the COPY lines applied to it.
	ctxDir := t.TempDir()
	for _, src := range d.buildCopies {
		if dockerignored(ignore, src) {
			t.Errorf("COPY %s: excluded by .dockerignore", src)
			continue
		}
		err := filepath.WalkDir(filepath.Join(root, src), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if dockerignored(ignore, filepath.ToSlash(rel)) {
				if e.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			dst := filepath.Join(ctxDir, rel)
			if e.IsDir() {
				return os.MkdirAll(dst, 0o755)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, b, 0o644)
		})
		if err != nil {
			t.Fatalf("COPY %s: %v", src, err)
		}
	}

	var built bool
	for _, run := range d.buildRuns {
		if !strings.Contains(run, "make build") {
			continue // go mod download: the module cache stands in for it
		}
		built = true
		run = strings.ReplaceAll(run, "${VERSION}", "docker-check")
		cmd := exec.Command("sh", "-c", run)
		cmd.Dir = ctxDir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build stage RUN %s: %v\n%s", run, err, out)
		}
	}
	if !built {
		t.Fatal("the build stage has no RUN make build")
	}

	bin := filepath.Join(ctxDir, "bin", "populator")
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("bin/populator has an ELF interpreter: it is not static and cannot run on distroless/static")
		}
	}
	if out, err := exec.Command(bin, "version").Output(); err != nil || strings.TrimSpace(string(out)) != "populator docker-check" {
		t.Errorf("bin/populator version = %q, %v; want the version stamped by the build", out, err)
	}

	// The runtime stage: distroless static, a non-root user, exec-form
	// entry point and health check (there is no shell to run a string).
	rt := strings.Join(d.runtime, "\n")
	for _, want := range []string{
		"FROM gcr.io/distroless/static",
		"COPY --from=build /src/bin/populator /populator",
		`ENTRYPOINT ["/populator"]`,
		`CMD ["/populator", "healthcheck"]`,
	} {
		if !strings.Contains(rt, want) {
			t.Errorf("runtime stage lacks %q", want)
		}
	}
	for _, l := range d.runtime {
		if f := strings.Fields(l); strings.ToUpper(f[0]) == "USER" && (f[1] == "0" || strings.HasPrefix(f[1], "root") || strings.HasPrefix(f[1], "0:")) {
			t.Errorf("runtime stage runs as root: %s", l)
		}
	}
	if !strings.Contains(rt, "\nUSER ") {
		t.Error("runtime stage sets no USER")
	}
}

func TestDockerignored(t *testing.T) {
	patterns, err := patternmatcher.New([]string{".git", "bench", "**/node_modules", "**/*.test"})
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{
		".git":                   true,
		".git/config":            true,
		"bench/cmd/x.go":         true,
		"pkg/bench/x.go":         false, // "bench" without **/ matches only at the root
		"compat/node_modules/a":  true,
		"node_modules":           true,
		"cmd/populator/x.test":   true,
		"cmd/populator/main.go":  false,
		"pkg/keys/keys_test.go":  false,
		"internal/e2e/e2e.go":    false,
		"pkg/testdata/a.test.go": false,
	} {
		if got := dockerignored(patterns, rel); got != want {
			t.Errorf("dockerignored(%q) = %v, want %v", rel, got, want)
		}
	}
}
