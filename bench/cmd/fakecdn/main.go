// Command fakecdn is the benchmark's CDN: the repository's fake
// (internal/fakecdn) serving N keys, with bookkeeping the benchmark needs and
// the fake lacks:
//
//   - per (key, version) request gaps, so the harness can see how late each
//     poll started compared with the poll interval (schedule slip) without
//     asking the client under test;
//   - a change loop that changes a chosen fraction of the keys per interval,
//     spread evenly over the interval; each change sets the key's lcut to the
//     wall-clock time of the change, so "now − lcut" in Redis is the
//     propagation delay, and is logged for the harness;
//   - bodies generated and gzipped ahead of the requests (at start and after
//     each change), so the client under test never waits for the fake.
//
// Control endpoints under /_bench/ (stats, reset, rate, change, set, changes).
// It prints "listening ADDR" on stdout once it serves. Loopback only.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/statsig-populator/statsig-populator/bench/benchapi"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback)")
	keysFile := flag.String("keys", "", "file with one SDK key per line")
	filler := flag.Int("filler", 16, "fakecdn.Project.Filler: extra ~520-byte dynamic configs per payload")
	interval := flag.Duration("interval", 10*time.Second, "the clients' poll interval (for gaps and the change rate)")
	flag.Parse()

	ks, err := readKeys(*keysFile)
	if err != nil {
		log.Fatal(err)
	}
	b := newBench(ks, *filler, *interval)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if !strings.HasPrefix(ln.Addr().String(), "127.") && !strings.HasPrefix(ln.Addr().String(), "[::1]") {
		log.Fatalf("refusing to listen on %s: loopback only", ln.Addr())
	}
	fmt.Printf("listening %s\n", ln.Addr())
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}

func readKeys(path string) ([]keys.SDKKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []keys.SDKKey
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := keys.Parse(line)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, sc.Err()
}

var versions = []keys.Version{keys.V1, keys.V2}

type change struct {
	Key  string `json:"key"`
	Lcut int64  `json:"lcut"` // epoch ms, = the change's wall-clock time
	AtNs int64  `json:"at_ns"`
}

type bench struct {
	srv      *fakecdn.Server
	keys     []keys.SDKKey
	index    map[string]int
	interval time.Duration

	mu         sync.Mutex
	last       [][2]int64 // per key and version: unix ns of the last request
	gaps       []int32    // ms between consecutive requests of one (key, version), in the window
	maxGap     [][2]int32 // per key and version, in the window
	polled     [][2]int32 // requests per key and version in the window
	requests   int64
	full       int64
	noUpdate   int64
	other      int64
	bytesOut   int64
	start      time.Time
	changes    []change
	lastFull   map[string]fullReq
	otherPaths map[string]int64     // requests that are not a DCS request for a known key, by path (keys masked)
	warming    map[string]time.Time // key → end of its last prewarm

	frac    float64
	rateGen int // bumped to stop the previous change loop
}

type fullReq struct {
	ArrivalNs int64 `json:"arrival_ns"`
	DoneNs    int64 `json:"done_ns"`
	Bytes     int64 `json:"bytes"`
	Lcut      int64 `json:"lcut"`
	Prewarmed bool  `json:"prewarmed"` // the body was ready before the request arrived
}

func newBench(ks []keys.SDKKey, filler int, interval time.Duration) *bench {
	s := fakecdn.New()
	s.SetLogLimit(0)
	b := &bench{srv: s, keys: ks, index: map[string]int{}, interval: interval,
		last: make([][2]int64, len(ks)), maxGap: make([][2]int32, len(ks)), polled: make([][2]int32, len(ks)),
		start: time.Now(), lastFull: map[string]fullReq{}, warming: map[string]time.Time{}, otherPaths: map[string]int64{}}
	now := time.Now().UnixMilli()
	for i, k := range ks {
		b.index[k.Reveal()] = i
		s.SetProject(k, fakecdn.Project{Lcut: now, Value: 1, Filler: filler})
	}
	// Generate and gzip every body now, on two cores, before anyone asks.
	var wg sync.WaitGroup
	for part := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := part; i < len(ks); i += 2 {
				b.prewarm(ks[i])
			}
		}()
	}
	wg.Wait()
	return b
}

