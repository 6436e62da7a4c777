// Command idlists benchmarks the worker's ID lists (issue 12) against the
// floor of doing the same by hand. Run it from the module root:
//
//	go run ./bench/idlists            # 1,000,000 IDs (10 MB), 7 repetitions
//	go run ./bench/idlists -json out.json
//
// It builds the worker as a release binary (CGO_ENABLED=0 go build -trimpath),
// starts a redis-server of its own on a free port, serves the fake CDN
// (internal/fakecdn) over loopback from this process, and measures:
//
//   - first load: a new list of -ids IDs (SampleIDList: 10-byte lines) loaded
//     by the worker (one SDK key, REDIS_KEY_SCHEMAS=hashed: one copy), from
//     the fake receiving the list request to the list renamed into place and
//     to the manifest that announces it; against `curl -s URL | redis-cli -x
//     SET key` on the same file;
//   - the worker's RSS growth over the first load (/proc/<pid>/status
//     VmRSS before, VmHWM after);
//   - an append of 100 lines: list and manifest bytes the fake sent, the
//     worker's id_list_downloaded_bytes_total and id_list_written_bytes_total,
//     and Redis's total_net_input_bytes (INFO stats) over the sync, with the
//     cost of an unchanged sync for comparison;
//   - Redis latency: a PING every 10 ms on a connection of its own, its
//     round trip recorded, idle and during each load (worker and floor);
//   - the same first load with the default REDIS_KEY_SCHEMAS (two copies).
//
// Nothing leaves loopback. It needs redis-server, redis-cli, curl and bash.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/bench/benchkit"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

var (
	nIDs      = flag.Int("ids", 1_000_000, "IDs in the big list (10 bytes each)")
	reps      = flag.Int("reps", 7, "first loads per configuration (each a new list)")
	appendN   = flag.Int("append", 100, "lines in the append measured")
	jsonOut   = flag.String("json", "", "also write the results to this file as JSON")
	keepDir   = flag.Bool("keep", false, "keep the work directory (worker and Redis logs)")
	interval  = flag.Duration("interval", time.Second, "ID_LISTS_POLL_INTERVAL of the worker")
	twoCopies = flag.Bool("schemas", true, "also measure the first load with the default REDIS_KEY_SCHEMAS (hashed,prefix)")
)

var ctx = context.Background()

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	dir, err := os.MkdirTemp("", "idlists-bench")
	if err != nil {
		log.Fatal(err)
	}
	if !*keepDir {
		defer os.RemoveAll(dir)
	} else {
		log.Printf("work directory %s", dir)
	}
	res := &Results{IDs: *nIDs, Machine: benchkit.Machine("redis-server", "curl")}
	bin := filepath.Join(dir, "populator")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/populator")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		log.Fatalf("building the worker (run from the module root): %v", err)
	}

	run := func(schemas string, withFloor, withAppend bool) *Run {
		r, err := runOne(dir, bin, schemas, withFloor, withAppend)
		if err != nil {
			log.Fatalf("%s: %v", schemas, err)
		}
		return r
	}
	res.Runs = append(res.Runs, run("hashed", true, true))
	if *twoCopies {
		res.Runs = append(res.Runs, run("hashed,prefix", false, false))
	}
	res.print(os.Stdout)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	for _, r := range res.Runs {
		if len(r.Errors) > 0 {
			os.Exit(1)
		}
	}
}

// Results is everything measured.
type Results struct {
	IDs     int               `json:"ids"`
	Machine map[string]string `json:"machine"`
	Runs    []*Run            `json:"runs"`
}

