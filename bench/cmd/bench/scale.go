package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/statsig-populator/statsig-populator/bench/benchapi"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

type scaleSpec struct {
	kind    string // worker, floor, sdk
	keys    int
	filler  int
	label   string
	profile bool
	env     []string // extra environment of the program under test
}

// Propagation summarises change → Redis delays, in seconds.
type Propagation struct {
	Changes int     `json:"changes"`
	Samples int     `json:"samples"` // (change, target key) pairs seen in Redis
	Missed  int     `json:"missed"`  // (change, target key) pairs never seen
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
	// KeyP99 is over changes, each the delay until its last target had it.
	KeyP99 float64 `json:"key_p99"`
	// Worker's own histogram over the same window (bucket upper bounds).
	MetricP50 float64 `json:"metric_p50,omitempty"`
	MetricP99 float64 `json:"metric_p99,omitempty"`
}

// Quiet is the window without changes: what is written when nothing changes.
type Quiet struct {
	Seconds           float64            `json:"seconds"`
	PayloadWrites     int                `json:"payload_writes"`         // HSETs seen (keyspace notifications)
	WrittenBytes      float64            `json:"written_bytes"`          // worker's written_bytes_total delta
	NetInputPerIntvl  float64            `json:"net_input_per_interval"` // bytes Redis received, all commands
	CommandsPerIntvl  map[string]float64 `json:"commands_per_interval"`
	RedisUsecPerIntvl float64            `json:"redis_usec_per_interval"`
}

// RunResult is one scenario at one key count.
type RunResult struct {
	Name          string         `json:"name"`
	Kind          string         `json:"kind"`
	Label         string         `json:"label,omitempty"` // "" (default config), "large", "v1only"
	Keys          int            `json:"keys"`
	Versions      int            `json:"versions"`
	Filler        int            `json:"filler"`
	PayloadBytes  int            `json:"payload_bytes"`
	SyncSeconds   float64        `json:"sync_seconds"`
	WindowSeconds float64        `json:"window_seconds"`
	CPUCores      float64        `json:"cpu_cores"`
	FakeCores     float64        `json:"fake_cores"`
	RedisCores    float64        `json:"redis_cores"`
	RSSKB         int64          `json:"rss_kb"`      // at the end of the window
	RSSMeanKB     int64          `json:"rss_mean_kb"` // sampled twice a second over the window
	RSSMaxKB      int64          `json:"rss_max_kb"`  // largest sample in the window
	HWMKB         int64          `json:"hwm_kb"`      // VmHWM: peak since start, first sync included
	PollsPerSec   float64        `json:"polls_per_sec"`
	ExpectedPPS   float64        `json:"expected_polls_per_sec"`
	CPUPerPollUs  float64        `json:"cpu_per_poll_us"`
	Fake          benchapi.Stats `json:"fake"`
	Quiet         Quiet          `json:"quiet"`
	Prop          Propagation    `json:"propagation"`
	// From the worker's /metrics over the window.
	Fetches        float64  `json:"fetches,omitempty"`
	MallocsPerPoll float64  `json:"mallocs_per_poll,omitempty"`
	AllocBytesPoll float64  `json:"alloc_bytes_per_poll,omitempty"`
	GCPerInterval  float64  `json:"gc_per_interval,omitempty"`
	Errors         []string `json:"errors,omitempty"`
	// Repeats holds every repetition's CPU and mean RSS when the point ran
	// more than once (-repeat); the fields above are then the repetition
	// with the median CPU, except RSSMeanKB, which is the median of the
	// repetitions' means.
	Repeats []RepeatSample `json:"repeats,omitempty"`
}

// RepeatSample is one repetition of a scale point.
type RepeatSample struct {
	CPUCores  float64 `json:"cpu_cores"`
	RSSMeanKB int64   `json:"rss_mean_kb"`
}