// prewarm asks the fake for both versions, gzipped, so that it caches them.
func (b *bench) prewarm(k keys.SDKKey) {
	for _, v := range versions {
		req := httptest.NewRequest(http.MethodGet, v.DCSPath()+"/"+k.Reveal()+".json", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		b.srv.ServeHTTP(httptest.NewRecorder(), req)
	}
	b.mu.Lock()
	b.warming[k.Reveal()] = time.Now()
	b.mu.Unlock()
}

// unwarm forgets that k's bodies are ready (they are about to change).
func (b *bench) unwarm(k keys.SDKKey) {
	b.mu.Lock()
	delete(b.warming, k.Reveal())
	b.mu.Unlock()
}

// parse finds the key index and version of a DCS path cheaply.
func (b *bench) parse(p string) (int, int, string) {
	for vi, v := range versions {
		prefix := v.DCSPath() + "/"
		if strings.HasPrefix(p, prefix) && strings.HasSuffix(p, ".json") {
			key := p[len(prefix) : len(p)-len(".json")]
			if i, ok := b.index[key]; ok {
				return i, vi, key
			}
			return -1, vi, key
		}
	}
	return -1, -1, ""
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(s int) { r.status = s; r.ResponseWriter.WriteHeader(s) }
func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (b *bench) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_bench/") {
		b.control(w, r)
		return
	}
	arrival := time.Now()
	i, vi, key := b.parse(r.URL.Path)
	if i >= 0 {
		t := arrival.UnixNano()
		b.mu.Lock()
		if prev := b.last[i][vi]; prev != 0 {
			g := int32((t - prev) / 1e6)
			b.gaps = append(b.gaps, g)
			if g > b.maxGap[i][vi] {
				b.maxGap[i][vi] = g
			}
		}
		b.last[i][vi] = t
		b.polled[i][vi]++
		b.mu.Unlock()
	}
	rec := &recorder{ResponseWriter: w, status: 200}
	b.srv.ServeHTTP(rec, r)
	done := time.Now()
	hit := rec.Header().Get("X-Cache-Hit")
	b.mu.Lock()
	defer b.mu.Unlock()
	if i < 0 {
		// Not a poll of a known key (an SDK's other endpoints): counted apart.
		if len(b.otherPaths) < 50 {
			p := r.Method + " " + r.URL.Path
			if key != "" {
				p = strings.Replace(p, key, "KEY", 1)
			}
			b.otherPaths[p]++
		}
		return
	}
	b.requests++
	b.bytesOut += rec.bytes
	switch {
	case rec.status == 200 && hit == "true":
		b.noUpdate++
	case rec.status == 200:
		b.full++
		lcut, _ := strconv.ParseInt(rec.Header().Get("X-Since-Time"), 10, 64)
		warmed := b.warming[key]
		b.lastFull[key] = fullReq{ArrivalNs: arrival.UnixNano(), DoneNs: done.UnixNano(), Bytes: rec.bytes, Lcut: lcut,
			Prewarmed: !warmed.IsZero() && warmed.Before(arrival)}
	default:
		b.other++
	}
}

func (b *bench) stats(versionsPolled int) benchapi.Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := benchapi.Stats{WindowSeconds: time.Since(b.start).Seconds(), Requests: b.requests, Full: b.full, NoUpdate: b.noUpdate,
		Other: b.other, BytesOut: b.bytesOut, Changes: len(b.changes), OtherPaths: maps.Clone(b.otherPaths)}
	gaps := slices.Clone(b.gaps)
	slices.Sort(gaps)
	st.Gaps = len(gaps)
	lim := int32(b.interval.Milliseconds() * 11 / 10)
	if len(gaps) > 0 {
		pct := func(s []int32, q float64) int32 { return s[min(len(s)-1, int(q*float64(len(s))))] }
		st.GapP50, st.GapP99, st.GapMax = pct(gaps, .5), pct(gaps, .99), gaps[len(gaps)-1]
		slip := make([]int32, len(gaps))
		for i, g := range gaps {
			slip[i] = max(0, g-lim)
			if g > lim+1000 {
				st.LateGaps++
			}
		}
		st.SlipP50, st.SlipP99, st.SlipP999, st.SlipMax = pct(slip, .5), pct(slip, .99), pct(slip, .999), slip[len(slip)-1]
		st.LateFrac = float64(st.LateGaps) / float64(len(gaps))
	}
	for i := range b.keys {
		for vi := range versionsPolled {
			st.Pairs++
			if b.polled[i][vi] == 0 {
				st.Unpolled++
			}
			if b.maxGap[i][vi] > int32(2*b.interval.Milliseconds()) {
				st.MissedInt++
			}
		}
	}
	return st
}

