package main

// End-to-end tests: the real binary, as a separate process, against a real
// redis-server and the fake CDN.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "populator-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "populator")
	build := exec.Command("go", "build", "-race", "-ldflags", "-X main.version=v0.0.0-e2e", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binary:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	keyA = keys.MustParse("secret-abc123XYZ0123456789example")
	keyB = keys.MustParse("secret-harness-00001")
)

const redisPassword = "pw-Zq8s7TgXk2"

// env is a minimal, explicit environment: nothing leaks in from the test's.
func env(vars ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, vars...)
}

type stack struct {
	t     *testing.T
	cdn   *fakecdn.Server
	url   string
	redis *redistest.Server
}

func newStack(t *testing.T, redisArgs ...string) *stack {
	s := &stack{t: t, cdn: fakecdn.New(), redis: redistest.Start(t, redisArgs...)}
	srv := httptest.NewServer(s.cdn)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	s.cdn.SetProject(keyA, fakecdn.Project{Lcut: 1700000000000, Value: 1})
	s.cdn.SetProject(keyB, fakecdn.Project{Lcut: 1700000005000, Value: 1})
	return s
}

func (s *stack) baseEnv(extra ...string) []string {
	return env(append([]string{
		"STATSIG_SERVER_SDK_KEYS=" + keyA.Reveal() + "," + keyB.Reveal(),
		"STATSIG_API_URL=" + s.url,
		"REDIS_URL=" + s.redis.URL(),
		"POLL_INTERVAL=300ms",
		"FETCH_TIMEOUT=2s",
		"ADMIN_ADDR=127.0.0.1:" + strconv.Itoa(redistest.FreePort(s.t)),
	}, extra...)...)
}

// current reports whether every default target of k holds the CDN's payload.
func (s *stack) current(k keys.SDKKey) bool {
	ctx := context.Background()
	p := s.cdn.Project(k)
	for _, v := range []keys.Version{keys.V1, keys.V2} {
		want := string(fakecdn.V1Body(k, p))
		if v == keys.V2 {
			want = string(fakecdn.V2Body(k, p))
		}
		for _, tg := range keys.Targets("", k, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
			if s.redis.Client().HGet(ctx, tg.Key, "config").Val() != want {
				return false
			}
		}
	}
	return true
}

func (s *stack) allCurrent() bool { return s.current(keyA) && s.current(keyB) }

// proc is a running worker process.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan error
}

func start(t *testing.T, environ []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary, args...), done: make(chan error, 1)}
	p.cmd.Env = environ
	pipe, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
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
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("worker stderr:\n%s", p.logs())
		}
	})
	return p
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// stop sends SIGTERM and returns the exit code and how long the exit took.
func (p *proc) stop(t *testing.T) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("worker did not exit within 15s of SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(start)
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
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

func TestWorkerEndToEnd(t *testing.T) {
	s := newStack(t, "--requirepass", redisPassword)
	ctx := context.Background()
	redisURL := fmt.Sprintf("redis://:%s@%s/0", redisPassword, s.redis.Addr())
	p := start(t, append(s.baseEnv(), "REDIS_URL="+redisURL))

	took := waitFor(t, "initial sync", 10*time.Second, s.allCurrent)
	t.Logf("initial sync of 2 keys × 2 versions × 2 schemas: %v", took)

	s.cdn.Change(keyA, 1000)
	took = waitFor(t, "upstream change in Redis", 3*time.Second, func() bool { return s.current(keyA) })
	t.Logf("change reached Redis in %v (interval 300ms)", took)

	if err := s.redis.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, "restored after FLUSHALL", 600*time.Millisecond+time.Second, s.allCurrent)
	t.Logf("FLUSHALL healed in %v", took)

	s.redis.Restart()
	took = waitFor(t, "restored after a Redis restart", 3*time.Second, s.allCurrent)
	t.Logf("Redis restart healed in %v", took)

	code, exitTook := p.stop(t)
	if code != 0 || exitTook > 10*time.Second {
		t.Fatalf("SIGTERM: exit code %d after %v, want 0 within 10s", code, exitTook)
	}

	logs := p.logs()
	for _, secret := range []string{keyA.Reveal(), keyB.Reveal(), redisPassword, "0123456789example"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret (%s…)", secret[:4])
		}
	}
	var sawWrite, sawKey bool
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		if entry["message"] == "payload written" {
			sawWrite = true
		}
		if entry["sdk_key"] == keyA.Redacted() {
			sawKey = true
		}
	}
	if !sawWrite || !sawKey {
		t.Errorf("logs lack a 'payload written' line naming %s", keyA.Redacted())
	}
}