// medianRun summarises the repetitions of one scale point: the repetition
// with the median CPU (the lower one of an even count), carrying the median
// of the mean RSS and every repetition's figures. Failed repetitions count
// only when none succeeded.
func medianRun(rs []*RunResult) *RunResult {
	ok := slices.DeleteFunc(slices.Clone(rs), func(r *RunResult) bool { return len(r.Errors) > 0 })
	if len(ok) == 0 {
		return rs[len(rs)-1]
	}
	if len(ok) == 1 && len(rs) == 1 {
		return ok[0]
	}
	byCPU := slices.SortedFunc(slices.Values(ok), func(a, b *RunResult) int { return cmp.Compare(a.CPUCores, b.CPUCores) })
	m := *byCPU[(len(byCPU)-1)/2]
	rss := make([]int64, len(ok))
	m.Repeats = nil
	for i, r := range ok {
		rss[i] = r.RSSMeanKB
		m.Repeats = append(m.Repeats, RepeatSample{CPUCores: r.CPUCores, RSSMeanKB: r.RSSMeanKB})
	}
	slices.Sort(rss)
	m.RSSMeanKB = rss[(len(rss)-1)/2]
	return &m
}

// ProfileResult holds the profiles of the worker (and strace of the floor).
type ProfileResult struct {
	Keys               int           `json:"keys"`
	WorkerPerfSelf     string        `json:"worker_perf_self,omitempty"`
	WorkerPerfChildren string        `json:"worker_perf_children,omitempty"`
	WorkerStrace       *StraceResult `json:"worker_strace,omitempty"`
	FloorStrace        *StraceResult `json:"floor_strace,omitempty"`
}

// StraceResult is strace -c over a window, with the polls in it.
type StraceResult struct {
	Seconds      float64            `json:"seconds"`
	Polls        int64              `json:"polls"`
	Calls        int64              `json:"calls"`
	CallsPerPoll float64            `json:"calls_per_poll"`
	PerPoll      map[string]float64 `json:"per_poll"` // by syscall
	Table        string             `json:"table"`
}