// Run is one worker configuration.
type Run struct {
	Schemas   string `json:"schemas"`
	ListBytes int64  `json:"list_bytes"`
	// Worker first loads, seconds: request at the fake → list renamed into
	// place, → manifest written, and from the list's appearance at the CDN
	// (PutIDList) → manifest written (includes the wait for the next sync).
	ToList     []float64 `json:"to_list_s"`
	ToManifest []float64 `json:"to_manifest_s"`
	FromPut    []float64 `json:"from_put_s"`
	// Download: request → last byte sent by the fake.
	Download []float64 `json:"download_s"`
	// Worker memory, kB: VmRSS before the first load, VmHWM before and after
	// it, and VmHWM after every load.
	RSSBeforeKB   int64 `json:"rss_before_kb"`
	HWMBeforeKB   int64 `json:"hwm_before_kb"`
	HWMAfter1KB   int64 `json:"hwm_after_first_kb"`
	RSSAfter1KB   int64 `json:"rss_after_first_kb"`
	HWMAfterAllKB int64 `json:"hwm_after_all_kb"`
	// Floor: curl -s URL | redis-cli -x SET, seconds, and each tool's max RSS.
	Floor        []float64 `json:"floor_s"`
	CurlRSSKB    int64     `json:"curl_max_rss_kb"`
	RedisCLIRSSK int64     `json:"redis_cli_max_rss_kb"`
	// FloorFixed is the same pipeline on a one-line file: what starting
	// bash, curl and redis-cli costs.
	FloorFixed []float64 `json:"floor_fixed_s"`
	// Redis PING round trips, ms, as the harness sees them (its own
	// scheduling included): idle, during the worker's loads, during the
	// floor's.
	LatIdle   Latency `json:"latency_idle"`
	LatWorker Latency `json:"latency_worker_load"`
	LatFloor  Latency `json:"latency_floor_load"`
	// Redis's SLOWLOG with a threshold of 0: the execution time of every
	// command, by command, during the worker's loads and the floor's.
	SlowWorker map[string]Slow `json:"slowlog_worker_load"`
	SlowFloor  map[string]Slow `json:"slowlog_floor_load"`
	// Append of -append lines.
	Append *AppendCost `json:"append,omitempty"`
	Errors []string    `json:"errors,omitempty"`
}

// Latency summarises PING round trips.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Slow summarises SLOWLOG entries of one command.
type Slow struct {
	N      int     `json:"n"`
	MaxMs  float64 `json:"max_ms"`
	SumMs  float64 `json:"sum_ms"`
	Over1  int     `json:"over_1ms"`
	Detail string  `json:"detail,omitempty"`
}

// slowlogStart logs every command's execution time from now on.
func slowlogStart(rdb *redis.Client) {
	rdb.ConfigSet(ctx, "slowlog-log-slower-than", "0")
	rdb.ConfigSet(ctx, "slowlog-max-len", "100000")
	rdb.Do(ctx, "SLOWLOG", "RESET")
}

// slowlogRead summarises the SLOWLOG by command and turns it off.
func slowlogRead(rdb *redis.Client) map[string]Slow {
	entries, _ := rdb.SlowLogGet(ctx, -1).Result()
	rdb.ConfigSet(ctx, "slowlog-log-slower-than", "-1")
	out := map[string]Slow{}
	for _, e := range entries {
		if len(e.Args) == 0 {
			continue
		}
		name := strings.ToLower(e.Args[0])
		s := out[name]
		ms := float64(e.Duration.Microseconds()) / 1000
		s.N++
		s.SumMs += ms
		if ms > 1 {
			s.Over1++
		}
		if ms > s.MaxMs {
			s.MaxMs = ms
		}
		out[name] = s
	}
	return out
}

func slowString(m map[string]Slow) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return int(m[b].MaxMs*1000) - int(m[a].MaxMs*1000) })
	var p []string
	for _, n := range names[:min(4, len(names))] {
		s := m[n]
		p = append(p, fmt.Sprintf("%s ×%d max %.2f ms (sum %.1f ms, %d over 1 ms)", strings.ToUpper(n), s.N, s.MaxMs, s.SumMs, s.Over1))
	}
	return strings.Join(p, "; ")
}

