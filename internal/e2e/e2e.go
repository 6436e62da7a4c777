// Package e2e runs the real worker binary as a separate process against a
// real redis-server and the fake CDN: the pieces the end-to-end and fault
// suites share.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Binary is the worker built by Main.
var Binary string

// Main builds the worker (with the race detector, unless E2E_NORACE=1, as the
// soak test uses for realistic figures) from the module's cmd/populator, runs
// the tests and exits. Call it from TestMain.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "populator-e2e")
	if err != nil {
		panic(err)
	}
	Binary = filepath.Join(dir, "populator")
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args := []string{"build", "-race", "-ldflags", "-X main.version=v0.0.0-e2e", "-o", Binary, "./cmd/populator"}
	if os.Getenv("E2E_NORACE") == "1" {
		args = append(args[:1], args[2:]...)
	}
	build := exec.Command("go", args...)
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the worker:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// Keys every stack serves: a long key and one of exactly 20 characters (its
// own prefix-schema id).
var (
	KeyA = keys.MustParse("secret-abc123XYZ0123456789example")
	KeyB = keys.MustParse("secret-harness-00001")
)

// Env is a minimal, explicit environment: nothing leaks in from the test's.
// A later entry for the same variable wins.
func Env(vars ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, vars...)
}

// Stack is a fake CDN serving KeyA and KeyB and a redis-server of the test's.
type Stack struct {
	T     testing.TB
	CDN   *fakecdn.Server
	URL   string
	Redis *redistest.Server
}

// NewStack starts the fake CDN and a redis-server with redisArgs.
func NewStack(t testing.TB, redisArgs ...string) *Stack {
	s := &Stack{T: t, CDN: fakecdn.New(), Redis: redistest.Start(t, redisArgs...)}
	srv := httptest.NewServer(s.CDN)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	s.CDN.SetProject(KeyA, fakecdn.Project{Lcut: 1700000000000, Value: 1})
	s.CDN.SetProject(KeyB, fakecdn.Project{Lcut: 1700000005000, Value: 1})
	return s
}

// BaseEnv configures a worker for this stack: both keys, a 300 ms interval, a
// free admin port. extra entries override.
func (s *Stack) BaseEnv(extra ...string) []string {
	return Env(append([]string{
		"STATSIG_SERVER_SDK_KEYS=" + KeyA.Reveal() + "," + KeyB.Reveal(),
		"STATSIG_API_URL=" + s.URL,
		"REDIS_URL=" + s.Redis.URL(),
		"POLL_INTERVAL=300ms",
		"FETCH_TIMEOUT=2s",
		"ADMIN_ADDR=" + FreeAddr(s.T),
	}, extra...)...)
}

// Body is the payload the CDN serves now for k and v.
func (s *Stack) Body(k keys.SDKKey, v keys.Version) string {
	p := s.CDN.Project(k)
	if v == keys.V2 {
		return string(fakecdn.V2Body(k, p))
	}
	return string(fakecdn.V1Body(k, p))
}

// Current reports whether every default target (sfp, both schemas, both
// versions) of k holds the CDN's current payload.
func (s *Stack) Current(k keys.SDKKey) bool {
	ctx := context.Background()
	for _, v := range []keys.Version{keys.V1, keys.V2} {
		want := s.Body(k, v)
		for _, tg := range keys.Targets("", k, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
			if s.Redis.Client().HGet(ctx, tg.Key, "config").Val() != want {
				return false
			}
		}
	}
	return true
}

// AllCurrent is Current for both keys.
func (s *Stack) AllCurrent() bool { return s.Current(KeyA) && s.Current(KeyB) }

// Proc is a running worker process.
type Proc struct {
	Cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan error
}

// Start runs the worker with environ and args; it is killed when the test ends.
func Start(t testing.TB, environ []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(Binary, args...), done: make(chan error, 1)}
	p.Cmd.Env = environ
	pipe, _ := p.Cmd.StderrPipe()
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.Write(sc.Bytes())
			p.stderr.WriteByte('\n')
			p.mu.Unlock()
		}
		p.done <- p.Cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		if t.Failed() {
			t.Logf("worker stderr:\n%s", p.Logs())
		}
	})
	return p
}

// Logs is everything the worker wrote to stderr so far.
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Stop sends SIGTERM and returns the exit code and how long the exit took.
func (p *Proc) Stop(t testing.TB) (int, time.Duration) {
	t.Helper()
	return p.Signal(t, syscall.SIGTERM)
}

// Signal sends sig and waits for the process to exit.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("worker did not exit within 15s of %v", sig)
	}
	return p.Cmd.ProcessState.ExitCode(), time.Since(start)
}

// WaitFor polls cond every 10 ms and returns how long it took to hold.
func WaitFor(t testing.TB, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	begin := time.Now()
	for !cond() {
		if time.Since(begin) > limit {
			t.Fatalf("%s: not true after %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(begin)
}

// AdminGet fetches an admin endpoint; code 0 means no answer.
func AdminGet(addr, path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Metrics scrapes the admin port once and returns every sample by its series
// name, labels included as exposed (`name{label="v"}`). One scrape per
// sample keeps the test's own load on the worker small.
func Metrics(addr string) map[string]float64 {
	_, body := AdminGet(addr, "/metrics")
	m := make(map[string]float64)
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				m[line[:i]] = v
			}
		}
	}
	return m
}

// FreeAddr is 127.0.0.1 and a free port.
func FreeAddr(t testing.TB) string { return "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) }