func (h *harness) fakeJSON(api, path string, v any) error {
	b, err := httpGet(api + "/_bench/" + path)
	if err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

func (h *harness) runScale(s scaleSpec) (*RunResult, *ProfileResult) {
	c := h.cfg
	name := fmt.Sprintf("%s-%d", s.kind, s.keys)
	if s.label != "" {
		name += "-" + s.label
	}
	versions := []keys.Version{keys.V1, keys.V2}
	schemas := []keys.Schema{keys.Hashed, keys.Prefix}
	if s.kind == "sdk" || s.label == "v1only" {
		// statsig-node 6 reads and writes only /v1 at the hashed key; the
		// v1only worker is configured to do the same work.
		versions, schemas = versions[:1], schemas[:1]
	}
	r := &RunResult{Name: name, Kind: s.kind, Label: s.label, Keys: s.keys, Versions: len(versions), Filler: s.filler}
	fail := func(format string, args ...any) (*RunResult, *ProfileResult) {
		r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
		logf("%s: %s", name, r.Errors[len(r.Errors)-1])
		return r, nil
	}
	dir := filepath.Join(c.out, "logs", name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail("%v", err)
	}
	ks := keyNames(s.keys)
	keysFile := filepath.Join(dir, "keys.txt")
	if err := writeKeys(keysFile, ks); err != nil {
		return fail("%v", err)
	}
	defer os.Remove(keysFile)
	logf("%s: starting (%d keys × %d versions, filler %d)", name, s.keys, len(versions), s.filler)

	var rs *redisServer
	var w *watcher
	if s.kind != "floor" {
		var err error
		if rs, err = startRedis(dir); err != nil {
			return fail("redis: %v", err)
		}
		defer rs.stop()
		if w, err = rs.watch(); err != nil {
			return fail("watch: %v", err)
		}
		defer w.close()
	}
	fake, api, err := h.startFake(dir, keysFile, s.filler)
	if err != nil {
		return fail("fake: %v", err)
	}
	defer fake.stop()

	t0 := time.Now()
	var target *proc
	adminPort := freePort()
	switch s.kind {
	case "worker":
		target, _, err = startProc(dir, "populator", h.workerEnv(keysFile, api, rs, adminPort, s.env...), "", filepath.Join(c.bin, "populator"))
	case "floor":
		target, _, err = startProc(dir, "pollfloor", s.env, "", filepath.Join(c.bin, "pollfloor"),
			"-keys", keysFile, "-api", api, "-versions", "v1,v2", "-interval", c.Interval.String(),
			"-concurrency", strconv.Itoa(c.Concurrency))
	case "sdk":
		target, _, err = startProc(dir, "sdkwriter", []string{"KEYS_FILE=" + keysFile, "API=" + api,
			fmt.Sprintf("REDIS_PORT=%d", rs.port), fmt.Sprintf("INTERVAL_MS=%d", c.Interval.Milliseconds()),
			"NODE_OPTIONS=--max-old-space-size=16384"},
			"", "node", filepath.Join(c.nodeDir, "sdkwriter.mjs"))
	}
	if err != nil {
		return fail("start: %v", err)
	}
	defer target.stop()
	pid := target.pid()

	// The first sync: every target key written (or every payload fetched once).
	want := int64(s.keys * len(versions) * len(schemas))
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var have int64
		if rs != nil {
			have, _ = rs.rdb.DBSize(ctx).Result()
		} else {
			var st benchapi.Stats
			_ = h.fakeJSON(api, "stats", &st)
			have = st.Full * 2
			want = int64(s.keys * len(versions) * 2)
		}
		if have >= want {
			break
		}
		if !target.alive() {
			return fail("%s exited during the first sync (see %s)", s.kind, dir)
		}
		if time.Now().After(deadline) {
			return fail("first sync incomplete after 5 min: %d of %d", have, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.SyncSeconds = time.Since(t0).Seconds()
	logf("%s: first sync in %.1f s; warming up one interval", name, r.SyncSeconds)
	time.Sleep(c.Interval)

	metrics := func() string {
		if s.kind != "worker" {
			return ""
		}
		b, _ := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
		return string(b)
	}

	// Window start.
	_ = h.fakeJSON(api, "reset", nil)
	if rs != nil {
		rs.rdb.ConfigResetStat(ctx)
		w.start()
	}
	m0 := metrics()
	cpu0, fake0 := cpuSeconds(pid), cpuSeconds(fake.pid())
	var redis0 float64
	if rs != nil {
		redis0 = cpuSeconds(rs.proc.pid())
	}
	start := time.Now()
	stopSampling := make(chan struct{})
	sampled := make(chan [2]int64)
	go func() {
		var sum, n, peak int64
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				sampled <- [2]int64{sum / max(n, 1), peak}
				return
			case <-t.C:
				rss, _ := memKB(pid)
				sum, n, peak = sum+rss, n+1, max(peak, rss)
			}
		}
	}()

	// Quiet window: nothing changes.
	time.Sleep(time.Duration(c.QuietIntervals) * c.Interval)
	quietEnd := time.Now()
	r.Quiet.Seconds = quietEnd.Sub(start).Seconds()
	intervals := r.Quiet.Seconds / c.Interval.Seconds()
	if rs != nil {
		r.Quiet.PayloadWrites = len(w.snapshot())
		info := rs.info("commandstats", "stats")
		r.Quiet.NetInputPerIntvl = info["total_net_input_bytes"] / intervals
		r.Quiet.CommandsPerIntvl = map[string]float64{}
		for k, v := range info {
			if name, ok := strings.CutPrefix(k, "cmd."); ok && strings.HasSuffix(name, ".calls") {
				r.Quiet.CommandsPerIntvl[strings.TrimSuffix(name, ".calls")] = v / intervals
			}
			if strings.HasPrefix(k, "cmd.") && strings.HasSuffix(k, ".usec") {
				r.Quiet.RedisUsecPerIntvl += v / intervals
			}
		}
	}
	mq := metrics()
	if mq != "" {
		r.Quiet.WrittenBytes = promSum(mq, "statsig_populator_written_bytes_total") - promSum(m0, "statsig_populator_written_bytes_total")
	}

	// Change window.
	logf("%s: quiet window done (%d payload writes); changing %.1f%% of keys per interval for %d intervals",
		name, r.Quiet.PayloadWrites, c.ChangeFrac*100, c.ChangeIntervals)
	_ = h.fakeJSON(api, fmt.Sprintf("rate?frac=%g", c.ChangeFrac), nil)
	time.Sleep(time.Duration(c.ChangeIntervals) * c.Interval)
	_ = h.fakeJSON(api, "rate?frac=0", nil)

	// Window end.
	end := time.Now()
	r.WindowSeconds = end.Sub(start).Seconds()
	r.CPUCores = (cpuSeconds(pid) - cpu0) / r.WindowSeconds
	r.FakeCores = (cpuSeconds(fake.pid()) - fake0) / r.WindowSeconds
	if rs != nil {
		r.RedisCores = (cpuSeconds(rs.proc.pid()) - redis0) / r.WindowSeconds
	}
	r.RSSKB, r.HWMKB = memKB(pid)
	close(stopSampling)
	ms := <-sampled
	r.RSSMeanKB, r.RSSMaxKB = ms[0], ms[1]
	nv := len(versions)
	_ = h.fakeJSON(api, fmt.Sprintf("stats?versions=%d", nv), &r.Fake)
	m1 := metrics()
	r.PollsPerSec = float64(r.Fake.Requests) / r.Fake.WindowSeconds
	r.ExpectedPPS = float64(s.keys*nv) / c.Interval.Seconds()
	if r.Fake.Requests > 0 {
		r.CPUPerPollUs = r.CPUCores * r.WindowSeconds / float64(r.Fake.Requests) * 1e6
	}
	if m1 != "" {
		r.Fetches = promSum(m1, "statsig_populator_fetches_total") - promSum(m0, "statsig_populator_fetches_total")
		if r.Fetches > 0 {
			r.MallocsPerPoll = (promSum(m1, "go_memstats_mallocs_total") - promSum(m0, "go_memstats_mallocs_total")) / r.Fetches
			r.AllocBytesPoll = (promSum(m1, "go_memstats_alloc_bytes_total") - promSum(m0, "go_memstats_alloc_bytes_total")) / r.Fetches
		}
		r.GCPerInterval = (promSum(m1, "go_gc_duration_seconds_count") - promSum(m0, "go_gc_duration_seconds_count")) / (r.WindowSeconds / c.Interval.Seconds())
	}
	logf("%s: window %.0f s: %.3f cores, RSS %d MB (mean %d, max %d, peak since start %d), %.0f polls/s of %.0f, slip p99 %d ms, fake %.3f cores, redis %.3f cores",
		name, r.WindowSeconds, r.CPUCores, r.RSSKB/1024, r.RSSMeanKB/1024, r.RSSMaxKB/1024, r.HWMKB/1024, r.PollsPerSec, r.ExpectedPPS, r.Fake.SlipP99, r.FakeCores, r.RedisCores)

	if rs != nil {
		// Let the last changes arrive, then match them with the writes.
		time.Sleep(c.Interval * 12 / 10)
		var changes []struct {
			Key  string `json:"key"`
			Lcut int64  `json:"lcut"`
			AtNs int64  `json:"at_ns"`
		}
		_ = h.fakeJSON(api, "changes", &changes)
		if m2 := metrics(); m2 != "" {
			// The worker's own histogram, over the same changes (bucket bounds).
			before, after := promHistogram(m0, "statsig_populator_propagation_delay_seconds"), promHistogram(m2, "statsig_populator_propagation_delay_seconds")
			r.Prop.MetricP50, r.Prop.MetricP99 = histQuantile(before, after, .5), histQuantile(before, after, .99)
		}
		events := w.snapshot()
		byName := map[string][]hsetEvent{}
		for _, e := range events {
			byName[e.name] = append(byName[e.name], e)
		}
		for n := range byName {
			slices.SortFunc(byName[n], func(a, b hsetEvent) int { return a.at.Compare(b.at) })
		}
		var delays, keyDelays []float64
		for _, ch := range changes {
			k := keys.MustParse(ch.Key)
			at := time.Unix(0, ch.AtNs)
			worst, complete := 0.0, true
			for _, v := range versions {
				for _, t := range keys.Targets("", k, v, schemas) {
					found := false
					for _, e := range byName[t.Key] {
						if e.lcut >= ch.Lcut && !e.at.Before(at) {
							d := e.at.Sub(at).Seconds()
							delays = append(delays, d)
							worst = max(worst, d)
							found = true
							break
						}
					}
					if !found {
						r.Prop.Missed++
						complete = false
					}
				}
			}
			if complete {
				keyDelays = append(keyDelays, worst)
			}
		}
		r.Prop.Changes, r.Prop.Samples = len(changes), len(delays)
		slices.Sort(delays)
		slices.Sort(keyDelays)
		r.Prop.P50, r.Prop.P90, r.Prop.P99, r.Prop.Max = pct(delays, .5), pct(delays, .9), pct(delays, .99), pct(delays, 1)
		r.Prop.KeyP99 = pct(keyDelays, .99)
		logf("%s: propagation over %d changes: p50 %.2f s, p99 %.2f s, max %.2f s, %d missed",
			name, r.Prop.Changes, r.Prop.P50, r.Prop.P99, r.Prop.Max, r.Prop.Missed)
		if cfg, err := rs.rdb.HGet(ctx, keys.Targets("", ks[0], keys.V1, []keys.Schema{keys.Hashed})[0].Key, "config").Result(); err == nil {
			r.PayloadBytes = len(cfg)
		}
	}

	var prof *ProfileResult
	if s.profile {
		prof = &ProfileResult{Keys: s.keys}
		if s.kind == "worker" {
			prof.WorkerPerfSelf, prof.WorkerPerfChildren = h.perf(dir, pid)
			prof.WorkerStrace = h.strace(dir, pid, api, nv)
		} else if s.kind == "floor" {
			prof.FloorStrace = h.strace(dir, pid, api, nv)
		}
	}
	if !target.alive() {
		r.Errors = append(r.Errors, s.kind+" exited during the run")
	}
	return r, prof
}

func pct(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)))
	return sorted[min(i, len(sorted)-1)]
}