// AppendCost is one append sync, against unchanged syncs.
type AppendCost struct {
	Lines             int     `json:"lines"`
	ListBytes         int64   `json:"new_bytes"`
	FileBodyBytes     int64   `json:"file_body_bytes"`     // list bytes the fake sent
	ManifestBodyBytes int64   `json:"manifest_body_bytes"` // manifest bytes the fake sent in the window
	Downloaded        float64 `json:"downloaded_bytes"`    // id_list_downloaded_bytes_total delta
	WrittenAppend     float64 `json:"written_append_bytes"`
	WrittenReplace    float64 `json:"written_replace_bytes"`
	RedisIn           int64   `json:"redis_net_input_bytes"`
	Syncs             int     `json:"manifest_requests"`
	IdleRedisInSync   float64 `json:"idle_redis_input_per_sync"`
	IdleManifestSync  float64 `json:"idle_manifest_bytes_per_sync"`
	Seconds           float64 `json:"append_to_manifest_s"`
}

// front is the fake CDN with the bookkeeping the benchmark needs: when each
// list request arrived and ended, and the body bytes sent.
type front struct {
	cdn *fakecdn.Server

	mu        sync.Mutex
	fileReqs  []fileReq
	manifests int

	fileBytes, manifestBytes atomic.Int64
}

type fileReq struct {
	Path        string
	Range       string
	Arrived     time.Time
	Done        time.Time
	Bytes       int64
	ManifestIdx int
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, fakecdn.IDListFilePath):
		arrived := time.Now()
		cw := &counter{ResponseWriter: w}
		f.cdn.ServeHTTP(cw, r)
		f.fileBytes.Add(cw.n)
		f.mu.Lock()
		f.fileReqs = append(f.fileReqs, fileReq{Path: r.URL.Path, Range: r.Header.Get("Range"), Arrived: arrived, Done: time.Now(), Bytes: cw.n})
		f.mu.Unlock()
	case strings.HasPrefix(r.URL.Path, fakecdn.IDListManifestPath):
		cw := &counter{ResponseWriter: w}
		f.cdn.ServeHTTP(cw, r)
		f.manifestBytes.Add(cw.n)
		f.mu.Lock()
		f.manifests++
		f.mu.Unlock()
	default:
		f.cdn.ServeHTTP(w, r)
	}
}

func (f *front) requestFor(path string, after time.Time) (fileReq, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, q := range f.fileReqs {
		if q.Path == path && q.Arrived.After(after) {
			return q, true
		}
	}
	return fileReq{}, false
}

func (f *front) manifestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.manifests
}

type counter struct {
	http.ResponseWriter
	n int64
}

