package faults

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// slowProxy is a TCP proxy on 127.0.0.1 in front of a redis-server that
// delays every chunk it reads, in either direction, by a fixed latency
// before writing it on: one goroutine per direction reads, sleeps, writes,
// so order is kept per connection and a request-reply round trip costs at
// least twice the latency.
type slowProxy struct {
	ln      net.Listener
	backend string
	latency time.Duration

	conns, open, maxOpen atomic.Int64
	up, down             struct{ chunks, bytes atomic.Int64 } // to Redis, to the client

	mu    sync.Mutex
	peers []net.Conn
	wg    sync.WaitGroup
}

func startSlowProxy(t *testing.T, backend string, latency time.Duration) *slowProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{ln: ln, backend: backend, latency: latency}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *slowProxy) Addr() string { return p.ln.Addr().String() }

func (p *slowProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		r, err := net.Dial("tcp", p.backend)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.peers = append(p.peers, c, r)
		p.mu.Unlock()
		p.conns.Add(1)
		n := p.open.Add(1)
		for m := p.maxOpen.Load(); n > m && !p.maxOpen.CompareAndSwap(m, n); m = p.maxOpen.Load() {
		}
		var pair sync.WaitGroup
		pair.Add(2)
		p.wg.Add(2)
		go p.pipe(&pair, r, c, &p.up.chunks, &p.up.bytes)
		go p.pipe(&pair, c, r, &p.down.chunks, &p.down.bytes)
		go func() { pair.Wait(); p.open.Add(-1) }()
	}
}

// pipe copies src to dst, each chunk latency after it was read; when either
// side ends, both connections close.
func (p *slowProxy) pipe(pair *sync.WaitGroup, dst, src net.Conn, chunks, bytes *atomic.Int64) {
	defer p.wg.Done()
	defer pair.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			time.Sleep(p.latency)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			chunks.Add(1)
			bytes.Add(int64(n))
		}
		if err != nil {
			return
		}
	}
}

