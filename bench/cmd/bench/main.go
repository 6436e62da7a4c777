// Command bench is the performance harness's driver (bench/run.sh builds and
// runs it). For each scenario it starts a redis-server on a free port, the
// fake CDN (bench/cmd/fakecdn) and one client under test — the worker
// (bin built from cmd/populator), the polling floor (bench/cmd/pollfloor) or
// the SDK-as-writer baseline (bench/node/sdkwriter.mjs) — waits for the first
// sync, then measures over a window of whole poll intervals: CPU and memory
// from /proc, polls and schedule slip from the fake's request log, payload
// writes and propagation delays from Redis keyspace notifications, Redis
// command counts. It also measures one big payload against curl+redis-cli,
// profiles the worker with perf and strace, and writes results.json, a
// report, the picture and the generated sections of docs/performance.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

type config struct {
	Mode            string        `json:"mode"`
	Interval        time.Duration `json:"interval"`
	Filler          int           `json:"filler"`
	LargeFiller     int           `json:"large_filler"`
	ChangeFrac      float64       `json:"change_frac"`
	QuietIntervals  int           `json:"quiet_intervals"`
	ChangeIntervals int           `json:"change_intervals"`
	WorkerKeys      []int         `json:"worker_keys"`
	FloorKeys       []int         `json:"floor_keys"`
	SDKKeys         []int         `json:"sdk_keys"`
	LargeKeys       int           `json:"large_keys"` // 0: no large-payload run
	// V1OnlyKeys: worker runs configured like the SDK (v1, hashed schema only).
	V1OnlyKeys  []int `json:"v1only_keys"`
	BigFiller   int   `json:"big_filler"`
	BigReps     int   `json:"big_reps"`
	Profile     bool  `json:"profile"`
	Concurrency int   `json:"concurrency"`
	// Repeat runs every scale point (worker, floor, floor1, SDK, v1only) this many
	// times, interleaved, and keeps the median: the per-key figures rest on
	// differences of a few hundredths of a core that one host burst can undo.
	Repeat int `json:"repeat,omitempty"`
	// WorkerEnv is extra environment for the worker (e.g. GOMAXPROCS=1), to
	// compare settings; empty for the worker's defaults.
	WorkerEnv []string `json:"worker_env,omitempty"`

	out, doc, bin, nodeDir string
}