func (c *counter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// runOne measures one worker configuration with its own Redis and fake.
func runOne(dir, bin, schemas string, withFloor, withAppend bool) (*Run, error) {
	run := &Run{Schemas: schemas}
	sub := filepath.Join(dir, strings.ReplaceAll(schemas, ",", "-"))
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return nil, err
	}
	log.Printf("[%s] starting redis-server and the fake CDN", schemas)
	rs, err := startRedis(sub)
	if err != nil {
		return nil, err
	}
	defer rs.stop()
	rdb := redis.NewClient(&redis.Options{Addr: rs.addr, PoolSize: 4})
	defer rdb.Close()

	k := keys.MustParse("secret-idlistsbench0123456789abcdef")
	f := &front{cdn: fakecdn.New()}
	f.cdn.SetLogLimit(0)
	f.cdn.SetProject(k, fakecdn.Project{Lcut: 1700000000000, Value: 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	api := "http://" + ln.Addr().String()

	// Keyspace notifications (hash and generic events: HSET, RENAME) time
	// the manifest write and the rename of a list into place without
	// polling Redis.
	if err := rdb.ConfigSet(ctx, "notify-keyspace-events", "Kgh").Err(); err != nil {
		return nil, err
	}
	ev := watchEvents(rs.addr)
	defer ev.close()

	admin := freeAddr()
	env := []string{
		"STATSIG_SERVER_SDK_KEYS=" + k.Reveal(),
		"STATSIG_API_URL=" + api,
		"REDIS_URL=redis://" + rs.addr + "/0",
		"STATSIG_DCS_VERSIONS=v1",
		"REDIS_KEY_SCHEMAS=" + schemas,
		// The config specs are not measured: one poll in the first hour,
		// at a random point, so that it almost never lands in a window.
		"POLL_INTERVAL=1h",
		"ID_LISTS_POLL_INTERVAL=" + interval.String(),
		"LEADER_ELECTION=false",
		"FETCH_TIMEOUT=60s",
		"ADMIN_ADDR=" + admin,
	}
	worker, err := startWorker(sub, bin, env)
	if err != nil {
		return nil, err
	}
	defer worker.stop()
	hashed := keys.Hashed // the first schema in both configurations
	mt := keys.NewManifestTarget("", k, hashed)
	if !benchkit.WaitUntil(30*time.Second, func() bool { return rdb.Exists(ctx, mt.Key).Val() == 1 }) {
		return nil, fmt.Errorf("the worker never wrote the (empty) manifest")
	}
	time.Sleep(2 * time.Second) // let start-up settle before the baseline

	ping := startPinger(rs.addr)
	defer ping.stop()
	time.Sleep(3 * time.Second)
	idleFrom, idleTo := time.Now().Add(-3*time.Second), time.Now()
	run.LatIdle = ping.between([][2]time.Time{{idleFrom, idleTo}})

	st, _ := procStatus(worker.pid())
	run.RSSBeforeKB, run.HWMBeforeKB = st["VmRSS"], st["VmHWM"]
	var windows [][2]time.Time
	var last []byte
	slowlogStart(rdb)
	for i := 0; i < *reps; i++ {
		name := fmt.Sprintf("big%d", i)
		content := fakecdn.SampleIDList(i+1, *nIDs)
		run.ListBytes = int64(len(content))
		lt := keys.NewIDListTarget("", k, hashed, name)
		put := time.Now()
		f.cdn.PutIDList(k, name, "big-file-"+strconv.Itoa(i), 1700000000000, content)
		fileID := "big-file-" + strconv.Itoa(i)
		renamed, ok := ev.wait(lt.Key, "rename_to", put, 120*time.Second)
		if !ok {
			return run, fmt.Errorf("load %d: the list was never renamed into place", i)
		}
		manifested, ok := ev.wait(mt.Key, "hset", renamed, 30*time.Second)
		if !ok {
			return run, fmt.Errorf("load %d: the manifest was never written", i)
		}
		q, ok := f.requestFor(fakecdn.IDListFilePath+fileID, put)
		if !ok {
			return run, fmt.Errorf("load %d: no list request logged", i)
		}
		run.ToList = append(run.ToList, renamed.Sub(q.Arrived).Seconds())
		run.ToManifest = append(run.ToManifest, manifested.Sub(q.Arrived).Seconds())
		run.FromPut = append(run.FromPut, manifested.Sub(put).Seconds())
		run.Download = append(run.Download, q.Done.Sub(q.Arrived).Seconds())
		windows = append(windows, [2]time.Time{q.Arrived, manifested})
		if n := rdb.StrLen(ctx, lt.Key).Val(); n != int64(len(content)) {
			run.Errors = append(run.Errors, fmt.Sprintf("load %d: the list holds %d bytes, want %d", i, n, len(content)))
		}
		log.Printf("[%s] load %d: request → renamed %.3f s, → manifest %.3f s (download %.3f s, from put %.3f s)",
			schemas, i, run.ToList[i], run.ToManifest[i], run.Download[i], run.FromPut[i])
		if i == 0 {
			st, _ := procStatus(worker.pid())
			run.HWMAfter1KB, run.RSSAfter1KB = st["VmHWM"], st["VmRSS"]
		}
		last = content
		time.Sleep(1500 * time.Millisecond)
	}
	st, _ = procStatus(worker.pid())
	run.HWMAfterAllKB = st["VmHWM"]
	run.LatWorker = ping.between(windows)
	run.SlowWorker = slowlogRead(rdb)
	if got, _ := rdb.Get(ctx, keys.NewIDListTarget("", k, hashed, fmt.Sprintf("big%d", *reps-1)).Key).Bytes(); string(got) != string(last) {
		run.Errors = append(run.Errors, "the last list in Redis is not the CDN's file")
	}

	if withFloor {
		url := api + fakecdn.IDListFilePath + "big-file-0"
		f.cdn.PutIDList(k, "one-line", "one-line", 1700000000000, []byte("+abcdefgh\n"))
		for i := 0; i < *reps; i++ {
			t0 := time.Now()
			out, err := exec.Command("bash", "-c", fmt.Sprintf("set -o pipefail; curl -sS %s | redis-cli -p %d -x SET floor:fixed",
				api+fakecdn.IDListFilePath+"one-line", rs.port)).CombinedOutput()
			if err != nil {
				run.Errors = append(run.Errors, fmt.Sprintf("floor on one line: %v: %s", err, out))
				continue
			}
			run.FloorFixed = append(run.FloorFixed, time.Since(t0).Seconds())
		}
		var fw [][2]time.Time
		slowlogStart(rdb)
		for i := 0; i < *reps; i++ {
			key := "floor:" + strconv.Itoa(i)
			t0 := time.Now()
			out, err := exec.Command("bash", "-c", fmt.Sprintf("set -o pipefail; /usr/bin/time -f 'curl %%M' curl -sS %s | /usr/bin/time -f 'redis-cli %%M' redis-cli -p %d -x SET %s",
				url, rs.port, key)).CombinedOutput()
			t1 := time.Now()
			if err != nil {
				run.Errors = append(run.Errors, fmt.Sprintf("floor %d: %v: %s", i, err, out))
				continue
			}
			for _, line := range strings.Split(string(out), "\n") {
				if v, ok := strings.CutPrefix(line, "curl "); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					run.CurlRSSKB = max(run.CurlRSSKB, n)
				}
				if v, ok := strings.CutPrefix(line, "redis-cli "); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					run.RedisCLIRSSK = max(run.RedisCLIRSSK, n)
				}
			}
			run.Floor = append(run.Floor, t1.Sub(t0).Seconds())
			fw = append(fw, [2]time.Time{t0, t1})
			if n := rdb.StrLen(ctx, key).Val(); n != run.ListBytes && n != run.ListBytes+1 {
				run.Errors = append(run.Errors, fmt.Sprintf("floor %d: redis-cli stored %d bytes, want %d", i, n, run.ListBytes))
			}
			log.Printf("[%s] floor %d: %.3f s", schemas, i, run.Floor[i])
			time.Sleep(500 * time.Millisecond)
		}
		run.LatFloor = ping.between(fw)
		run.SlowFloor = slowlogRead(rdb)
	}
	ping.stop()

	if withAppend {
		a, err := measureAppend(f, k, rdb, admin, ev, mt, hashed)
		if err != nil {
			run.Errors = append(run.Errors, "append: "+err.Error())
		}
		run.Append = a
	}
	return run, nil
}