func TestSIGTERMDuringSlowFetches(t *testing.T) {
	s := newStack(t)
	s.cdn.SetFault(keys.SDKKey{}, fakecdn.Fault{Delay: time.Minute})
	p := start(t, s.baseEnv("FETCH_TIMEOUT=1m"))
	waitFor(t, "requests in flight", 5*time.Second, func() bool { return len(s.cdn.Requests()) >= 4 })
	code, took := p.stop(t)
	if code != 0 || took > 10*time.Second {
		t.Fatalf("exit code %d after %v, want 0 within 10s", code, took)
	}
	t.Logf("exited %v after SIGTERM with 4 fetches in flight", took)
}

func TestBadConfigExits2(t *testing.T) {
	cmd := exec.Command(binary)
	cmd.Env = env(
		"STATSIG_SERVER_SDK_KEYS=client-Kq3JdLw9zXcVbN, secret-ok-but-fine, console-Pp9Yh2Tt6Rr1",
		"STATSIG_API_URL=not a url",
		"POLL_INTERVAL=fast",
		"REDIS_URL=redis://admin:"+redisPassword+"@[::1",
		"REDIS_KEY_SCHEMAS=djb2",
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("exit code %d (%v), want 2", cmd.ProcessState.ExitCode(), err)
	}
	out := stderr.String()
	for _, want := range []string{"6 problems", "STATSIG_SERVER_SDK_KEYS", "client key", "console API key", "STATSIG_API_URL",
		"POLL_INTERVAL", "REDIS_URL", "REDIS_KEY_SCHEMAS"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"Kq3JdLw9zXcVbN", "Pp9Yh2Tt6Rr1", redisPassword, "goroutine", "panic"} {
		if strings.Contains(out, secret) {
			t.Errorf("stderr contains %q:\n%s", secret, out)
		}
	}
}

func TestOnce(t *testing.T) {
	s := newStack(t)
	cmd := exec.Command(binary, "once")
	cmd.Env = s.baseEnv()
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	err := cmd.Run()
	if err != nil || !s.allCurrent() {
		t.Fatalf("once: %v, all current: %v\n%s", err, s.allCurrent(), stdout.String())
	}
	if !strings.Contains(stdout.String(), "all 4 key/version pairs are current") {
		t.Errorf("stdout:\n%s", stdout.String())
	}

	// A revoked key makes once fail, and says which one.
	s.cdn.Revoke(keyB, 401)
	cmd = exec.Command(binary, "once")
	cmd.Env = s.baseEnv()
	stdout.Reset()
	cmd.Stdout = &stdout
	_ = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("once with a revoked key: exit %d, want 1\n%s", code, stdout.String())
	}
	if !strings.Contains(stdout.String(), keyB.Redacted()) || !strings.Contains(stdout.String(), "unauthorized") ||
		strings.Contains(stdout.String(), keyB.Reveal()) {
		t.Errorf("stdout does not name the revoked key (redacted):\n%s", stdout.String())
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "populator v0.0.0-e2e" {
		t.Fatalf("version: %q %v", out, err)
	}
}

