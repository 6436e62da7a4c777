package tests

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"debug/macho"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
)

const releaseScript = "../../scripts/release.sh"

// TestRelease runs scripts/release.sh into a temporary directory and checks what a user
// downloads: one static, version-stamped binary per platform, of that platform; SHA256SUMS
// covering every file; and a chart package that Helm loads, with the worker version as its
// appVersion. Cross-compiling four binaries takes a while on a cold build cache: skipped
// with -short.
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the worker for four platforms")
	}
	const version = "0.0.0-reltest"
	dist := t.TempDir()
	cmd := exec.Command("bash", releaseScript, version)
	cmd.Env = append(os.Environ(), "DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release.sh %s: %v\n%s", version, err, out)
	}

	src, err := loader.LoadDir(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	chartFile := "statsig-populator-" + src.Metadata.Version + ".tgz"

	platforms := []struct {
		goos, goarch string
		elf          elf.Machine // for linux
		macho        macho.Cpu   // for darwin
	}{
		{"linux", "amd64", elf.EM_X86_64, 0},
		{"linux", "arm64", elf.EM_AARCH64, 0},
		{"darwin", "amd64", 0, macho.CpuAmd64},
		{"darwin", "arm64", 0, macho.CpuArm64},
	}
	want := []string{chartFile, "SHA256SUMS"}
	for _, p := range platforms {
		name := "populator_" + version + "_" + p.goos + "_" + p.goarch
		want = append(want, name)
		path := filepath.Join(dist, name)
		t.Run(p.goos+"_"+p.goarch, func(t *testing.T) {
			// The header says which OS and CPU the binary is for, whatever its name says.
			switch p.goos {
			case "linux":
				f, err := elf.Open(path)
				if err != nil {
					t.Fatalf("%s is not an ELF binary: %v", name, err)
				}
				defer f.Close()
				if f.Machine != p.elf {
					t.Errorf("%s: ELF machine %v, want %v", name, f.Machine, p.elf)
				}
				for _, prog := range f.Progs {
					if prog.Type == elf.PT_INTERP {
						t.Errorf("%s has an ELF interpreter: it is not static", name)
					}
				}
			case "darwin":
				f, err := macho.Open(path)
				if err != nil {
					t.Fatalf("%s is not a Mach-O binary: %v", name, err)
				}
				defer f.Close()
				if f.Cpu != p.macho {
					t.Errorf("%s: Mach-O CPU %v, want %v", name, f.Cpu, p.macho)
				}
			}

			// The build settings Go records: the same static, trimmed, stamped build as `make build`.
			info, err := buildinfo.ReadFile(path)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			for key, value := range map[string]string{
				"GOOS":        p.goos,
				"GOARCH":      p.goarch,
				"CGO_ENABLED": "0",
				"-trimpath":   "true",
			} {
				if settings[key] != value {
					t.Errorf("%s: build setting %s=%q, want %q", name, key, settings[key], value)
				}
			}
			// -trimpath keeps -ldflags out of the build info, so look for the stamped string
			// itself (the binary this machine runs is asked for it below).
			if b, err := os.ReadFile(path); err != nil || !bytes.Contains(b, []byte(version)) {
				t.Errorf("%s does not hold the version string %q: not stamped (%v)", name, version, err)
			}
			if info.Path != "github.com/statsig-populator/statsig-populator/cmd/populator" {
				t.Errorf("%s is %s, want the worker", name, info.Path)
			}

			// The one this machine can run must print the version it was given.
			if p.goos == runtime.GOOS && p.goarch == runtime.GOARCH {
				out, err := exec.Command(path, "version").Output()
				if err != nil || strings.TrimSpace(string(out)) != "populator "+version {
					t.Errorf("%s version = %q, %v; want %q", name, out, err, "populator "+version)
				}
			}
		})
	}

	// Nothing else in the directory, and SHA256SUMS covers every file but itself.
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("release files:\n got %v\nwant %v", got, want)
	}
	sums := readSHA256SUMS(t, filepath.Join(dist, "SHA256SUMS"))
	for _, name := range want {
		if name == "SHA256SUMS" {
			continue
		}
		sum, ok := sums[name]
		if !ok {
			t.Errorf("SHA256SUMS does not list %s", name)
			continue
		}
		if actual := fileSHA256(t, filepath.Join(dist, name)); actual != sum {
			t.Errorf("SHA256SUMS: %s is %s, the file's digest is %s", name, sum, actual)
		}
		delete(sums, name)
	}
	for name := range sums {
		t.Errorf("SHA256SUMS lists %s, which is not a file of the release", name)
	}

	// The chart package loads as Helm loads a downloaded chart, and is this chart with the
	// worker's version as its appVersion (the default image tag).
	ch, err := loader.Load(filepath.Join(dist, chartFile))
	if err != nil {
		t.Fatalf("%s: %v", chartFile, err)
	}
	if ch.Name() != "statsig-populator" || ch.Metadata.Version != src.Metadata.Version {
		t.Errorf("%s holds %s %s, want statsig-populator %s", chartFile, ch.Name(), ch.Metadata.Version, src.Metadata.Version)
	}
	if ch.Metadata.AppVersion != version {
		t.Errorf("%s: appVersion %q, want the release version %q", chartFile, ch.Metadata.AppVersion, version)
	}
	if len(ch.Templates) != len(src.Templates) || len(ch.Templates) == 0 {
		t.Errorf("%s has %d templates, the chart directory %d", chartFile, len(ch.Templates), len(src.Templates))
	}
	if ch.Schema == nil {
		t.Errorf("%s lacks values.schema.json", chartFile)
	}
}

// TestReleaseRefusesBadVersions: the version becomes file names, a linker flag and an image
// tag, so the script refuses anything an image tag could not be, before building anything.
func TestReleaseRefusesBadVersions(t *testing.T) {
	for _, args := range [][]string{
		{},
		{""},
		{"1.0/../../x"},
		{"1.0 2"},
		{"-1.0"},
		{"1.0+build"},
		{"1.0", "extra"},
	} {
		dist := t.TempDir()
		cmd := exec.Command("bash", append([]string{releaseScript}, args...)...)
		cmd.Env = append(os.Environ(), "DIST="+dist)
		out, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); err == nil || code != 2 {
			t.Errorf("release.sh %q: exit %d (%v), want 2\n%s", args, code, err, out)
		}
		if entries, _ := os.ReadDir(dist); len(entries) > 0 {
			t.Errorf("release.sh %q wrote %d files before refusing", args, len(entries))
		}
	}
}

var sumLine = regexp.MustCompile(`^([0-9a-f]{64}) [ *](\S+)$`)

// readSHA256SUMS parses sha256sum's output format: the hex digest, a space, a space (text mode)
// or '*' (binary mode), and the file name.
func readSHA256SUMS(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := sumLine.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Errorf("SHA256SUMS: %q is not a sha256sum line", sc.Text())
			continue
		}
		if _, dup := sums[m[2]]; dup {
			t.Errorf("SHA256SUMS lists %s twice", m[2])
		}
		sums[m[2]] = m[1]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sums
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