// measureAppend appends -append lines to big0 and measures what the sync
// that picks them up costs, against unchanged syncs before it.
func measureAppend(f *front, k keys.SDKKey, rdb *redis.Client, admin string, ev *events, mt keys.ManifestTarget, sc keys.Schema) (*AppendCost, error) {
	// Unchanged syncs: Redis input and manifest bytes per manifest request.
	idle := 6 * *interval
	in0, man0, n0 := netInput(rdb), f.manifestBytes.Load(), f.manifestCount()
	time.Sleep(idle)
	in1, man1, n1 := netInput(rdb), f.manifestBytes.Load(), f.manifestCount()
	a := &AppendCost{Lines: *appendN}
	if n1 > n0 {
		a.IdleRedisInSync = float64(in1-in0) / float64(n1-n0)
		a.IdleManifestSync = float64(man1-man0) / float64(n1-n0)
	}

	more := fakecdn.SampleIDList(4242, *appendN)
	for i := 0; i < len(more); i += 20 {
		more[i] = '-' // half removals, as a real list's changes are
	}
	a.ListBytes = int64(len(more))
	m0 := metrics(admin)
	in0, man0, file0, n0 := netInput(rdb), f.manifestBytes.Load(), f.fileBytes.Load(), f.manifestCount()
	t0 := time.Now()
	f.cdn.AppendIDList(k, "big0", more)
	lt := keys.NewIDListTarget("", k, sc, "big0")
	if _, ok := ev.wait(mt.Key, "hset", t0, 30*time.Second); !ok {
		return a, fmt.Errorf("no manifest written after the append")
	}
	a.Seconds = time.Since(t0).Seconds()
	time.Sleep(200 * time.Millisecond) // the sync's last steps
	in1, man1, file1, n1 := netInput(rdb), f.manifestBytes.Load(), f.fileBytes.Load(), f.manifestCount()
	m1 := metrics(admin)
	a.RedisIn = in1 - in0
	a.ManifestBodyBytes = man1 - man0
	a.FileBodyBytes = file1 - file0
	a.Syncs = n1 - n0
	a.Downloaded = m1["statsig_populator_id_list_downloaded_bytes_total"] - m0["statsig_populator_id_list_downloaded_bytes_total"]
	a.WrittenAppend = m1[`statsig_populator_id_list_written_bytes_total{mode="append"}`] - m0[`statsig_populator_id_list_written_bytes_total{mode="append"}`]
	a.WrittenReplace = m1[`statsig_populator_id_list_written_bytes_total{mode="replace"}`] - m0[`statsig_populator_id_list_written_bytes_total{mode="replace"}`]
	if n := rdb.StrLen(ctx, lt.Key).Val(); n != int64(*nIDs*10+len(more)) {
		return a, fmt.Errorf("the list holds %d bytes after the append, want %d", n, *nIDs*10+len(more))
	}
	log.Printf("append of %d lines: %+v", *appendN, *a)
	return a, nil
}

