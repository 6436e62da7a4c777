package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func execCommand(args ...string) *exec.Cmd { return exec.Command(e2e.Binary, args...) }

// TestSignalsDuringBigWrite stops the worker with SIGTERM or SIGKILL while it
// fetches, validates and writes 20 MB payloads: every target must then hold
// either the old or the new payload, complete, with the lcut that belongs to
// it.
func TestSignalsDuringBigWrite(t *testing.T) {
	s := e2e.NewStack(t)
	big := e2e.KeyA
	s.CDN.SetProject(big, fakecdn.Project{Lcut: 1700000000000, Value: 1, Filler: 40000})
	s.CDN.DisableGzip(true) // gzip of 20 MB in this race-instrumented test process takes seconds
	// Leader election on (the default), with a short lease so that a
	// restart after SIGKILL takes over soon: SIGTERM must finish the job's
	// writes before it releases the lease.
	environ := s.BaseEnv("POLL_INTERVAL="+interval.String(), "LEADER_ELECTION=true", "LEADER_LEASE=2s", "STATSIG_SERVER_SDK_KEYS="+big.Reveal(),
		"STATSIG_DCS_VERSIONS=v1", "FETCH_TIMEOUT=20s")
	targets := keys.Targets("", big, keys.V1, []keys.Schema{keys.Hashed, keys.Prefix})
	bodies := map[int64]string{} // lcut → the payload served with it
	remember := func() { p := s.CDN.Project(big); bodies[p.Lcut] = string(fakecdn.V1Body(big, p)) }
	remember()
	t.Logf("payload size %.1f MB", float64(len(bodies[1700000000000]))/1e6)

	ctx := context.Background()
	current := func() bool {
		want := string(fakecdn.V1Body(big, s.CDN.Project(big)))
		for _, tg := range targets {
			if s.Redis.Client().HGet(ctx, tg.Key, "config").Val() != want {
				return false
			}
		}
		return true
	}
	p := e2e.Start(t, environ)
	took := e2e.WaitFor(t, "initial sync", 60*time.Second, current)
	t.Logf("initial sync of the big payload (race-enabled worker): %v", took)
	verify := func(round string) (old, new int) {
		for _, tg := range targets {
			h := s.Redis.Client().HGetAll(ctx, tg.Key).Val()
			lcut, _ := strconv.ParseInt(h["lcut"], 10, 64)
			want, ok := bodies[lcut]
			if !ok || h["config"] != want || h["encoding"] != "plain_text" {
				t.Fatalf("%s: %s holds %d bytes with lcut %s: not a complete payload of that lcut", round, tg.Key, len(h["config"]), h["lcut"])
			}
			if lcut == s.CDN.Project(big).Lcut {
				new++
			} else {
				old++
			}
		}
		return old, new
	}
	var rounds []string
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL, syscall.SIGTERM, syscall.SIGKILL, syscall.SIGKILL, syscall.SIGTERM} {
		full := s.CDN.Count("full")
		s.CDN.Change(big, 1000)
		remember()
		// Wait for the CDN to start sending the new payload, then a little
		// more, so the signal lands during download, validation or write.
		e2e.WaitFor(t, "fetch started", 10*time.Second, func() bool { return s.CDN.Count("full") > full })
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
		code, took := p.Signal(t, sig)
		old, new := verify(fmt.Sprintf("round %d (%v)", i, sig))
		rounds = append(rounds, fmt.Sprintf("%v: %d old/%d new", sig, old, new))
		if sig == syscall.SIGTERM && (code != 0 || took > 10*time.Second) {
			t.Errorf("SIGTERM: exit %d after %v, want 0 within 10s", code, took)
		}
		// A clean stop finishes or abandons whole jobs: never one target on
		// the new payload and another on the old.
		if sig == syscall.SIGTERM && old > 0 && new > 0 {
			t.Errorf("round %d: SIGTERM left %d targets on the old payload and %d on the new", i, old, new)
		}
		p = e2e.Start(t, environ)
		e2e.WaitFor(t, "current after restart", 60*time.Second, current)
	}
	p.Stop(t)
	record(t, "worker: SIGTERM and SIGKILL during a 20 MB write", "6 signals at random points of fetch/validate/write",
		"always a complete old or new payload with its own lcut ("+strings.Join(rounds, ", ")+")", 0)
}

