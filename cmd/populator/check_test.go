package main

// Tests of `populator check` (issue 11): an unreachable Redis, future lcuts,
// zlib bombs in the node-redis HASH, and key names in its output.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// manyKeys is a STATSIG_SERVER_SDK_KEYS value of n distinct keys, distinct
// in their first 20 characters too (the prefix schema's id).
func manyKeys(n int) string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("secret-%06dcheck%015d", i, i)
	}
	return strings.Join(ks, ",")
}

// goRedisRaw matches a line of go-redis's own default logger
// ("redis: 2026/12/01 12:00:00 pool.go:…"), which bypasses the worker's log.
var goRedisRaw = regexp.MustCompile(`(?m)^redis: \d{4}/\d{2}/\d{2} `)

// checkDown runs check with e2e.Start against a Redis that does not answer,
// and returns its exit code, its stderr and how long it took to say so.
func checkDown(t *testing.T, environ []string) (int, string, time.Duration) {
	t.Helper()
	p := e2e.Start(t, environ, "check")
	// The line is printed just before check returns; the SIGTERM Stop sends
	// afterwards cannot change an exit code already decided (check handles
	// the signal as a context cancellation, and its reads are over).
	took := e2e.WaitFor(t, "check to report Redis unreadable", 5*time.Second, func() bool {
		return strings.Contains(p.Logs(), "cannot be read")
	})
	// About a second with the race detector: go-redis's dial attempts, once.
	if took > 3*time.Second {
		t.Errorf("check took %v to give up, want well under 5s", took)
	}
	code, _ := p.Stop(t)
	return code, p.Logs(), took
}

// Issue 11, item 11: check against a Redis that is down took about a second
// per entry, printed go-redis's raw log lines and exited 1 like "missing".
func TestCheckRedisDown(t *testing.T) {
	const password = "pw-Check-Down-77aa"
	keysEnv := "STATSIG_SERVER_SDK_KEYS=" + manyKeys(200)
	// The config-spec entries alone: TestCheckIDLists covers ID lists.
	noIDLists := "STATSIG_ID_LISTS=false"

	t.Run("never started", func(t *testing.T) {
		addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
		code, logs, took := checkDown(t, e2e.Env(keysEnv, noIDLists, "REDIS_URL=redis://populator:"+password+"@"+addr+"/0"))
		t.Logf("exit %d after %v:\n%s", code, took, logs)
		if code != exitRedisUnavailable {
			t.Errorf("exit %d, want %d", code, exitRedisUnavailable)
		}
		lines := strings.Split(strings.TrimSpace(logs), "\n")
		want := "populator: Redis at redis://" + addr + "/0 cannot be read (0 of 800 entries checked): "
		if len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
			t.Errorf("stderr = %q, want one line starting %q", logs, want)
		}
		if goRedisRaw.MatchString(logs) || strings.Contains(logs, password) || strings.Contains(logs, "populator:"+password) {
			t.Errorf("stderr holds a raw go-redis line or the password:\n%s", logs)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		srv := redistest.Start(t, "--requirepass", "the-right-one")
		code, logs, _ := checkDown(t, e2e.Env(keysEnv, noIDLists, "REDIS_URL=redis://:"+password+"@"+srv.Addr()+"/0"))
		if code != exitRedisUnavailable || !strings.Contains(logs, "WRONGPASS") || strings.Contains(logs, password) ||
			strings.Count(strings.TrimSpace(logs), "\n") != 0 {
			t.Errorf("exit %d, want %d and one line naming WRONGPASS without the password:\n%s", code, exitRedisUnavailable, logs)
		}
	})

	t.Run("killed", func(t *testing.T) {
		srv := redistest.Start(t)
		// Alive and empty first: every entry is read, in chunks, and missing.
		cmd := exec.Command(e2e.Binary, "check")
		cmd.Env = e2e.Env(keysEnv, noIDLists, "REDIS_URL="+srv.URL())
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != exitFailure || strings.TrimSpace(stderr.String()) != "800 of 800 entries are missing or invalid" ||
			strings.Count(stdout.String(), "missing") != 800 {
			t.Fatalf("check on an empty Redis: exit %d\nstderr: %s", code, stderr.String())
		}
		srv.Kill()
		code, logs, took := checkDown(t, e2e.Env(keysEnv, noIDLists, "REDIS_URL="+srv.URL(), "LOG_FORMAT=console"))
		t.Logf("exit %d after %v:\n%s", code, took, logs)
		if code != exitRedisUnavailable || goRedisRaw.MatchString(logs) || strings.Count(strings.TrimSpace(logs), "\n") != 0 {
			t.Errorf("exit %d, want %d and one line of stderr:\n%s", code, exitRedisUnavailable, logs)
		}
	})
}