// netInput is Redis's total_net_input_bytes. The INFO command itself adds
// about 20 bytes.
func netInput(rdb *redis.Client) int64 {
	s := rdb.Info(ctx, "stats").Val()
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_net_input_bytes:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

func metrics(addr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[line[:i]] = v
			}
		}
	}
	return out
}

// events records keyspace notifications: (key, event) → the times seen.
type events struct {
	ps *redis.PubSub
	c  *redis.Client

	mu   sync.Mutex
	seen map[[2]string][]time.Time
}

func watchEvents(addr string) *events {
	c := redis.NewClient(&redis.Options{Addr: addr})
	e := &events{c: c, ps: c.PSubscribe(ctx, "__keyspace@0__:*"), seen: map[[2]string][]time.Time{}}
	if _, err := e.ps.Receive(ctx); err != nil {
		log.Fatalf("PSUBSCRIBE: %v", err)
	}
	go func() {
		for m := range e.ps.Channel(redis.WithChannelSize(10000)) {
			at := time.Now()
			key := strings.TrimPrefix(m.Channel, "__keyspace@0__:")
			e.mu.Lock()
			e.seen[[2]string{key, m.Payload}] = append(e.seen[[2]string{key, m.Payload}], at)
			e.mu.Unlock()
		}
	}()
	return e
}

// wait returns the first time event happened to key after t0.
func (e *events) wait(key, event string, after time.Time, limit time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for _, at := range e.seen[[2]string{key, event}] {
			if at.After(after) {
				e.mu.Unlock()
				return at, true
			}
		}
		e.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	return time.Time{}, false
}

func (e *events) close() { e.ps.Close(); e.c.Close() }