// TestReplicasUnderChurn runs three replicas on one Redis while the CDN
// changes a key every 100 ms: an observer sampling Redis never sees an lcut go
// down, and at the end every target holds the newest payload. With leader
// election (one writer) and without it (three racing writers, only the lcut
// guard between them).
func TestReplicasUnderChurn(t *testing.T) {
	for _, election := range []bool{true, false} {
		t.Run("LEADER_ELECTION="+strconv.FormatBool(election), func(t *testing.T) {
			s := e2e.NewStack(t)
			env := s.BaseEnv("POLL_INTERVAL=300ms", "LEADER_ELECTION="+strconv.FormatBool(election), "LEADER_LEASE=1s")
			var procs []*e2e.Proc
			for i := 0; i < 3; i++ {
				procs = append(procs, e2e.Start(t, append(env, "ADMIN_ADDR="+e2e.FreeAddr(t))))
			}
			e2e.WaitFor(t, "initial sync", 10*time.Second, s.AllCurrent)
			var targets []string
			for _, v := range []keys.Version{keys.V1, keys.V2} {
				for _, tg := range keys.Targets("", e2e.KeyA, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
					targets = append(targets, tg.Key)
				}
			}
			w := watchLcuts(s, targets)
			changes := 0
			for end := time.Now().Add(*churn); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
				s.CDN.Change(e2e.KeyA, 100)
				changes++
			}
			settle := e2e.WaitFor(t, "newest payload everywhere", 2*time.Second, func() bool { return s.Current(e2e.KeyA) })
			samples, regressions := w.finish()
			if len(regressions) > 0 {
				t.Fatalf("lcut went down %d times, e.g. %v", len(regressions), regressions[:min(5, len(regressions))])
			}
			if samples < 1000 {
				t.Errorf("only %d samples: the observer did not watch closely", samples)
			}
			for _, p := range procs {
				p.Stop(t)
			}
			record(t, fmt.Sprintf("worker: 3 replicas, LEADER_ELECTION=%v, a change every 100 ms for %v", election, *churn),
				fmt.Sprintf("%d changes", changes), fmt.Sprintf("%d lcut samples, 0 regressions; the newest payload at the end", samples), settle)
		})
	}
}

// TestSoak runs 1,000 keys with changes for -soak and reports memory,
// goroutines, fetches, writes and lcut regressions (which must be zero). It
// is not part of the default run: scripts/soak.sh passes -soak.
func TestSoak(t *testing.T) {
	if *soak == 0 {
		t.Skip("soak test: run with -soak=10m (scripts/soak.sh)")
	}
	s, extra := manyKeys(t, 1000)
	s.CDN.SetLogLimit(0)
	file := t.TempDir() + "/keys"
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(extra.list(), ",", "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := e2e.FreeAddr(t)
	p := e2e.Start(t, s.BaseEnv("STATSIG_SERVER_SDK_KEYS=", "STATSIG_SERVER_SDK_KEYS_FILE="+file, "POLL_INTERVAL=10s",
		"LEADER_ELECTION=false", "ADMIN_ADDR="+addr, "LOG_LEVEL=warn"))
	allCurrent := extra.allCurrent(s)
	e2e.WaitFor(t, "initial sync", 2*time.Minute, allCurrent)

	var watched []string
	for _, k := range extra[:20] {
		for _, tg := range keys.Targets("", k, keys.V1, []keys.Schema{keys.Hashed}) {
			watched = append(watched, tg.Key)
		}
	}
	w := watchLcuts(s, watched)
	var (
		mu        sync.Mutex
		maxRSS    float64
		maxGor    float64
		changes   int
		startCPU  = cpuSeconds(p.Cmd.Process.Pid)
		startTime = time.Now()
	)
	sample := func() {
		mu.Lock()
		defer mu.Unlock()
		m := e2e.Metrics(addr)
		maxRSS = max(maxRSS, m["process_resident_memory_bytes"])
		maxGor = max(maxGor, m["go_goroutines"])
	}
	for end := time.Now().Add(*soak); time.Now().Before(end); time.Sleep(time.Second) {
		for i := 0; i < 10; i++ { // 10 changes a second: 1 % of keys per 10 s interval
			s.CDN.Change(extra[rand.IntN(len(extra))], 100)
			changes++
		}
		sample()
	}
	e2e.WaitFor(t, "all current at the end", 30*time.Second, allCurrent)
	samples, regressions := w.finish()
	cpu := cpuSeconds(p.Cmd.Process.Pid) - startCPU
	elapsed := time.Since(startTime)
	m := e2e.Metrics(addr)
	fetches := m[`statsig_populator_fetches_total{outcome="no_update",version="v1"}`] +
		m[`statsig_populator_fetches_total{outcome="updated",version="v1"}`] +
		m[`statsig_populator_fetches_total{outcome="no_update",version="v2"}`] +
		m[`statsig_populator_fetches_total{outcome="updated",version="v2"}`]
	writes := m[`statsig_populator_writes_total{outcome="written",version="v1"}`] +
		m[`statsig_populator_writes_total{outcome="written",version="v2"}`]
	p.Stop(t)
	build := "race-enabled build"
	if os.Getenv("E2E_NORACE") == "1" {
		build = "release build"
	}
	report := fmt.Sprintf("%v with 1,000 keys × 2 versions (interval 10s, %s): %d changes, %.0f fetches, %.0f writes, "+
		"CPU %.1f s (%.3f core), max RSS %.0f MB, max goroutines %.0f, %d lcut samples, %d regressions",
		elapsed.Round(time.Second), build, changes, fetches, writes, cpu, cpu/elapsed.Seconds(), maxRSS/1e6, maxGor, samples, len(regressions))
	t.Log("SOAK " + report)
	record(t, "soak", "1,000 keys, 10 changes/s", report, 0)
	if len(regressions) > 0 {
		t.Fatalf("lcut regressions: %v", regressions[:min(5, len(regressions))])
	}
}

// cpuSeconds is a process's user+system CPU time from /proc.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}