// perf samples pid's stacks for two intervals and returns the self and
// inclusive (children) symbol tables.
func (h *harness) perf(dir string, pid int) (string, string) {
	if _, err := exec.LookPath("perf"); err != nil {
		return "perf not installed", ""
	}
	data := filepath.Join(dir, "perf.data")
	secs := strconv.Itoa(int(2 * h.cfg.Interval.Seconds()))
	logf("perf record -p %d for %s s", pid, secs)
	if out, err := exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", data, "--", "sleep", secs).CombinedOutput(); err != nil {
		return "perf record failed: " + err.Error() + ": " + string(out), ""
	}
	report := func(args ...string) string {
		a := append([]string{"report", "-i", data, "--stdio", "--sort", "symbol", "-g", "none"}, args...)
		out, err := exec.Command("perf", a...).Output()
		if err != nil {
			return "perf report failed: " + err.Error()
		}
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "# Samples") && !strings.HasPrefix(l, "# Event count") {
				continue
			}
			lines = append(lines, strings.TrimRight(l, " "))
		}
		return strings.Join(lines, "\n")
	}
	self := report("--no-children", "--percent-limit", "0.7")
	children := report("--children", "--percent-limit", "0.5")
	_ = os.WriteFile(filepath.Join(h.cfg.out, "profile-worker-perf-self.txt"), []byte(self+"\n"), 0o644)
	_ = os.WriteFile(filepath.Join(h.cfg.out, "profile-worker-perf-children.txt"), []byte(children+"\n"), 0o644)
	return self, children
}

