package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/statsig-populator/statsig-populator/bench/benchkit"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// BigResult is one big payload: the worker against curl + redis-cli.
type BigResult struct {
	PayloadBytes int64 `json:"payload_bytes"`
	GzipBytes    int64 `json:"gzip_bytes"`
	// Worker: from the fake receiving the request to Redis announcing the HSET.
	WorkerSeconds []float64 `json:"worker_seconds"`
	WorkerMedian  float64   `json:"worker_median"`
	// RSS before the first big payload and the peak after all repetitions.
	WorkerBaseRSSKB int64   `json:"worker_base_rss_kb"`
	WorkerHWMKB     int64   `json:"worker_hwm_kb"`
	WorkerGrowthKB  int64   `json:"worker_growth_kb"`
	GrowthRatio     float64 `json:"growth_ratio"` // growth / payload
	Discarded       int     `json:"discarded"`    // samples where the fake was still generating
	// Floor: curl --compressed to a file, then redis-cli -x HSET, each timed.
	FloorSeconds     []float64 `json:"floor_seconds"`
	FloorMedian      float64   `json:"floor_median"`
	FloorCurlMedian  float64   `json:"floor_curl_median"`
	FloorRedisMedian float64   `json:"floor_redis_median"`
	CurlMaxRSSKB     int64     `json:"curl_max_rss_kb"`
	RedisCLIMaxRSSKB int64     `json:"redis_cli_max_rss_kb"`
	Ratio            float64   `json:"ratio"` // worker median / floor median
	// The worker's packages in-process (bench/cmd/inproc -big): time and heap
	// allocation of the fetch (download, gunzip, validation) and the write.
	Inproc json.RawMessage `json:"inproc,omitempty"`
	Errors []string        `json:"errors,omitempty"`
}

type changeResp struct {
	Change struct {
		Key  string `json:"key"`
		Lcut int64  `json:"lcut"`
		AtNs int64  `json:"at_ns"`
	} `json:"change"`
	PrewarmMs int64 `json:"prewarm_ms"`
}

type fullReq struct {
	ArrivalNs int64 `json:"arrival_ns"`
	DoneNs    int64 `json:"done_ns"`
	Bytes     int64 `json:"bytes"`
	Lcut      int64 `json:"lcut"`
	Prewarmed bool  `json:"prewarmed"`
}