// pinger sends PING every 10 ms on a connection of its own and records the
// round trips.
type pinger struct {
	c    *redis.Client
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	mu  sync.Mutex
	at  []time.Time
	rtt []time.Duration
}

func startPinger(addr string) *pinger {
	p := &pinger{c: redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1}), done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-tick.C:
			}
			t0 := time.Now()
			if p.c.Ping(ctx).Err() == nil {
				d := time.Since(t0)
				p.mu.Lock()
				p.at, p.rtt = append(p.at, t0), append(p.rtt, d)
				p.mu.Unlock()
			}
		}
	}()
	return p
}

func (p *pinger) stop() {
	p.once.Do(func() { close(p.done); p.wg.Wait(); p.c.Close() })
}

// between summarises the pings sent within any of the windows.
func (p *pinger) between(windows [][2]time.Time) Latency {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ms []float64
	for i, at := range p.at {
		for _, w := range windows {
			if !at.Before(w[0]) && !at.After(w[1]) {
				ms = append(ms, float64(p.rtt[i].Microseconds())/1000)
				break
			}
		}
	}
	if len(ms) == 0 {
		return Latency{}
	}
	slices.Sort(ms)
	q := func(f float64) float64 { return ms[min(len(ms)-1, int(f*float64(len(ms))))] }
	return Latency{N: len(ms), P50: q(0.5), P99: q(0.99), Max: ms[len(ms)-1]}
}

// Processes.

type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func startChild(logPath string, env []string, argv ...string) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); lf.Close(); close(c.done) }()
	return c, nil
}

func startWorker(dir, bin string, env []string) (*child, error) {
	return startChild(filepath.Join(dir, "worker.log"), env, bin)
}

type redisServer struct {
	*child
	port int
	addr string
}

func startRedis(dir string) (*redisServer, error) {
	for attempt := 0; attempt < 5; attempt++ {
		port := benchkit.FreePort()
		c, err := startChild(filepath.Join(dir, "redis.log"), nil, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "no")
		if err != nil {
			return nil, err
		}
		rs := &redisServer{child: c, port: port, addr: "127.0.0.1:" + strconv.Itoa(port)}
		cl := redis.NewClient(&redis.Options{Addr: rs.addr, MaxRetries: -1})
		ok := benchkit.WaitUntil(10*time.Second, func() bool { return cl.Ping(ctx).Err() == nil })
		cl.Close()
		if ok {
			return rs, nil
		}
		c.stop()
	}
	return nil, fmt.Errorf("redis-server did not start")
}

func freeAddr() string { return "127.0.0.1:" + strconv.Itoa(benchkit.FreePort()) }

// procStatus reads the kB fields of /proc/<pid>/status.
func procStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, " kB")), 10, 64)
		if err == nil {
			out[name] = n
		}
	}
	return out, nil
}

// Output.

func list(xs []float64) string {
	var p []string
	for _, x := range xs {
		p = append(p, fmt.Sprintf("%.3f", x))
	}
	return strings.Join(p, ", ")
}