// strace counts pid's syscalls (all threads) over one interval and the polls
// the fake saw meanwhile.
func (h *harness) strace(dir string, pid int, api string, nv int) *StraceResult {
	if _, err := exec.LookPath("strace"); err != nil {
		return nil
	}
	out := filepath.Join(dir, "strace.txt")
	secs := h.cfg.Interval.Seconds()
	_ = h.fakeJSON(api, "reset", nil)
	start := time.Now()
	logf("strace -c -f -p %d for %.0f s", pid, secs)
	_ = exec.Command("timeout", "-s", "INT", strconv.Itoa(int(secs)), "strace", "-c", "-f", "-p", strconv.Itoa(pid), "-o", out).Run()
	res := &StraceResult{Seconds: time.Since(start).Seconds()}
	var st benchapi.Stats
	_ = h.fakeJSON(api, fmt.Sprintf("stats?versions=%d", nv), &st)
	res.Polls = st.Requests
	b, err := os.ReadFile(out)
	if err != nil {
		return nil
	}
	res.Table = strings.TrimSpace(string(b))
	res.PerPoll = map[string]float64{}
	for _, line := range strings.Split(res.Table, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] == "%" || strings.HasPrefix(f[0], "-") {
			continue
		}
		calls, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			continue
		}
		name := f[len(f)-1]
		if name == "total" {
			res.Calls = calls
		} else if res.Polls > 0 {
			res.PerPoll[name] = float64(calls) / float64(res.Polls)
		}
	}
	if res.Polls > 0 {
		res.CallsPerPoll = float64(res.Calls) / float64(res.Polls)
	}
	return res
}
