package faults

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

var (
	churn = flag.Duration("faults.churn", 10*time.Second, "how long the CDN keeps changing a key in the replica scenario (the issue's figure: 1m)")
	soak  = flag.Duration("soak", 0, "run the soak test for this long (0 skips it)")
)

func TestMain(m *testing.M) { e2e.Main(m) }

const interval = 500 * time.Millisecond

// record logs a scenario's outcome and appends it to FAULTS_REPORT.
func record(t *testing.T, scenario, injected, held string, recovery time.Duration) {
	t.Helper()
	t.Logf("SCENARIO %s | injected: %s | Redis held: %s | recovery: %v", scenario, injected, held, recovery)
	path := os.Getenv("FAULTS_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("FAULTS_REPORT: %v", err)
		return
	}
	defer f.Close()
	_ = json.NewEncoder(f).Encode(map[string]any{"scenario": scenario, "injected": injected, "held": held,
		"recovery_ms": recovery.Milliseconds(), "interval_ms": interval.Milliseconds()})
}

// snapshot is what every default target of k holds.
func snapshot(s *e2e.Stack, k keys.SDKKey) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, v := range []keys.Version{keys.V1, keys.V2} {
		for _, tg := range keys.Targets("", k, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
			out[tg.Key] = s.Redis.Client().HGetAll(context.Background(), tg.Key).Val()
		}
	}
	return out
}

func sameSnapshot(a, b map[string]map[string]string) bool {
	for k, h := range a {
		if b[k]["config"] != h["config"] || b[k]["lcut"] != h["lcut"] {
			return false
		}
	}
	return len(a) == len(b)
}