func (r *Results) print(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "\nID lists benchmark, %s: %s × %s, kernel %s, %s, %s, %s, commit %s\n\n", m["date"], m["cpu"], m["nproc"], m["kernel"], m["go"], m["redis"], m["curl"], m["commit"])
	for _, run := range r.Runs {
		fmt.Fprintf(w, "### First load of %d IDs (%.1f MB), REDIS_KEY_SCHEMAS=%s\n\n", r.IDs, float64(run.ListBytes)/1e6, run.Schemas)
		fmt.Fprintln(w, "| | median | samples |")
		fmt.Fprintln(w, "|---|---|---|")
		fmt.Fprintf(w, "| worker: list request at the CDN → list renamed into place | %.3f s | %s |\n", benchkit.Median(run.ToList), list(run.ToList))
		fmt.Fprintf(w, "| worker: list request at the CDN → manifest written | %.3f s | %s |\n", benchkit.Median(run.ToManifest), list(run.ToManifest))
		fmt.Fprintf(w, "| (of which the CDN sending the file) | %.3f s | %s |\n", benchkit.Median(run.Download), list(run.Download))
		fmt.Fprintf(w, "| worker: list put at the CDN → manifest written (waits for the next sync) | %.3f s | %s |\n", benchkit.Median(run.FromPut), list(run.FromPut))
		if len(run.Floor) > 0 {
			fmt.Fprintf(w, "| floor: `curl -s URL \\| redis-cli -x SET key` | %.3f s | %s |\n", benchkit.Median(run.Floor), list(run.Floor))
			fmt.Fprintf(w, "| floor on a one-line file (starting bash, curl and redis-cli) | %.3f s | %s |\n", benchkit.Median(run.FloorFixed), list(run.FloorFixed))
			fmt.Fprintf(w, "\nWorker / floor (request → manifest vs the pipeline): %.2f×; against the floor less its fixed cost: %.2f×. curl max RSS %.1f MB, redis-cli %.1f MB.\n",
				benchkit.Median(run.ToManifest)/benchkit.Median(run.Floor), benchkit.Median(run.ToManifest)/(benchkit.Median(run.Floor)-benchkit.Median(run.FloorFixed)), float64(run.CurlRSSKB)/1024, float64(run.RedisCLIRSSK)/1024)
		}
		fmt.Fprintf(w, "\nWorker memory: VmRSS %.1f MB before the first load (VmHWM %.1f MB); after it VmHWM %.1f MB, VmRSS %.1f MB: growth %.1f MB (VmHWM after − VmRSS before); VmHWM after %d loads %.1f MB.\n",
			kb(run.RSSBeforeKB), kb(run.HWMBeforeKB), kb(run.HWMAfter1KB), kb(run.RSSAfter1KB), kb(run.HWMAfter1KB-run.RSSBeforeKB), len(run.ToList), kb(run.HWMAfterAllKB))
		fmt.Fprintf(w, "\nRedis PING round trip (every 10 ms): idle p50 %.2f / p99 %.2f / max %.2f ms (%d); during the worker's loads p50 %.2f / p99 %.2f / max %.2f ms (%d)",
			run.LatIdle.P50, run.LatIdle.P99, run.LatIdle.Max, run.LatIdle.N, run.LatWorker.P50, run.LatWorker.P99, run.LatWorker.Max, run.LatWorker.N)
		if run.LatFloor.N > 0 {
			fmt.Fprintf(w, "; during the floor's p50 %.2f / p99 %.2f / max %.2f ms (%d)", run.LatFloor.P50, run.LatFloor.P99, run.LatFloor.Max, run.LatFloor.N)
		}
		fmt.Fprintln(w, ".")
		fmt.Fprintf(w, "\nRedis SLOWLOG (every command's execution time) during the worker's loads: %s.\n", slowString(run.SlowWorker))
		if run.SlowFloor != nil {
			fmt.Fprintf(w, "During the floor's: %s.\n", slowString(run.SlowFloor))
		}
		if a := run.Append; a != nil {
			fmt.Fprintf(w, "\nAppend of %d lines (%d bytes), picked up %.3f s after it was made (%d manifest requests in the window): list body bytes sent by the CDN %d, manifest body bytes %d; id_list_downloaded_bytes_total +%.0f; id_list_written_bytes_total append +%.0f, replace +%.0f; Redis total_net_input_bytes +%d. An unchanged sync: %.0f bytes into Redis, %.0f manifest bytes.\n",
				a.Lines, a.ListBytes, a.Seconds, a.Syncs, a.FileBodyBytes, a.ManifestBodyBytes, a.Downloaded, a.WrittenAppend, a.WrittenReplace, a.RedisIn, a.IdleRedisInSync, a.IdleManifestSync)
		}
		for _, e := range run.Errors {
			fmt.Fprintf(w, "\nERROR: %s\n", e)
		}
		fmt.Fprintln(w)
	}
}

func kb(n int64) float64 { return float64(n) / 1024 }