func (p *slowProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.peers {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// pingRTT is the best of n PING round trips to addr over one connection.
func pingRTT(t *testing.T, addr string, n int) time.Duration {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	best := time.Hour
	for i := 0; i < n; i++ {
		begin := time.Now()
		if _, err := io.WriteString(c, "*1\r\n$4\r\nPING\r\n"); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil || line != "+PONG\r\n" {
			t.Fatalf("PING via %s: %q %v", addr, line, err)
		}
		best = min(best, time.Since(begin))
	}
	return best
}

// staleGroups counts, inside Redis, the groups of ARGV[1] consecutive KEYS
// (the targets of one pair) in which some key does not hold ARGV[1+i] as
// its lcut: one round trip and almost no work for the test process, which
// shares two cores with the race-enabled worker.
var staleGroups = redis.NewScript(`
local per, n = tonumber(ARGV[1]), 0
for g = 0, #KEYS / per - 1 do
  for i = g * per + 1, g * per + per do
    if redis.call('HGET', KEYS[i], 'lcut') ~= ARGV[1 + i] then n = n + 1; break end
  end
end
return n`)

// currentPairs counts the pairs of ks (both versions) whose every default
// target (sfp, hashed and prefix) holds the CDN's lcut, read from the real
// redis-server; once all do, it compares the payloads too (each write sets
// both at once). The CDN does not change here, so the expected values are
// computed once.
func currentPairs(s *e2e.Stack, ks keyList) func() (int, error) {
	var (
		names, lcuts, bodies []string
		pairOf               []int
	)
	per := len(keys.Targets("", ks[0], keys.V1, []keys.Schema{keys.Hashed, keys.Prefix}))
	for i, k := range ks {
		lcut := fmt.Sprint(s.CDN.Project(k).Lcut)
		for j, v := range bothVersions {
			body := s.Body(k, v)
			for _, tg := range keys.Targets("", k, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
				names, lcuts, bodies, pairOf = append(names, tg.Key), append(lcuts, lcut), append(bodies, body), append(pairOf, 2*i+j)
			}
		}
	}
	args := []any{per}
	for _, l := range lcuts {
		args = append(args, l)
	}
	pairs := 2 * len(ks)
	return func() (int, error) {
		ctx := context.Background()
		rdb := s.Redis.Client()
		stale, err := staleGroups.Run(ctx, rdb, names, args...).Int()
		if err != nil || stale > 0 {
			return pairs - stale, err
		}
		pipe := rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(names))
		for i, name := range names {
			cmds[i] = pipe.HGet(ctx, name, "config")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return 0, err
		}
		bad := map[int]bool{}
		for i, c := range cmds {
			if c.Val() != bodies[i] {
				bad[pairOf[i]] = true
			}
		}
		return pairs - len(bad), nil
	}
}

// redisLatency is the slow proxy's delay per chunk and direction.
var redisLatency = flag.Duration("faults.redislatency", 25*time.Millisecond, "delay the slow-Redis proxy adds to every chunk in each direction")

// firstSync is one worker's first sync on a fresh stack.
type firstSync struct {
	synced, ready time.Duration      // from the worker's start: every pair current in Redis, /readyz 200
	redisErrors   map[string]float64 // redis_errors_total by op, nonzero ones
	pollFailures  map[string]int     // "poll failed" log entries by outcome
	workerCPU     float64            // seconds, from the start to the end of the sync
}

// errorsString is redis_errors_total by op, or "none".
func (f firstSync) errorsString() string {
	if len(f.redisErrors) == 0 {
		return "none"
	}
	var parts []string
	for op, v := range f.redisErrors {
		parts = append(parts, fmt.Sprintf("%s %v", op, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func (f firstSync) failures() int {
	n := 0
	for _, c := range f.pollFailures {
		n += c
	}
	return n
}

// runFirstSync starts a worker on n fresh keys × 2 versions (POLL_INTERVAL=1s,
// POLL_CONCURRENCY=64, default targets) and waits until every pair is current
// in the test's redis-server, read directly, and /readyz answers 200. With
// latency > 0 the worker reaches Redis only through a slowProxy of that
// latency, which is returned.
func runFirstSync(t *testing.T, n int, latency, limit time.Duration) (firstSync, *slowProxy) {
	t.Helper()
	s, ks := manyKeys(t, n)
	pairs := 2 * len(ks)
	redisURL := s.Redis.URL()
	var proxy *slowProxy
	if latency > 0 {
		proxy = startSlowProxy(t, s.Redis.Addr(), latency)
		redisURL = "redis://" + proxy.Addr() + "/0"
		// The proxy delays: a PING through it takes at least two
		// latencies, a direct one far less than one.
		direct, slow := pingRTT(t, s.Redis.Addr(), 5), pingRTT(t, proxy.Addr(), 3)
		t.Logf("PING round trip: %v direct, %v through the proxy (%v per chunk each way)", direct, slow, latency)
		if slow < 2*latency || direct >= latency {
			t.Fatalf("the proxy does not delay: PING %v through it, %v direct, latency %v", slow, direct, latency)
		}
	}
	current := currentPairs(s, ks)
	addr := e2e.FreeAddr(t)
	begin := time.Now()
	p := e2e.Start(t, s.BaseEnv("REDIS_URL="+redisURL, "LEADER_ELECTION=false", "POLL_INTERVAL=1s", "POLL_CONCURRENCY=64",
		"ADMIN_ADDR="+addr, "STATSIG_SERVER_SDK_KEYS="+ks.list()))
	out := firstSync{pollFailures: map[string]int{}, redisErrors: map[string]float64{}}
	waitDetail(t, fmt.Sprintf("every pair current (%d keys × 2 versions, 4 targets per key)", len(ks)), limit, func() (bool, string) {
		// One check per 100 ms (with waitDetail's 10 ms): the test process
		// shares two cores with the race-enabled worker.
		time.Sleep(90 * time.Millisecond)
		n, err := current()
		if err != nil {
			return false, err.Error()
		}
		return n == pairs, fmt.Sprintf("%d of %d pairs current after %v", n, pairs, time.Since(begin).Round(time.Millisecond))
	})
	out.synced = time.Since(begin)
	out.workerCPU = cpuSeconds(p.Cmd.Process.Pid)
	waitDetail(t, "/readyz 200", 10*time.Second, func() (bool, string) {
		code, body := e2e.AdminGet(addr, "/readyz")
		return code == 200, fmt.Sprintf("%d %s", code, body)
	})
	out.ready = time.Since(begin)
	for name, v := range e2e.Metrics(addr) {
		if op, ok := strings.CutPrefix(name, metricPrefix+"redis_errors_total"); ok && v > 0 {
			out.redisErrors[op] = v
		}
	}
	for _, e := range workerLog(p) {
		if strings.HasPrefix(e.Message, "poll failed") {
			out.pollFailures[e.Outcome]++
		}
	}
	return out, proxy
}

// TestSlowRedisFirstSync (issue 15, item 6): behind a Redis that is slow to
// answer (a proxy adding a fixed latency to every chunk each way), the first
// sync of 300 keys × 2 versions with POLL_CONCURRENCY=64 converges and the
// worker becomes ready; a slow Redis makes the sync slower, never stuck.
// Before the fix one 5 s budget covered the wait for one of 10 pooled
// connections and every target of a job: behind a slow proxy only 7 of 1,000
// pairs were confirmed after 65 s. The same sync without the proxy is run
// first, for comparison.
func TestSlowRedisFirstSync(t *testing.T) {
	const (
		n = 300
		// Generous, yet far from the 65 s for 7 of 1,000 pairs:
		// on the 2-core machine the proxied sync takes 5-12 s, and up to
		// 26 s when other test packages run beside it.
		limit = 45 * time.Second
	)
	latency := *redisLatency
	direct, _ := runFirstSync(t, n, 0, limit)
	t.Logf("direct: every pair current after %v, /readyz 200 after %v (worker CPU %.1f s); redis_errors_total: %s; poll failures %v",
		direct.synced.Round(time.Millisecond), direct.ready.Round(time.Millisecond), direct.workerCPU, direct.errorsString(), direct.pollFailures)

	slow, proxy := runFirstSync(t, n, latency, limit)
	up, down := proxy.up.chunks.Load(), proxy.down.chunks.Load()
	t.Logf("through the proxy: every pair current after %v, /readyz 200 after %v (worker CPU %.1f s); redis_errors_total: %s; poll failures %v; "+
		"%d worker connections (at most %d open at once), %d chunks / %d bytes to Redis, %d chunks / %d bytes back",
		slow.synced.Round(time.Millisecond), slow.ready.Round(time.Millisecond), slow.workerCPU, slow.errorsString(), slow.pollFailures,
		proxy.conns.Load()-1, proxy.maxOpen.Load(), up, proxy.up.bytes.Load(), down, proxy.down.bytes.Load())
	// Every write of the worker (one per target) went through the proxy, in
	// at least one delayed chunk each way.
	if writes := int64(4 * n); up < writes || down < writes {
		t.Errorf("the proxy forwarded %d chunks to Redis and %d back, fewer than the %d target writes: the worker's traffic did not go through it",
			up, down, writes)
	}
	record(t, fmt.Sprintf("Redis: slow Redis, first sync (%d keys × 2 versions, POLL_CONCURRENCY=64)", n),
		fmt.Sprintf("a TCP proxy delaying every chunk by %v each way (a PING round trip ≥ %v), POLL_INTERVAL=1s, default targets (4 per key)", latency, 2*latency),
		fmt.Sprintf("every pair current %v after the start, /readyz 200 after %v (direct: %v and %v); %d chunks to Redis and %d back through the proxy; "+
			"redis_errors_total: %s; %d poll failures (direct: %d)",
			slow.synced.Round(time.Millisecond), slow.ready.Round(time.Millisecond), direct.synced.Round(time.Millisecond), direct.ready.Round(time.Millisecond),
			up, down, slow.errorsString(), slow.failures(), direct.failures()),
		slow.synced)
}