// TestUpstreamFaults injects every upstream failure into one key while the
// other keeps changing: the faulty key keeps its last good payload, the
// healthy key keeps updating on schedule, and the faulty one recovers within
// two intervals of the fault's end.
func TestUpstreamFaults(t *testing.T) {
	s := e2e.NewStack(t)
	p := e2e.Start(t, s.BaseEnv("POLL_INTERVAL="+interval.String(), "FETCH_TIMEOUT=400ms", "MAX_PAYLOAD_BYTES=1048576", "LEADER_ELECTION=false"))
	e2e.WaitFor(t, "initial sync", 10*time.Second, s.AllCurrent)
	bad, good := e2e.KeyA, e2e.KeyB

	cases := []struct {
		name  string
		fault fakecdn.Fault
		// updates: the fault still lets valid payloads through, so the key
		// must stay current (missing x-since-time); older: Redis must keep
		// the newer payload it has.
		updates bool
	}{
		{"500 burst", fakecdn.Fault{Status: 500}, false},
		{"502 burst", fakecdn.Fault{Status: 502}, false},
		{"503 burst", fakecdn.Fault{Status: 503}, false},
		{"504 burst", fakecdn.Fault{Status: 504}, false},
		{"429", fakecdn.Fault{Status: 429}, false},
		{"connection reset", fakecdn.Fault{Reset: true}, false},
		{"slower than FETCH_TIMEOUT", fakecdn.Fault{Delay: 2 * time.Second}, false},
		{"truncated body", fakecdn.Fault{Truncate: true}, false},
		{"invalid JSON", fakecdn.Fault{InvalidJSON: true}, false},
		{"has_updates:true with an older time", fakecdn.Fault{OlderTime: true, NoSinceTimeHeader: true}, false},
		{"missing x-since-time", fakecdn.Fault{NoSinceTimeHeader: true}, true},
		{"wrong hashed_sdk_key_used", fakecdn.Fault{WrongHashedKey: true}, false},
		{"body above MAX_PAYLOAD_BYTES", fakecdn.Fault{Pad: 2 << 20}, false},
		{"protobuf content type", fakecdn.Fault{Protobuf: true}, false},
		{"delta body", fakecdn.Fault{Delta: true}, false},
		{"v2 body under /v1 and v1 under /v2", fakecdn.Fault{WrongVersion: true}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(s, bad)
			s.CDN.SetFault(bad, c.fault)
			faultAt := time.Now()
			// The CDN has news for both keys, several times, during the fault.
			var worstHealthy time.Duration
			// Small steps, so that an "older" payload (1 s before the CDN's
			// lcut) is older than what Redis holds too.
			for i := 0; i < 3; i++ {
				s.CDN.Change(bad, 100)
				s.CDN.Change(good, 100)
				took := e2e.WaitFor(t, "healthy key current", 2*interval+500*time.Millisecond, func() bool { return s.Current(good) })
				worstHealthy = max(worstHealthy, took)
			}
			held := "the last good payload (unchanged)"
			// The faulty key was asked (and answered with the fault) before
			// anything is judged.
			e2e.WaitFor(t, "the faulty key asked twice", 4*interval+time.Second, func() bool { return requestsSince(s, bad, faultAt) >= 2 })
			switch {
			case c.updates:
				e2e.WaitFor(t, "valid payloads without x-since-time in Redis", 2*interval+500*time.Millisecond, func() bool { return s.Current(bad) })
				held = "the new payloads (the fault does not invalidate them)"
			case !sameSnapshot(before, snapshot(s, bad)):
				t.Fatalf("Redis changed under the fault")
			}
			s.CDN.ClearFaults()
			recovery := e2e.WaitFor(t, "recovery", 2*interval+500*time.Millisecond, func() bool { return s.Current(bad) })
			record(t, "upstream: "+c.name, fmt.Sprintf("%+v on one key for ~3 changes", faultString(c.fault)),
				held+fmt.Sprintf("; the healthy key updated within %v", worstHealthy.Round(time.Millisecond)), recovery)
		})
	}
	if code, _ := p.Stop(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

func faultString(f fakecdn.Fault) string {
	var parts []string
	b, _ := json.Marshal(f)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for k, v := range m {
		switch v {
		case false, "", 0.0:
			continue
		}
		if k == "Delay" {
			v = time.Duration(v.(float64)).String()
		}
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	return strings.Join(parts, " ")
}

// TestRevokedKey revokes a key (401) and restores it, with and without
// DELETE_ON_UNAUTHORIZED.
func TestRevokedKey(t *testing.T) {
	for _, del := range []bool{false, true} {
		t.Run("DELETE_ON_UNAUTHORIZED="+strconv.FormatBool(del), func(t *testing.T) {
			s := e2e.NewStack(t)
			e2e.Start(t, s.BaseEnv("POLL_INTERVAL="+interval.String(), "UNAUTHORIZED_RECHECK=1s", "UNAUTHORIZED_DELETE_AFTER=2s",
				"DELETE_ON_UNAUTHORIZED="+strconv.FormatBool(del), "LEADER_ELECTION=false"))
			e2e.WaitFor(t, "initial sync", 10*time.Second, s.AllCurrent)
			before := snapshot(s, e2e.KeyA)
			s.CDN.Revoke(e2e.KeyA, 401)
			s.CDN.Change(e2e.KeyA, 1000) // news that only a restored key can fetch
			s.CDN.Change(e2e.KeyB, 1000)
			e2e.WaitFor(t, "other key current", 2*interval+500*time.Millisecond, func() bool { return s.Current(e2e.KeyB) })
			held := "the last good payload"
			revoked := time.Now()
			if del {
				// Deleted only once refused without a break for
				// UNAUTHORIZED_DELETE_AFTER and three rechecks.
				took := e2e.WaitFor(t, "entries deleted", 10*time.Second, func() bool {
					return s.Redis.Client().Exists(context.Background(), keys.Targets("", e2e.KeyA, keys.V1, []keys.Schema{keys.Hashed})[0].Key).Val() == 0
				})
				if took < 2*time.Second {
					t.Errorf("entries deleted %v after the first refusal, before UNAUTHORIZED_DELETE_AFTER (2s)", took)
				}
				held = fmt.Sprintf("the last good payload for %v, then nothing: deleted after 2s and 3 rechecks", took.Round(100*time.Millisecond))
			} else {
				// Prove the refusals happened (three rechecks) before judging.
				e2e.WaitFor(t, "three rechecks refused", 10*time.Second, func() bool {
					return len(s.CDN.RequestsFor(e2e.KeyA, keys.V1)) > 0 && requestsSince(s, e2e.KeyA, revoked) >= 4
				})
				if !sameSnapshot(before, snapshot(s, e2e.KeyA)) || len(before) != 4 {
					t.Fatal("the revoked key's payload changed")
				}
			}
			s.CDN.Restore(e2e.KeyA)
			restored := time.Now()
			e2e.WaitFor(t, "restored key current", 1500*time.Millisecond+2*interval, func() bool { return s.Current(e2e.KeyA) })
			recovery := time.Since(restored)
			record(t, "upstream: key revoked (401) and restored, DELETE_ON_UNAUTHORIZED="+strconv.FormatBool(del),
				"401 for one key, then 200 again (UNAUTHORIZED_RECHECK=1s)", held+"; the other key kept updating", recovery)
		})
	}
}

// requestsSince counts the requests for k (v1) the fake CDN received since t.
func requestsSince(s *e2e.Stack, k keys.SDKKey, t time.Time) int {
	n := 0
	for _, r := range s.CDN.RequestsFor(k, keys.V1) {
		if r.At.After(t) {
			n++
		}
	}
	return n
}

// TestRedisRestartedEmpty kills Redis, restarts it empty on the same port and
// expects every key back within two intervals, without restarting the worker.
func TestRedisRestartedEmpty(t *testing.T) {
	s, extra := manyKeys(t, 20)
	e2e.Start(t, s.BaseEnv("POLL_INTERVAL="+interval.String(), "LEADER_ELECTION=false", "STATSIG_SERVER_SDK_KEYS="+extra.list()))
	e2e.WaitFor(t, "initial sync", 15*time.Second, extra.allCurrent(s))
	s.Redis.Kill()
	time.Sleep(3 * interval)
	s.Redis.Restart()
	recovery := e2e.WaitFor(t, "every key restored", 2*interval+500*time.Millisecond, extra.allCurrent(s))
	record(t, "Redis: killed and restarted empty", "SIGKILL, down 3 intervals, restarted without data (20 keys × 2 versions × 2 schemas)",
		"nothing while down; everything again after", recovery)
}

// TestRedisPaused stops Redis (SIGSTOP) for many intervals: the worker must not
// pile up goroutines, queues or memory, and must serve normally after.
func TestRedisPaused(t *testing.T) {
	s, extra := manyKeys(t, 20)
	addr := e2e.FreeAddr(t)
	e2e.Start(t, s.BaseEnv("POLL_INTERVAL="+interval.String(), "LEADER_ELECTION=false", "ADMIN_ADDR="+addr,
		"STATSIG_SERVER_SDK_KEYS="+extra.list()))
	e2e.WaitFor(t, "initial sync", 15*time.Second, extra.allCurrent(s))
	time.Sleep(2 * interval)
	// Memory is what the Go runtime holds from the OS (go_memstats_sys_bytes):
	// unlike RSS it leaves out the race detector's shadow memory, which grows
	// with every address the race-enabled test build touches.
	const mem = "go_memstats_sys_bytes"
	base := e2e.Metrics(addr)
	baseG, baseM := base["go_goroutines"], base[mem]

	// Sample once per interval: goroutines and memory must level off while
	// Redis is stuck, not grow with the number of polls that fail.
	s.Redis.Pause()
	const ticks = 16
	var maxG, firstHalfM, secondHalfM float64
	for i := 0; i < ticks; i++ {
		time.Sleep(interval)
		m := e2e.Metrics(addr)
		maxG = max(maxG, m["go_goroutines"])
		if i < ticks/2 {
			firstHalfM = max(firstHalfM, m[mem])
		} else {
			secondHalfM = max(secondHalfM, m[mem])
		}
		s.CDN.Change(extra[0], 10) // news keep coming while Redis is stuck
	}
	s.Redis.Resume()
	recovery := e2e.WaitFor(t, "current after resume", 2*interval+time.Second, extra.allCurrent(s))
	// 40 jobs: at most one goroutine each, plus the pool and the runtime.
	if maxG > baseG+40+20 {
		t.Errorf("goroutines grew from %v to %v while Redis was paused", baseG, maxG)
	}
	maxM := max(firstHalfM, secondHalfM)
	if maxM > baseM+32<<20 || secondHalfM > firstHalfM+8<<20 {
		t.Errorf("Go runtime memory grew while Redis was paused: %.0f MB before, max %.0f MB in the first half, %.0f MB in the second",
			baseM/1e6, firstHalfM/1e6, secondHalfM/1e6)
	}
	record(t, "Redis: paused (SIGSTOP) for 16 intervals", "SIGSTOP 8 s with 20 keys, one changing at the CDN",
		fmt.Sprintf("the state before the pause; goroutines %v → max %v, Go runtime memory %.0f → max %.0f MB", baseG, maxG, baseM/1e6, maxM/1e6), recovery)
}

// TestMaxmemoryTooSmall gives Redis too little memory for one key's payload:
// that key fails visibly (log, metric, check), the other keys keep working,
// and raising the limit heals it.
func TestMaxmemoryTooSmall(t *testing.T) {
	s := e2e.NewStack(t, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
	s.CDN.SetProject(e2e.KeyA, fakecdn.Project{Lcut: 1700000000000, Value: 1, Filler: 6000}) // ~3 MB
	addr := e2e.FreeAddr(t)
	p := e2e.Start(t, s.BaseEnv("POLL_INTERVAL="+interval.String(), "LEADER_ELECTION=false", "ADMIN_ADDR="+addr))
	e2e.WaitFor(t, "small key current", 10*time.Second, func() bool { return s.Current(e2e.KeyB) })
	e2e.WaitFor(t, "write errors counted", 5*time.Second, func() bool {
		return e2e.Metrics(addr)[`statsig_populator_redis_errors_total{op="write"}`] > 0
	})
	if s.Current(e2e.KeyA) {
		t.Fatal("a 3 MB payload fit into 2 MB")
	}
	if !strings.Contains(p.Logs(), "OOM") {
		t.Error("the OOM is not in the log")
	}
	check := func() (int, string) {
		cmd := execCommand("check")
		cmd.Env = s.BaseEnv()
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := check(); code != 1 || !strings.Contains(out, "missing") {
		t.Errorf("check with the big key missing: exit %d\n%s", code, out)
	}
	// The small key keeps updating meanwhile. While Redis reads a big write's
	// 3 MB argument, that query buffer counts against maxmemory, so a small
	// write processed at the same moment is refused too (OOM) and retries
	// after a backoff of 1 s, then 2 s (±50 %): allow two such collisions.
	s.CDN.Change(e2e.KeyB, 1000)
	smallTook := e2e.WaitFor(t, "small key updates", 2*interval+5*time.Second, func() bool { return s.Current(e2e.KeyB) })

	if err := s.Redis.Client().ConfigSet(context.Background(), "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	raised := time.Now()
	e2e.WaitFor(t, "big key written after raising maxmemory", 30*time.Second, func() bool { return s.Current(e2e.KeyA) })
	recovery := time.Since(raised)
	if code, out := check(); code != 0 {
		t.Errorf("check after recovery: exit %d\n%s", code, out)
	}
	record(t, "Redis: maxmemory too small for a payload", "maxmemory 2mb noeviction, a 3 MB payload and a 2 KB one",
		fmt.Sprintf("the small payload (a change reached Redis in %v); OOM logged, redis_errors_total{op=write} counted, check exit 1",
			smallTook.Round(time.Millisecond)), recovery)
}

// manyKeys is a stack serving n extra keys besides KeyA and KeyB.
func manyKeys(t *testing.T, n int) (*e2e.Stack, keyList) {
	s := e2e.NewStack(t)
	var l keyList
	for i := 0; i < n; i++ {
		k := keys.MustParse(fmt.Sprintf("secret-fault%04dabcdefghijklmnop", i))
		s.CDN.SetProject(k, fakecdn.Project{Lcut: 1700000000000 + int64(i), Value: 1})
		l = append(l, k)
	}
	return s, l
}

type keyList []keys.SDKKey

func (l keyList) list() string {
	var out []string
	for _, k := range l {
		out = append(out, k.Reveal())
	}
	return strings.Join(out, ",")
}

func (l keyList) allCurrent(s *e2e.Stack) func() bool {
	return func() bool {
		for _, k := range l {
			if !s.Current(k) {
				return false
			}
		}
		return true
	}
}

// lcutWatcher samples the lcut of targets as fast as it can and remembers
// any decrease.
type lcutWatcher struct {
	mu          sync.Mutex
	regressions []string
	samples     int
	stop        chan struct{}
	done        chan struct{}
}

func watchLcuts(s *e2e.Stack, targets []string) *lcutWatcher {
	w := &lcutWatcher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := map[string]int64{}
		rdb := s.Redis.Client()
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			for _, k := range targets {
				v, err := rdb.HGet(context.Background(), k, "lcut").Int64()
				if err != nil {
					continue
				}
				w.mu.Lock()
				w.samples++
				if v < last[k] {
					w.regressions = append(w.regressions, fmt.Sprintf("%s: %d after %d", k, v, last[k]))
				}
				w.mu.Unlock()
				last[k] = max(last[k], v)
			}
		}
	}()
	return w
}

func (w *lcutWatcher) finish() (int, []string) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.samples, w.regressions
}