// Results is everything measured, as results.json.
type Results struct {
	Config   config            `json:"config"`
	Machine  map[string]string `json:"machine"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Runs     []*RunResult      `json:"runs"`
	Big      *BigResult        `json:"big,omitempty"`
	Profile  *ProfileResult    `json:"profile,omitempty"`
	Inproc   *InprocResult     `json:"inproc,omitempty"`
}

func main() {
	var c config
	var wk, fk, sk string
	flag.StringVar(&c.Mode, "mode", "quick", "quick or full (sets the defaults below)")
	flag.StringVar(&c.out, "out", "", "results directory (default bench/results/<mode>)")
	flag.StringVar(&c.doc, "doc", "", "docs/performance.md to update (default: in full mode only)")
	flag.StringVar(&c.bin, "bin", "bench/.out/bin", "directory with populator, fakecdn, pollfloor")
	flag.StringVar(&c.nodeDir, "node", "bench/node", "directory with sdkwriter.mjs and its node_modules")
	flag.StringVar(&wk, "worker-keys", "", "key counts for the worker, e.g. 100,1000,10000")
	flag.StringVar(&fk, "floor-keys", "", "key counts for the polling floor")
	flag.StringVar(&sk, "sdk-keys", "", "key counts for the SDK-as-writer baseline (\"none\" to skip)")
	only := flag.String("only", "", "comma list of parts to run: big,worker,floor,floor1,sdk,v1only,large,inproc (default all)")
	reportOnly := flag.Bool("report-only", false, "regenerate the report, picture and doc from results.json")
	flag.DurationVar(&c.Interval, "interval", 10*time.Second, "poll interval")
	flag.IntVar(&c.Filler, "filler", 16, "payload filler (×~520 bytes; 16 ≈ 10 KB)")
	flag.Float64Var(&c.ChangeFrac, "change-frac", 0.02, "fraction of keys changed per interval in the change window")
	flag.IntVar(&c.ChangeIntervals, "intervals", 0, "intervals in the change window (default quick 2, full 8)")
	flag.BoolVar(&c.Profile, "profile", false, "perf and strace the worker and the floor at the largest key count (always on in full mode)")
	flag.IntVar(&c.Repeat, "repeat", 1, "run each scale point this many times, interleaved, and report the median CPU and RSS")
	workerEnv := flag.String("worker-env", "", "comma list of extra environment variables for the worker, e.g. GOMAXPROCS=1")
	flag.Parse()
	if *workerEnv != "" {
		c.WorkerEnv = strings.Split(*workerEnv, ",")
	}

	switch c.Mode {
	case "quick":
		c.WorkerKeys, c.FloorKeys, c.SDKKeys = []int{100, 1000}, []int{100, 1000}, []int{100, 1000}
		c.QuietIntervals, c.BigReps = 1, 3
		if c.ChangeIntervals == 0 {
			c.ChangeIntervals = 2
		}
	case "full":
		c.WorkerKeys, c.FloorKeys, c.SDKKeys = []int{100, 1000, 10000}, []int{100, 1000, 10000}, []int{100, 1000, 10000}
		c.QuietIntervals, c.BigReps, c.Profile, c.LargeKeys = 1, 5, true, 1000
		c.V1OnlyKeys = []int{100, 1000}
		if c.ChangeIntervals == 0 {
			c.ChangeIntervals = 8
		}
		if c.doc == "" {
			c.doc = "docs/performance.md"
		}
	default:
		fatalf("unknown -mode %q", c.Mode)
	}
	c.LargeFiller, c.BigFiller, c.Concurrency = 400, 33170, 64 // 33170 fillers ≈ 20.0 MB (v1)
	if wk != "" {
		c.WorkerKeys = ints(wk)
	}
	if fk != "" {
		c.FloorKeys = ints(fk)
	}
	if sk != "" {
		c.SDKKeys = ints(sk)
	}
	if c.out == "" {
		c.out = filepath.Join("bench", "results", c.Mode)
	}
	if err := os.MkdirAll(filepath.Join(c.out, "logs"), 0o755); err != nil {
		fatalf("%v", err)
	}
	resultsPath := filepath.Join(c.out, "results.json")

	if *reportOnly {
		var res Results
		b, err := os.ReadFile(resultsPath)
		if err != nil {
			fatalf("%v", err)
		}
		if err := json.Unmarshal(b, &res); err != nil {
			fatalf("%v", err)
		}
		res.Config.out, res.Config.doc = c.out, c.doc
		writeReport(&res, c.out, c.doc)
		return
	}

	// Never leave children behind.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		logf("interrupted: stopping children")
		stopAll()
		os.Exit(130)
	}()
	defer stopAll()

	parts := map[string]bool{"big": true, "worker": true, "floor": true, "floor1": true, "sdk": true, "v1only": true, "large": true, "inproc": true}
	if *only != "" {
		parts = map[string]bool{}
		for _, p := range strings.Split(*only, ",") {
			parts[strings.TrimSpace(p)] = true
		}
	}
	h := &harness{cfg: c}
	res := &Results{Config: c, Machine: machine(), Started: time.Now()}
	if *only != "" {
		// A partial run replaces its parts in the existing results.
		if b, err := os.ReadFile(resultsPath); err == nil {
			var old Results
			if json.Unmarshal(b, &old) == nil && old.Config.Mode == c.Mode {
				res.Runs, res.Big, res.Profile, res.Inproc = old.Runs, old.Big, old.Profile, old.Inproc
				res.Started, res.Machine = old.Started, old.Machine
				logf("-only: note that the merged parts are measured on the worker as built now, the rest on the one of the first run")
				logf("-only: merging into %s", resultsPath)
			}
		}
	}
	addRun := func(r *RunResult) {
		res.Runs = append(slices.DeleteFunc(res.Runs, func(o *RunResult) bool { return o.Name == r.Name }), r)
	}
	save := func() {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(resultsPath, b, 0o644); err != nil {
			fatalf("%v", err)
		}
	}
	logf("mode %s: worker %v, floor %v, sdk %v keys; interval %s; %d quiet + %d change intervals; results in %s",
		c.Mode, c.WorkerKeys, c.FloorKeys, c.SDKKeys, c.Interval, c.QuietIntervals, c.ChangeIntervals, c.out)

	if parts["big"] {
		big, err := h.runBig()
		if err != nil {
			logf("big write: %v", err)
		}
		res.Big = big
		save()
	}
	maxWorker := slices.Max(append([]int{0}, c.WorkerKeys...))
	maxFloor := slices.Max(append([]int{0}, c.FloorKeys...))
	counts := slices.Sorted(func(yield func(int) bool) {
		seen := map[int]bool{}
		for _, l := range [][]int{c.WorkerKeys, c.FloorKeys, c.SDKKeys} {
			for _, n := range l {
				if !seen[n] && !yield(n) {
					return
				}
				seen[n] = true
			}
		}
	})
	// Each repetition runs every scale point once, so that a slow spell of
	// the host lands on one repetition of each rather than on every
	// repetition of one; profiles are taken in the first.
	samples := map[string][]*RunResult{}
	addSample := func(r *RunResult) {
		samples[r.Name] = append(samples[r.Name], r)
		addRun(medianRun(samples[r.Name]))
		save()
	}
	for rep := range max(c.Repeat, 1) {
		if c.Repeat > 1 {
			logf("repetition %d of %d", rep+1, c.Repeat)
		}
		for _, n := range counts {
			if parts["worker"] && slices.Contains(c.WorkerKeys, n) {
				r, prof := h.runScale(scaleSpec{kind: "worker", keys: n, filler: c.Filler, profile: c.Profile && n == maxWorker && rep == 0})
				if prof != nil {
					res.Profile = mergeProfile(res.Profile, prof)
				}
				addSample(r)
			}
			if parts["floor"] && slices.Contains(c.FloorKeys, n) {
				r, prof := h.runScale(scaleSpec{kind: "floor", keys: n, filler: c.Filler, profile: c.Profile && n == maxFloor && rep == 0})
				if prof != nil {
					res.Profile = mergeProfile(res.Profile, prof)
				}
				addSample(r)
			}
			if parts["floor1"] && slices.Contains(c.FloorKeys, n) {
				// The floor on one scheduler thread, as the worker runs by
				// default: what the same runtime setting saves the floor.
				r, _ := h.runScale(scaleSpec{kind: "floor", keys: n, filler: c.Filler, label: "1thread", env: []string{"GOMAXPROCS=1"}})
				addSample(r)
			}
			if parts["sdk"] && slices.Contains(c.SDKKeys, n) {
				r, _ := h.runScale(scaleSpec{kind: "sdk", keys: n, filler: c.Filler})
				addSample(r)
			}
		}
		for _, n := range c.V1OnlyKeys {
			if !parts["v1only"] {
				break
			}
			r, _ := h.runScale(scaleSpec{kind: "worker", keys: n, filler: c.Filler, label: "v1only",
				env: []string{"STATSIG_DCS_VERSIONS=v1", "REDIS_KEY_SCHEMAS=hashed"}})
			addSample(r)
		}
	}
	if parts["large"] && c.LargeKeys > 0 {
		r, _ := h.runScale(scaleSpec{kind: "worker", keys: c.LargeKeys, filler: c.LargeFiller, label: "large"})
		addRun(r)
		save()
	}
	if parts["inproc"] && c.Profile && maxWorker > 0 {
		res.Inproc = h.runInproc(maxWorker)
		save()
	}
	res.Finished = time.Now()
	save()
	logf("done in %s", res.Finished.Sub(res.Started).Round(time.Second))
	writeReport(res, c.out, c.doc)
}

func mergeProfile(a, b *ProfileResult) *ProfileResult {
	if a == nil {
		return b
	}
	if b.WorkerPerfSelf != "" {
		a.WorkerPerfSelf, a.WorkerPerfChildren = b.WorkerPerfSelf, b.WorkerPerfChildren
	}
	if b.WorkerStrace != nil {
		a.WorkerStrace = b.WorkerStrace
	}
	if b.FloorStrace != nil {
		a.FloorStrace = b.FloorStrace
	}
	return a
}

func ints(s string) []int {
	if s == "none" {
		return nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			fatalf("bad count %q", f)
		}
		out = append(out, n)
	}
	return out
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func fatalf(format string, args ...any) {
	logf(format, args...)
	stopAll()
	os.Exit(1)
}

// machine describes where the numbers were taken.
func machine() map[string]string {
	m := map[string]string{}
	run := func(name string, argv ...string) {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err == nil {
			m[name] = strings.TrimSpace(string(out))
		}
	}
	run("nproc", "nproc")
	run("kernel", "uname", "-sr")
	run("go", "go", "version")
	run("node", "node", "--version")
	run("redis", "redis-server", "--version")
	run("curl", "sh", "-c", "curl --version | head -1")
	run("commit", "git", "rev-parse", "--short", "HEAD")
	run("worktree_dirty", "sh", "-c", "git status --porcelain -- cmd pkg internal go.mod go.sum | wc -l")
	// Identifies uncommitted worker changes the binary was built with.
	run("worktree_diff_sha256", "sh", "-c", "git diff HEAD -- cmd pkg internal go.mod go.sum | sha256sum | cut -c1-12")
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				f := strings.Fields(line)
				kb, _ := strconv.ParseFloat(f[1], 64)
				m["memory"] = fmt.Sprintf("%.1f GiB", kb/1024/1024)
			}
		}
	}
	if b, err := os.ReadFile("bench/node/node_modules/statsig-node/package.json"); err == nil {
		var p struct{ Version string }
		_ = json.Unmarshal(b, &p)
		m["statsig-node"] = p.Version
	}
	return m
}

type harness struct {
	cfg config
}

// keyNames makes n SDK keys: "secret-" and 32 letters and digits, fixed by n.
func keyNames(n int) []keys.SDKKey {
	const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(uint64(n), 42))
	out := make([]keys.SDKKey, n)
	for i := range out {
		b := []byte(fmt.Sprintf("secret-bench%06d", i))
		for range 20 {
			b = append(b, alnum[r.IntN(len(alnum))])
		}
		out[i] = keys.MustParse(string(b))
	}
	return out
}

func writeKeys(path string, ks []keys.SDKKey) error {
	var b strings.Builder
	for _, k := range ks {
		b.WriteString(k.Reveal())
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

func (h *harness) startFake(dir, keysFile string, filler int) (*proc, string, error) {
	p, line, err := startProc(dir, "fakecdn", nil, "listening ", filepath.Join(h.cfg.bin, "fakecdn"),
		"-keys", keysFile, "-filler", strconv.Itoa(filler), "-interval", h.cfg.Interval.String())
	if err != nil {
		return nil, "", err
	}
	return p, "http://" + strings.TrimPrefix(line, "listening "), nil
}

func (h *harness) workerEnv(keysFile, api string, rs *redisServer, adminPort int, extra ...string) []string {
	return append([]string{
		"STATSIG_SERVER_SDK_KEYS_FILE=" + keysFile,
		"STATSIG_API_URL=" + api,
		fmt.Sprintf("REDIS_URL=redis://127.0.0.1:%d/0", rs.port),
		"POLL_INTERVAL=" + h.cfg.Interval.String(),
		fmt.Sprintf("POLL_CONCURRENCY=%d", h.cfg.Concurrency),
		fmt.Sprintf("ADMIN_ADDR=127.0.0.1:%d", adminPort),
		"LEADER_ELECTION=false",
		"LOG_LEVEL=warn",
	}, append(h.cfg.WorkerEnv, extra...)...)
}

var ctx = context.Background()