// checkJSON runs check --json and returns its exit code, rows and all output.
func checkJSON(t *testing.T, environ []string) (int, []checkRow, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2e.Binary, "check", "--json")
	cmd.Env = environ
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	var rows []checkRow
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var r checkRow
		if line != "" && json.Unmarshal([]byte(line), &r) == nil {
			rows = append(rows, r)
		}
	}
	return cmd.ProcessState.ExitCode(), rows, stdout.String() + stderr.String()
}

func runOnceOK(t *testing.T, environ []string) {
	t.Helper()
	once := exec.Command(e2e.Binary, "once")
	once.Env = environ
	if out, err := once.CombinedOutput(); err != nil {
		t.Fatalf("once: %v\n%s", err, out)
	}
}

// problems lists the rows that have one.
func problems(rows []checkRow) []checkRow {
	var out []checkRow
	for _, r := range rows {
		if !r.ok() {
			out = append(out, r)
		}
	}
	return out
}

// withTime is the CDN's current body for k and v with its "time" replaced.
func withTime(t *testing.T, s *e2e.Stack, k keys.SDKKey, v keys.Version, ms int64) string {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal([]byte(s.Body(k, v)), &body); err != nil {
		t.Fatal(err)
	}
	body["time"] = ms
	b, _ := json.Marshal(body)
	return string(b)
}

// Issue 11, item 2 (check side): a stored lcut or payload time more than
// MAX_CLOCK_SKEW ahead pins the key (every write compares lcuts), and check
// must say so.
func TestCheckFutureLcut(t *testing.T) {
	s := e2e.NewStack(t)
	ctx := context.Background()
	rdb := s.Redis.Client()
	base := s.BaseEnv("STATSIG_ID_LISTS=false") // config specs alone: TestCheckIDLists covers ID lists
	tg := keys.Targets("", keyA, keys.V2, []keys.Schema{keys.Hashed})[0]
	soon := time.Now().Add(30 * time.Minute).UnixMilli()
	cases := []struct {
		name    string
		env     []string
		do      func()
		want    string // "" when check passes
		wantAll bool
	}{
		{"year 2100", nil, func() { rdb.HSet(ctx, tg.Key, "lcut", "4102444800000") },
			"lcut 4102444800000 is 7", false},
		{"int64 max", nil, func() { rdb.HSet(ctx, tg.Key, "lcut", strconv.FormatInt(math.MaxInt64, 10)) },
			"lcut 9223372036854775807 is 292270", false}, // about 292 million years, less the years since 1970
		{"within the skew", nil, func() {
			rdb.HSet(ctx, tg.Key, "lcut", soon, "config", withTime(t, s, keyA, keys.V2, soon))
		}, "", true},
		{"past a smaller skew", []string{"MAX_CLOCK_SKEW=10m"}, func() {
			rdb.HSet(ctx, tg.Key, "lcut", soon, "config", withTime(t, s, keyA, keys.V2, soon))
		}, "lcut " + strconv.FormatInt(soon, 10) + " is ", false}, // about 30m: the clock moved on
		{"future payload time, lcut current", nil, func() {
			rdb.HSet(ctx, tg.Key, "config", withTime(t, s, keyA, keys.V2, 4102444800000))
		}, "payload time 4102444800000 is 7", false},
		{"future lcut over an invalid payload", nil, func() {
			rdb.HSet(ctx, tg.Key, "lcut", "4102444800000", "config", "{not json")
		}, "lcut 4102444800000 is 7", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.Redis.FlushAll()
			runOnceOK(t, base)
			c.do()
			code, rows, out := checkJSON(t, append(base, c.env...))
			bad := problems(rows)
			if c.wantAll {
				if code != 0 || len(bad) != 0 || len(rows) != 8 {
					t.Fatalf("exit %d, problems %+v, want all 8 valid\n%s", code, bad, out)
				}
				return
			}
			if code != exitFailure || len(bad) != 1 || !strings.HasPrefix(bad[0].Problem, c.want) ||
				!strings.HasSuffix(bad[0].Problem, "in the future: it would pin the key; see README 'Recovering a key with a future lcut'") {
				t.Fatalf("exit %d, problems %+v; want exit 1 and one problem starting %q\n%s", code, bad, c.want, out)
			}
			if r := bad[0]; r.Version != "v2" || r.Format != "sfp" || r.Schema != "hashed" {
				t.Errorf("problem on %s %s/%s, want v2 sfp/hashed", r.Version, r.Format, r.Schema)
			}
		})
	}
}