func TestKeysCommand(t *testing.T) {
	run := func(environ []string, args ...string) string {
		cmd := exec.Command(binary, append([]string{"keys"}, args...)...)
		cmd.Env = environ
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("keys %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	configured := run(env("STATSIG_SERVER_SDK_KEYS="+keyA.Reveal(), "REDIS_FORMATS=sfp,node-redis", "REDIS_KEY_PREFIX=team-a:"))
	for _, want := range []string{
		keyA.Redacted(),
		"team-a:statsig|/v2/download_config_specs|plain_text|DTAAZ4lexssiyUagx9aS5cly2FLf0wud0zKZT2l1qPM=",
		"team-a:statsig|/v1/download_config_specs|plain_text|DTAAZ4lexssiyUagx9aS5cly2FLf0wud0zKZT2l1qPM=",
		"team-a:statsig-redis",
		"team-a:statsig|/v2/download_config_specs|statsig-br|DTAAZ4lexssiyUagx9aS5cly2FLf0wud0zKZT2l1qPM=",
		"server-core SDKs, default key schema",
	} {
		if !strings.Contains(configured, want) {
			t.Errorf("keys output lacks %q:\n%s", want, configured)
		}
	}
	if strings.Contains(configured, "secret-abc123XYZ0123") {
		t.Errorf("keys output shows 20 characters of a configured key:\n%s", configured)
	}
	explicit := run(env(), "--sdk-key", keyB.Reveal(), "--json")
	var rows []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(explicit), "\n") {
		var r map[string]string
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		rows = append(rows, r)
	}
	if len(rows) != 4 || rows[1]["key"] != "statsig|/v1/download_config_specs|plain_text|secret-harness-00001" ||
		rows[0]["key"] != "statsig|/v1/download_config_specs|plain_text|hLd8vCNmvjY0Hr+m4t8uZOMjbosunXfSY0Y41rKLnb0=" {
		t.Errorf("explicit key rows: %v", rows)
	}
}

func TestCheckCommand(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	check := func() (int, string) {
		cmd := exec.Command(binary, "check")
		cmd.Env = s.baseEnv("REDIS_FORMATS=sfp,node-redis")
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := check(); code != 1 || !strings.Contains(out, "missing") {
		t.Fatalf("check on an empty Redis: exit %d\n%s", code, out)
	}
	once := exec.Command(binary, "once")
	once.Env = s.baseEnv("REDIS_FORMATS=sfp,node-redis")
	if out, err := once.CombinedOutput(); err != nil {
		t.Fatalf("once: %v\n%s", err, out)
	}
	writesBefore := writeCommands(t, s)
	code, out := check()
	if code != 0 || strings.Count(out, "\n") < 2*2*2*2 || !strings.Contains(out, "all 16 entries present and valid") {
		t.Fatalf("check after once: exit %d\n%s", code, out)
	}
	if w := writeCommands(t, s); w != writesBefore {
		t.Errorf("check ran %d write commands", w-writesBefore)
	}
	if strings.Contains(out, keyA.Reveal()) {
		t.Error("check output shows a full key")
	}

	// Each kind of damage is found.
	sfpKey := keys.Targets("", keyA, keys.V2, []keys.Schema{keys.Hashed})[0]
	damage := []struct {
		name string
		do   func()
		want string
	}{
		{"garbage payload", func() { s.redis.Client().HSet(ctx, sfpKey.Key, "config", "{not json") }, "not_json"},
		{"no-update body", func() { s.redis.Client().HSet(ctx, sfpKey.Key, "config", `{"has_updates":false}`) }, "no updates"},
		{"lcut differs", func() { s.redis.Client().HSet(ctx, sfpKey.Key, "lcut", "5") }, "differs from stored lcut"},
		{"statsig-br sibling", func() { s.redis.Client().Set(ctx, sfpKey.BRSibling, "x", 0) }, "statsig-br sibling"},
		{"deleted", func() { s.redis.Client().Del(ctx, sfpKey.Key) }, "missing"},
	}
	for _, d := range damage {
		s.redis.FlushAll()
		once := exec.Command(binary, "once")
		once.Env = s.baseEnv("REDIS_FORMATS=sfp,node-redis")
		if out, err := once.CombinedOutput(); err != nil {
			t.Fatalf("once: %v\n%s", err, out)
		}
		d.do()
		if code, out := check(); code != 1 || !strings.Contains(out, d.want) || !strings.Contains(out, "1 of 16 entries") {
			t.Errorf("%s: exit %d, want 1 and %q\n%s", d.name, code, d.want, out)
		}
	}
}

// writeCommands counts the write commands a Redis server has run.
func writeCommands(t *testing.T, s *stack) int {
	n := 0
	info := s.redis.Client().Info(context.Background(), "commandstats").Val()
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"evalsha", "eval", "hset", "hdel", "del", "set", "pexpire", "persist", "expire"} {
			if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
				var c int
				fmt.Sscanf(rest, "%d", &c)
				n += c
			}
		}
	}
	return n
}
