package main

import (
	"bufio"
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// dockerfile is the repository's Dockerfile split into what the tests need:
// the build stage's COPY sources and RUN commands, and the runtime stage's
// instructions.
type dockerfile struct {
	froms       []string          // every FROM line, in order
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
			d.froms = append(d.froms, line)
			d.runtime = nil
		case stage == 1 && instr == "COPY" && !strings.HasPrefix(fields[1], "--from"):
			d.buildCopies = append(d.buildCopies, fields[1:len(fields)-1]...)
		case stage == 1 && instr == "RUN":
			d.buildRuns = append(d.buildRuns, strings.TrimSpace(strings.TrimPrefix(line, fields[0])))
		case stage == 1 && instr == "ARG":
			for _, f := range fields[1:] { // ARG A B=x declares both
				name, def, _ := strings.Cut(f, "=")
				d.buildArgs[name] = def
			}
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

	// The image's own platform first: its binary must run here. BuildKit sets
	// TARGETOS and TARGETARCH from --platform; this is what it would pass for
	// an image of this machine's architecture.
	bin := runBuildStage(t, d, ctxDir, "linux", runtime.GOARCH)
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("bin/populator has an ELF interpreter: it is not static and cannot run on distroless/static")
		}
	}
	ef.Close()
	if out, err := exec.Command(bin, "version").Output(); err != nil || strings.TrimSpace(string(out)) != "populator docker-check" {
		t.Errorf("bin/populator version = %q, %v; want the version stamped by the build", out, err)
	}

	// Then the other architecture of `docker buildx build --platform
	// linux/amd64,linux/arm64`: the build stage runs on the build platform,
	// so only TARGETOS/TARGETARCH reaching `go build` makes an arm64 image
	// hold an arm64 binary (and the reverse).
	other, wantMachine := "arm64", elf.EM_AARCH64
	if runtime.GOARCH == "arm64" {
		other, wantMachine = "amd64", elf.EM_X86_64
	}
	bin = runBuildStage(t, d, ctxDir, "linux", other)
	ef, err = elf.Open(bin)
	if err != nil {
		t.Fatalf("TARGETARCH=%s: %v", other, err)
	}
	if ef.Machine != wantMachine {
		t.Errorf("TARGETOS=linux TARGETARCH=%s built a %v binary, want %v: the build stage ignores the target platform", other, ef.Machine, wantMachine)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the linux/%s binary has an ELF interpreter: it is not static", other)
		}
	}
	ef.Close()

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

// runBuildStage runs the build stage's `make build` RUN line in ctxDir as
// BuildKit would for the target platform targetOS/targetArch, and returns
// the path of the binary it made.
func runBuildStage(t *testing.T, d dockerfile, ctxDir, targetOS, targetArch string) string {
	t.Helper()
	var built bool
	for _, run := range d.buildRuns {
		if !strings.Contains(run, "make build") {
			continue // go mod download: the module cache stands in for it
		}
		built = true
		run = strings.ReplaceAll(run, "${VERSION}", "docker-check")
		cmd := exec.Command("sh", "-c", run)
		cmd.Dir = ctxDir
		// The ARGs reach RUN as environment variables, as in a Docker build.
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "TARGETOS="+targetOS, "TARGETARCH="+targetArch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build stage RUN %s (TARGETOS=%s TARGETARCH=%s): %v\n%s", run, targetOS, targetArch, err, out)
		}
	}
	if !built {
		t.Fatal("the build stage has no RUN make build")
	}
	return filepath.Join(ctxDir, "bin", "populator")
}

// pinnedImage is an image reference with a tag, for the reader and for
// `docker buildx imagetools inspect`, and the sha256 digest that decides.
var pinnedImage = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*@sha256:[0-9a-f]{64}$`)

// TestDockerfileMultiPlatform checks, without building, what `docker buildx
// build --platform linux/amd64,linux/arm64` relies on: a build stage on the
// build platform that cross-compiles for TARGETOS/TARGETARCH, a runtime stage
// of the target platform, and base images pinned by digest.
func TestDockerfileMultiPlatform(t *testing.T) {
	d := parseDockerfile(t, filepath.Join("..", "..", "Dockerfile"))

	for i, from := range d.froms {
		var image string
		var platform string
		for _, f := range strings.Fields(from)[1:] {
			if p, ok := strings.CutPrefix(f, "--platform="); ok {
				platform = p
				continue
			}
			image = f
			break
		}
		if !pinnedImage.MatchString(image) {
			t.Errorf("%s: the image is not pinned as name:tag@sha256:<64 hex digits>", from)
		}
		switch {
		case i == 0 && platform != "$BUILDPLATFORM" && platform != "${BUILDPLATFORM}":
			t.Errorf("%s: the build stage must run on the build platform (FROM --platform=$BUILDPLATFORM) and cross-compile; without it an arm64 image is built under emulation", from)
		case i == len(d.froms)-1 && platform != "":
			t.Errorf("%s: the runtime stage must be the target platform's image, not --platform=%s", from, platform)
		}
	}

	for _, arg := range []string{"TARGETOS", "TARGETARCH"} {
		def, ok := d.buildArgs[arg]
		if !ok {
			t.Errorf("the build stage does not declare ARG %s: BuildKit's value would not reach RUN", arg)
		} else if def != "" {
			t.Errorf("ARG %s=%s: a default would stand in for BuildKit's value under builders that do not set it, and build the wrong platform", arg, def)
		}
	}
	var run string
	for _, r := range d.buildRuns {
		if strings.Contains(r, "make build") {
			run = r
		}
	}
	goos := regexp.MustCompile(`(^|\s)GOOS=(\$TARGETOS|\$\{TARGETOS\})\s`)
	goarch := regexp.MustCompile(`(^|\s)GOARCH=(\$TARGETARCH|\$\{TARGETARCH\})\s`)
	if !goos.MatchString(run) || !goarch.MatchString(run) {
		t.Errorf("RUN %s: want GOOS=$TARGETOS GOARCH=$TARGETARCH passed to make build", run)
	}
}

func TestPinnedImage(t *testing.T) {
	digest := strings.Repeat("0123456789abcdef", 4)
	for ref, want := range map[string]bool{
		"golang:1.26-bookworm@sha256:" + digest:                      true,
		"gcr.io/distroless/static-debian12:nonroot@sha256:" + digest: true,
		"golang:1.26-bookworm":                                       false,
		"golang@sha256:" + digest:                                    false, // no tag to update from
		"golang:1.26-bookworm@sha256:" + digest[:63]:                 false,
		"golang:1.26-bookworm@sha256:" + strings.ToUpper(digest):     false,
		"golang:1.26-bookworm@sha512:" + digest + digest:             false,
		"golang:1.26-bookworm@sha256:" + digest + " AS build":        false,
	} {
		if got := pinnedImage.MatchString(ref); got != want {
			t.Errorf("pinnedImage(%q) = %v, want %v", ref, got, want)
		}
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
