// Package benchkit holds the small helpers every benchmark program under
// bench/ shares: a free port, waiting for a condition, the median, and a
// description of the machine the numbers were taken on.
package benchkit

import (
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FreePort is a TCP port on 127.0.0.1 nothing listens on now.
func FreePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitUntil polls cond every 20 ms for at most limit; it reports whether
// cond became true.
func WaitUntil(limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// Median of xs (0 for none); xs is not changed.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Machine describes this machine: date, Go, CPUs, CPU model, memory, kernel,
// the commit, and the first line of `<tool> --version` for each tool.
func Machine(tools ...string) map[string]string {
	out := map[string]string{"date": time.Now().UTC().Format("2006-01-02 15:04 UTC"), "go": runtime.Version(), "nproc": strconv.Itoa(runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				out["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if line, _, ok := strings.Cut(string(b), "\n"); ok {
			if f := strings.Fields(line); len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				out["memory"] = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		out["kernel"] = strings.TrimSpace(string(b))
	}
	version := func(name string, argv ...string) {
		if b, err := exec.Command(argv[0], argv[1:]...).Output(); err == nil {
			out[name] = strings.SplitN(strings.TrimSpace(string(b)), "\n", 2)[0]
		}
	}
	version("commit", "git", "rev-parse", "--short", "HEAD")
	for _, tool := range tools {
		name := tool
		if tool == "redis-server" {
			name = "redis"
		}
		version(name, tool, "--version")
	}
	return out
}
