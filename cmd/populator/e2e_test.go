package main

// End-to-end tests: the real binary, as a separate process, against a real
// redis-server and the fake CDN.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func TestMain(m *testing.M) { e2e.Main(m) }

var (
	keyA, keyB = e2e.KeyA, e2e.KeyB
	env        = e2e.Env
	newStack   = e2e.NewStack
	start      = e2e.Start
	waitFor    = e2e.WaitFor
)

const redisPassword = "pw-Zq8s7TgXk2"

func TestWorkerEndToEnd(t *testing.T) {
	s := newStack(t, "--requirepass", redisPassword)
	ctx := context.Background()
	redisURL := fmt.Sprintf("redis://:%s@%s/0", redisPassword, s.Redis.Addr())
	p := start(t, append(s.BaseEnv(), "REDIS_URL="+redisURL))

	took := waitFor(t, "initial sync", 10*time.Second, s.AllCurrent)
	t.Logf("initial sync of 2 keys × 2 versions × 2 schemas: %v", took)

	s.CDN.Change(keyA, 1000)
	took = waitFor(t, "upstream change in Redis", 3*time.Second, func() bool { return s.Current(keyA) })
	t.Logf("change reached Redis in %v (interval 300ms)", took)

	if err := s.Redis.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, "restored after FLUSHALL", 600*time.Millisecond+time.Second, s.AllCurrent)
	t.Logf("FLUSHALL healed in %v", took)

	s.Redis.Restart()
	took = waitFor(t, "restored after a Redis restart", 3*time.Second, s.AllCurrent)
	t.Logf("Redis restart healed in %v", took)

	code, exitTook := p.Stop(t)
	if code != 0 || exitTook > 10*time.Second {
		t.Fatalf("SIGTERM: exit code %d after %v, want 0 within 10s", code, exitTook)
	}

	logs := p.Logs()
	for _, secret := range []string{keyA.Reveal(), keyB.Reveal(), redisPassword, "0123456789example"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret (%s…)", secret[:4])
		}
	}
	var sawWrite, sawKey bool
	for _, entry := range logEntries(t, logs) {
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

// logEntries decodes the worker's JSON log lines; a line that is not JSON is
// a test error.
func logEntries(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var entries []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		entries = append(entries, entry)
	}
	return entries
}

func TestSIGTERMDuringSlowFetches(t *testing.T) {
	s := newStack(t)
	s.CDN.SetFault(keys.SDKKey{}, fakecdn.Fault{Delay: time.Minute})
	p := start(t, s.BaseEnv("FETCH_TIMEOUT=1m"))
	waitFor(t, "requests in flight", 5*time.Second, func() bool { return len(s.CDN.Requests()) >= 4 })
	code, took := p.Stop(t)
	if code != 0 || took > 10*time.Second {
		t.Fatalf("exit code %d after %v, want 0 within 10s", code, took)
	}
	t.Logf("exited %v after SIGTERM with 4 fetches in flight", took)
}

func TestBadConfigExits2(t *testing.T) {
	cmd := exec.Command(e2e.Binary)
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
	cmd := exec.Command(e2e.Binary, "once")
	cmd.Env = s.BaseEnv()
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	err := cmd.Run()
	if err != nil || !s.AllCurrent() {
		t.Fatalf("once: %v, all current: %v\n%s", err, s.AllCurrent(), stdout.String())
	}
	if !strings.Contains(stdout.String(), "all 4 key/version pairs are current") {
		t.Errorf("stdout:\n%s", stdout.String())
	}

	// A revoked key makes once fail, and says which one.
	s.CDN.Revoke(keyB, 401)
	cmd = exec.Command(e2e.Binary, "once")
	cmd.Env = s.BaseEnv()
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

func TestGOMAXPROCS(t *testing.T) {
	// One scheduler thread unless GOMAXPROCS says otherwise (main.go says why).
	s := newStack(t)
	for _, c := range []struct {
		env  []string
		want float64
	}{{nil, 1}, {[]string{"GOMAXPROCS=3"}, 3}} {
		cmd := exec.Command(e2e.Binary, "once")
		cmd.Env = s.BaseEnv(c.env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("once %v: %v\n%s", c.env, err, stderr.String())
		}
		var got any
		for _, entry := range logEntries(t, stderr.String()) {
			if entry["message"] == "starting" {
				got = entry["gomaxprocs"]
			}
		}
		if got != c.want {
			t.Errorf("with %v the worker started with gomaxprocs %v, want %v\n%s", c.env, got, c.want, stderr.String())
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(e2e.Binary, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "populator v0.0.0-e2e" {
		t.Fatalf("version: %q %v", out, err)
	}
}

func TestKeysCommand(t *testing.T) {
	run := func(environ []string, args ...string) string {
		cmd := exec.Command(e2e.Binary, append([]string{"keys"}, args...)...)
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
	// Four config-spec rows, then (ID lists being on by default) a manifest
	// and a list row per schema.
	if len(rows) != 8 || rows[4]["key"] != "statsig|/v1/get_id_lists|plain_text|hLd8vCNmvjY0Hr+m4t8uZOMjbosunXfSY0Y41rKLnb0=" || rows[1]["key"] != "statsig|/v1/download_config_specs|plain_text|secret-harness-00001" ||
		rows[0]["key"] != "statsig|/v1/download_config_specs|plain_text|hLd8vCNmvjY0Hr+m4t8uZOMjbosunXfSY0Y41rKLnb0=" {
		t.Errorf("explicit key rows: %v", rows)
	}
}

func TestCheckCommand(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	check := func() (int, string) {
		cmd := exec.Command(e2e.Binary, "check")
		cmd.Env = s.BaseEnv("REDIS_FORMATS=sfp,node-redis")
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := check(); code != 1 || !strings.Contains(out, "missing") {
		t.Fatalf("check on an empty Redis: exit %d\n%s", code, out)
	}
	once := exec.Command(e2e.Binary, "once")
	once.Env = s.BaseEnv("REDIS_FORMATS=sfp,node-redis")
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
		{"garbage payload", func() { s.Redis.Client().HSet(ctx, sfpKey.Key, "config", "{not json") }, "not_json"},
		{"no-update body", func() { s.Redis.Client().HSet(ctx, sfpKey.Key, "config", `{"has_updates":false}`) }, "no updates"},
		{"lcut differs", func() { s.Redis.Client().HSet(ctx, sfpKey.Key, "lcut", "5") }, "differs from stored lcut"},
		{"statsig-br sibling", func() { s.Redis.Client().Set(ctx, sfpKey.BRSibling(), "x", 0) }, "statsig-br sibling"},
		{"deleted", func() { s.Redis.Client().Del(ctx, sfpKey.Key) }, "missing"},
	}
	for _, d := range damage {
		s.Redis.FlushAll()
		once := exec.Command(e2e.Binary, "once")
		once.Env = s.BaseEnv("REDIS_FORMATS=sfp,node-redis")
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
func writeCommands(t *testing.T, s *e2e.Stack) int {
	n := 0
	info := s.Redis.Client().Info(context.Background(), "commandstats").Val()
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