func (b *bench) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.start = time.Now()
	b.gaps = b.gaps[:0]
	b.requests, b.full, b.noUpdate, b.other, b.bytesOut = 0, 0, 0, 0, 0
	b.changes = nil
	b.otherPaths = map[string]int64{}
	for i := range b.keys {
		b.maxGap[i] = [2]int32{}
		b.polled[i] = [2]int32{}
	}
}

// changeKey sets k's lcut to now (and bumps its value), then regenerates its
// bodies.
func (b *bench) changeKey(k keys.SDKKey) change {
	b.unwarm(k)
	now := time.Now()
	p := b.srv.Project(k)
	step := max(now.UnixMilli()-p.Lcut, 1)
	p = b.srv.Change(k, step)
	c := change{Key: k.Reveal(), Lcut: p.Lcut, AtNs: now.UnixNano()}
	b.mu.Lock()
	b.changes = append(b.changes, c)
	b.mu.Unlock()
	b.prewarm(k)
	return c
}

// setRate starts changing frac × N keys per interval, evenly spread; 0 stops.
func (b *bench) setRate(frac float64) {
	b.mu.Lock()
	b.rateGen++
	gen := b.rateGen
	b.frac = frac
	b.mu.Unlock()
	perInterval := frac * float64(len(b.keys))
	if perInterval <= 0 {
		return
	}
	period := time.Duration(float64(b.interval) / perInterval)
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for range t.C {
			b.mu.Lock()
			stop := b.rateGen != gen
			b.mu.Unlock()
			if stop {
				return
			}
			b.changeKey(b.keys[rand.IntN(len(b.keys))])
		}
	}()
}

func (b *bench) control(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	switch strings.TrimPrefix(r.URL.Path, "/_bench/") {
	case "stats":
		nv, _ := strconv.Atoi(q.Get("versions"))
		if nv <= 0 || nv > 2 {
			nv = 2
		}
		_ = enc.Encode(b.stats(nv))
	case "reset":
		b.reset()
		_ = enc.Encode(map[string]bool{"ok": true})
	case "rate":
		f, err := strconv.ParseFloat(q.Get("frac"), 64)
		if err != nil || f < 0 || f > 1 {
			http.Error(w, "frac in [0,1]", http.StatusBadRequest)
			return
		}
		b.setRate(f)
		_ = enc.Encode(map[string]float64{"frac": f})
	case "changes":
		b.mu.Lock()
		cs := slices.Clone(b.changes)
		b.mu.Unlock()
		_ = enc.Encode(cs)
	case "change", "set":
		k, err := keys.Parse(q.Get("key"))
		if _, ok := b.index[q.Get("key")]; err != nil || !ok {
			http.Error(w, "unknown key", http.StatusBadRequest)
			return
		}
		if f := q.Get("filler"); f != "" {
			b.unwarm(k)
			n, _ := strconv.Atoi(f)
			p := b.srv.Project(k)
			p.Filler = n
			b.srv.SetProject(k, p)
		}
		start := time.Now()
		c := b.changeKey(k)
		_ = enc.Encode(map[string]any{"change": c, "prewarm_ms": time.Since(start).Milliseconds()})
	case "last":
		b.mu.Lock()
		fr := b.lastFull[q.Get("key")]
		b.mu.Unlock()
		_ = enc.Encode(fr)
	default:
		http.NotFound(w, r)
	}
}