// runBig measures one payload of -big-filler (≈20 MB): the worker (one key,
// v1 only, one target key, POLL_INTERVAL 2s so repetitions are quick) from
// the request reaching the fake to the HSET in Redis, and its peak memory;
// then curl + redis-cli doing the same by hand.
func (h *harness) runBig() (*BigResult, error) {
	c := h.cfg
	res := &BigResult{}
	dir := filepath.Join(c.out, "logs", "big")
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	k := keyNames(1)[0]
	keysFile := filepath.Join(dir, "keys.txt")
	if err := writeKeys(keysFile, []keys.SDKKey{k}); err != nil {
		return nil, err
	}
	defer os.Remove(keysFile)
	logf("big: one payload of filler %d, %d repetitions, worker then curl+redis-cli", c.BigFiller, c.BigReps)
	rs, err := startRedis(dir)
	if err != nil {
		return nil, err
	}
	defer rs.stop()
	w, err := rs.watch()
	if err != nil {
		return nil, err
	}
	defer w.close()
	w.start()
	fake, api, err := h.startFake(dir, keysFile, 0)
	if err != nil {
		return nil, err
	}
	defer fake.stop()
	env := h.workerEnv(keysFile, api, rs, freePort(), "STATSIG_DCS_VERSIONS=v1", "REDIS_KEY_SCHEMAS=hashed", "POLL_INTERVAL=2s")
	worker, _, err := startProc(dir, "populator", env, "", filepath.Join(c.bin, "populator"))
	if err != nil {
		return nil, err
	}
	defer worker.stop()
	target := keys.Targets("", k, keys.V1, []keys.Schema{keys.Hashed})[0].Key
	for i := 0; ; i++ {
		if n, _ := rs.rdb.Exists(ctx, target).Result(); n == 1 {
			break
		}
		if i > 300 {
			return nil, fmt.Errorf("worker did not write the small payload")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	res.WorkerBaseRSSKB, _ = memKB(worker.pid())

	for rep, attempts := 0, 0; rep < c.BigReps && attempts < 3*c.BigReps; attempts++ {
		path := "change?key=" + k.Reveal()
		if attempts == 0 {
			path += "&filler=" + strconv.Itoa(c.BigFiller)
		}
		var cr changeResp
		if err := h.fakeJSON(api, path, &cr); err != nil {
			return res, err
		}
		e, ok := w.waitFor(target, cr.Change.Lcut, 30*time.Second)
		if !ok {
			res.Errors = append(res.Errors, fmt.Sprintf("change %d never reached Redis", attempts))
			continue
		}
		var fr fullReq
		_ = h.fakeJSON(api, "last?key="+k.Reveal(), &fr)
		if !fr.Prewarmed || fr.Lcut < cr.Change.Lcut {
			res.Discarded++
			continue
		}
		res.GzipBytes = fr.Bytes
		d := e.at.Sub(time.Unix(0, fr.ArrivalNs)).Seconds()
		res.WorkerSeconds = append(res.WorkerSeconds, d)
		logf("big: worker rep %d: %.3f s (fake sent %d gzip bytes in %.3f s)", rep, d, fr.Bytes, float64(fr.DoneNs-fr.ArrivalNs)/1e9)
		rep++
	}
	size, _ := rs.rdb.HStrLen(ctx, target, "config").Result()
	res.PayloadBytes = size
	_, res.WorkerHWMKB = memKB(worker.pid())
	res.WorkerGrowthKB = res.WorkerHWMKB - res.WorkerBaseRSSKB
	if size > 0 {
		res.GrowthRatio = float64(res.WorkerGrowthKB*1024) / float64(size)
	}
	worker.stop()

	// The floor, with the worker stopped: same fake, same Redis.
	file := filepath.Join(dir, "payload.json")
	defer os.Remove(file)
	var curlTimes, redisTimes []float64
	url := api + keys.V1.DCSPath() + "/" + k.Reveal() + ".json"
	for rep := 0; rep < c.BigReps; rep++ {
		var cr changeResp
		if err := h.fakeJSON(api, "change?key="+k.Reveal(), &cr); err != nil {
			return res, err
		}
		t0 := time.Now()
		ct, crss, err := timed("curl", "-sS", "--compressed", "-o", file, url)
		if err != nil {
			res.Errors = append(res.Errors, "curl: "+err.Error())
			continue
		}
		rt, rrss, err := timedStdin(file, "redis-cli", "-p", strconv.Itoa(rs.port), "-x", "HSET", "bench-floor", "config")
		if err != nil {
			res.Errors = append(res.Errors, "redis-cli: "+err.Error())
			continue
		}
		total := time.Since(t0).Seconds()
		res.FloorSeconds = append(res.FloorSeconds, total)
		curlTimes, redisTimes = append(curlTimes, ct), append(redisTimes, rt)
		res.CurlMaxRSSKB, res.RedisCLIMaxRSSKB = max(res.CurlMaxRSSKB, crss), max(res.RedisCLIMaxRSSKB, rrss)
		logf("big: floor rep %d: %.3f s (curl %.3f, redis-cli %.3f)", rep, total, ct, rt)
	}
	if n, _ := rs.rdb.HStrLen(ctx, "bench-floor", "config").Result(); n != size+1 && n != size {
		res.Errors = append(res.Errors, fmt.Sprintf("redis-cli stored %d bytes, the worker %d", n, size))
	}
	// The same fetch and write in-process, to see what each phase allocates.
	cmd := exec.Command(filepath.Join(c.bin, "inproc"), "-big", "3", "-fake", api)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	if out, err := cmd.Output(); err == nil {
		res.Inproc = json.RawMessage(strings.TrimSpace(string(out)))
		logf("big: in-process: %s", res.Inproc)
	} else {
		res.Errors = append(res.Errors, "inproc -big: "+err.Error())
	}
	res.WorkerMedian = benchkit.Median(res.WorkerSeconds)
	res.FloorMedian = benchkit.Median(res.FloorSeconds)
	res.FloorCurlMedian, res.FloorRedisMedian = benchkit.Median(curlTimes), benchkit.Median(redisTimes)
	if res.FloorMedian > 0 {
		res.Ratio = res.WorkerMedian / res.FloorMedian
	}
	logf("big: %d bytes: worker %.3f s, floor %.3f s (%.2f×); worker RSS +%d MB (%.1f× the payload)",
		size, res.WorkerMedian, res.FloorMedian, res.Ratio, res.WorkerGrowthKB/1024, res.GrowthRatio)
	return res, nil
}

// timed runs argv under /usr/bin/time and returns wall seconds and max RSS.
func timed(argv ...string) (float64, int64, error) { return timedStdin("", argv...) }

func timedStdin(stdin string, argv ...string) (float64, int64, error) {
	tf, err := os.CreateTemp("", "bench-time-")
	if err != nil {
		return 0, 0, err
	}
	tf.Close()
	defer os.Remove(tf.Name())
	args := append([]string{"-f", "%e %M", "-o", tf.Name()}, argv...)
	cmd := exec.Command("/usr/bin/time", args...)
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		cmd.Stdin = f
	}
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(t0).Seconds()
	if err != nil {
		return 0, 0, fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	b, _ := os.ReadFile(tf.Name())
	f := strings.Fields(string(b))
	var rss int64
	if len(f) >= 2 {
		rss, _ = strconv.ParseInt(f[1], 10, 64)
	}
	return wall, rss, nil
}