// The skew comparison saturates instead of overflowing, whatever the clock.
func TestCheckFutureProblemSaturates(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	cases := []struct {
		ms   int64
		now  time.Time
		skew time.Duration
		want string
	}{
		{1_800_000_000_000 + 3_600_000, now, time.Hour, ""},
		{1_800_000_000_000 + 3_600_001, now, time.Hour, "lcut 1800003600001 is 1h0m0s in the future"},
		{1_800_000_000_000 + 2*86_400_000, now, time.Hour, "lcut 1800172800000 is 2 days in the future"},
		{math.MaxInt64, now, time.Hour, "lcut 9223372036854775807 is 292270966 years in the future"},
		// The distance saturates at MaxInt64 ms rather than wrapping negative.
		{math.MaxInt64, time.UnixMilli(math.MinInt64 / 2), time.Hour, "lcut 9223372036854775807 is 292271023 years in the future"},
		{1, time.UnixMilli(math.MaxInt64), time.Hour, ""},
		{0, now, time.Hour, ""},
	}
	for _, c := range cases {
		got := futureProblem("lcut", c.ms, c.now, c.skew)
		if c.want == "" && got != "" || c.want != "" && !strings.HasPrefix(got, c.want) {
			t.Errorf("futureProblem(%d, %v, %v) = %q, want %q", c.ms, c.now.UnixMilli(), c.skew, got, c.want)
		}
	}
}

// Issue 11: a zlib bomb in the node-redis HASH made check inflate it whole;
// now it stops at MAX_PAYLOAD_BYTES and says so. Key names never appear in
// the output, even for targets of another type.
func TestCheckNodeRedisBombAndKeyNames(t *testing.T) {
	s := e2e.NewStack(t)
	ctx := context.Background()
	rdb := s.Redis.Client()
	environ := s.BaseEnv("REDIS_FORMATS=sfp,node-redis", "MAX_PAYLOAD_BYTES=1048576")
	runOnceOK(t, environ)

	nr := keys.Layout{Formats: []keys.Format{keys.NodeRedis}, Schemas: []keys.Schema{keys.Hashed}}.Targets(keyA, keys.V1)[0]
	bomb := fakecdn.ZlibBomb(16)
	rdb.HSet(ctx, nr.Key, nr.Field, base64.StdEncoding.EncodeToString(bomb))
	sfpPrefix := keys.Targets("", keyA, keys.V2, []keys.Schema{keys.Prefix})[0]
	rdb.Del(ctx, sfpPrefix.Key)
	rdb.Set(ctx, sfpPrefix.Key, "someone else's string", 0)

	code, rows, out := checkJSON(t, environ)
	bad := problems(rows)
	if code != exitFailure || len(bad) != 2 {
		t.Fatalf("exit %d, problems %+v; want exit 1 and two\n%s", code, bad, out)
	}
	for _, r := range bad {
		switch {
		case r.Format == "node-redis":
			if r.Problem != "v1 node-redis/hashed target: payload too large: the value inflates to more than 1048576 bytes" {
				t.Errorf("bomb: problem %q", r.Problem)
			}
		case r.Format == "sfp":
			if r.Problem != "v2 sfp/prefix target holds a string, not a hash" {
				t.Errorf("string in an sfp target: problem %q", r.Problem)
			}
		}
	}
	secret := keyA.Reveal()
	for i := 0; i+12 <= len(secret); i++ {
		if strings.Contains(out, secret[i:i+12]) {
			t.Fatalf("check output holds %q, 12 characters of the secret:\n%s", secret[i:i+12], out)
		}
	}
}
