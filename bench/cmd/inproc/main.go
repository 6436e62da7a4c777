// Command inproc runs the worker's packages in this process, wired as
// cmd/populator wires them (configuration from the same environment
// variables, the same fetcher transport, writer, poller and metrics; no admin
// server and no keys-file watcher), so that Go's own profilers can see them:
// after the first sync and a warm-up interval it records a CPU profile and
// the allocations (heap profile difference) over a window of whole intervals
// and reports allocations per poll. The worker binary has no pprof endpoint;
// this is the benchmark's way in.
//
//	inproc -out DIR -intervals 2 -fake http://127.0.0.1:PORT
//
// Writes DIR/inproc-cpu.pprof, DIR/inproc-allocs-{before,after}.pprof and
// prints one JSON line with the window's figures.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/statsig-populator/statsig-populator/bench/benchapi"
	"github.com/statsig-populator/statsig-populator/internal/wiring"
	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/logging"
	"github.com/statsig-populator/statsig-populator/pkg/metrics"
	"github.com/statsig-populator/statsig-populator/pkg/poller"
	"github.com/statsig-populator/statsig-populator/pkg/redisconn"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

func main() {
	config.DefaultMaxProcs() // as cmd/populator
	out := flag.String("out", ".", "directory for the profiles")
	intervals := flag.Int("intervals", 2, "intervals in the measured window")
	fake := flag.String("fake", "", "the fake CDN's base URL, to count polls (its /_bench/ endpoints)")
	bigReps := flag.Int("big", 0, "instead of polling: fetch, validate and write the (single, big) key's payload this many times and report the allocations of each phase")
	flag.Parse()
	// Allocation sampling every 64 KiB from the start, so that the live-heap
	// profile is consistent and its cost stays small in the CPU profile.
	runtime.MemProfileRate = 64 << 10

	cfg, err := config.Load(true)
	if err != nil {
		log.Fatal(err)
	}
	lg := logging.New(io.Discard, cfg.LogLevel, cfg.LogFormat)
	rdb, err := redisconn.New(cfg.Redis)
	if err != nil {
		log.Fatal(err)
	}
	f := fetcher.New(wiring.FetcherOptions(cfg, "statsig-populator/bench"))
	w := writer.New(rdb, cfg.KeyTTL)
	if *bigReps > 0 {
		bigPayload(cfg, f, w, *fake, *bigReps)
		return
	}
	p := poller.New(wiring.PollerOptions(cfg, nil), f, w, lg, metrics.New(cfg.MetricsPerKey))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()

	t0 := time.Now()
	for {
		all := true
		for _, s := range p.Statuses() {
			if !s.Confirmed {
				all = false
				break
			}
		}
		if all {
			break
		}
		if time.Since(t0) > 10*time.Minute {
			log.Fatal("first sync incomplete after 10 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	sync := time.Since(t0)
	time.Sleep(cfg.PollInterval) // warm-up

	get := func(path string) {
		resp, err := http.Get(*fake + "/_bench/" + path)
		if err == nil {
			resp.Body.Close()
		}
	}
	var stats benchapi.Stats
	writeProfile := func(name string) {
		f, err := os.Create(filepath.Join(*out, name))
		if err != nil {
			log.Fatal(err)
		}
		runtime.GC()
		_ = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}

	// Window 1: CPU profile. Window 2: allocation sites (heap profile
	// difference). MemStats counts over both are exact.
	get("reset")
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	cpuf, err := os.Create(filepath.Join(*out, "inproc-cpu.pprof"))
	if err != nil {
		log.Fatal(err)
	}
	_ = pprof.StartCPUProfile(cpuf)
	time.Sleep(time.Duration(*intervals) * cfg.PollInterval)
	pprof.StopCPUProfile()
	cpuf.Close()
	writeProfile("inproc-allocs-before.pprof")
	time.Sleep(time.Duration(*intervals) * cfg.PollInterval)
	writeProfile("inproc-allocs-after.pprof")
	elapsed := time.Since(start)
	runtime.ReadMemStats(&ms1)
	if resp, err := http.Get(*fake + "/_bench/stats"); err == nil {
		_ = json.NewDecoder(resp.Body).Decode(&stats)
		resp.Body.Close()
	}
	cancel()
	<-done

	polls := float64(max(stats.Requests, 1))
	res := map[string]any{
		"jobs":             len(cfg.SDKKeys) * len(cfg.Versions),
		"sync_seconds":     sync.Seconds(),
		"window_seconds":   elapsed.Seconds(),
		"polls":            stats.Requests,
		"mallocs_per_poll": float64(ms1.Mallocs-ms0.Mallocs) / polls,
		"bytes_per_poll":   float64(ms1.TotalAlloc-ms0.TotalAlloc) / polls,
		"gc_cycles":        ms1.NumGC - ms0.NumGC,
		"heap_inuse_mb":    float64(ms1.HeapInuse) / (1 << 20),
		"goroutines":       runtime.NumGoroutine(),
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
}

// bigPayload fetches the one configured key's payload (changed before each
// repetition) and writes it to its first target, measuring time and heap
// allocation of the fetch (download, gunzip, validation) and of the write
// (the Redis script call) separately.
func bigPayload(cfg config.Config, f *fetcher.Client, w *writer.Writer, fake string, reps int) {
	k, v := cfg.SDKKeys[0], cfg.Versions[0]
	t := cfg.Layout.Targets(k, v)[0]
	ctx := context.Background()
	type phase struct {
		Seconds    float64 `json:"seconds"`
		AllocBytes uint64  `json:"alloc_bytes"`
		Mallocs    uint64  `json:"mallocs"`
	}
	var out []map[string]any
	for i := range reps {
		resp, err := http.Get(fake + "/_bench/change?key=" + k.Reveal())
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		runtime.GC()
		var m0, m1, m2 runtime.MemStats
		runtime.ReadMemStats(&m0)
		t0 := time.Now()
		res := f.Fetch(ctx, k, v, 0)
		t1 := time.Now()
		runtime.ReadMemStats(&m1)
		if res.Outcome != fetcher.Updated {
			log.Fatalf("fetch: %v %v", res.Outcome, res.Err)
		}
		wr, err := w.Write(ctx, t, &writer.Payload{Body: res.Body, Lcut: res.Meta.Time})
		t2 := time.Now()
		runtime.ReadMemStats(&m2)
		if err != nil || !wr.Written {
			log.Fatalf("write: %+v %v", wr, err)
		}
		vt0 := time.Now()
		if _, err := fetcher.Validate(res.Body, v, k.HashedSDKKeyUsed()); err != nil {
			log.Fatal(err)
		}
		validate := time.Since(vt0)
		out = append(out, map[string]any{
			"rep": i, "payload_bytes": len(res.Body),
			"fetch":            phase{t1.Sub(t0).Seconds(), m1.TotalAlloc - m0.TotalAlloc, m1.Mallocs - m0.Mallocs},
			"write":            phase{t2.Sub(t1).Seconds(), m2.TotalAlloc - m1.TotalAlloc, m2.Mallocs - m1.Mallocs},
			"validate_seconds": validate.Seconds(),
			"heap_inuse_mb":    float64(m2.HeapInuse) / (1 << 20),
		})
	}
	b, _ := json.Marshal(map[string]any{"big": out})
	fmt.Println(string(b))
}
