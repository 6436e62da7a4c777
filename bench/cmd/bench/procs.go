package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// proc is one child process the harness started (and alone may stop).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

var (
	procsMu sync.Mutex
	procs   []*proc
)

// startProc runs a child in its own process group with a clean environment
// (PATH and HOME plus env), stdout and stderr appended to logDir/name.log. When
// ready is not empty it waits (up to 30 s) for a stdout line starting with it
// and returns that line.
func startProc(logDir, name string, env []string, ready string, argv ...string) (*proc, string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.OpenFile(filepath.Join(logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = logf
	var out io.ReadCloser
	if ready != "" {
		if out, err = cmd.StdoutPipe(); err != nil {
			return nil, "", err
		}
	} else {
		cmd.Stdout = logf
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, "", fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	lines := make(chan string, 1)
	if out != nil {
		go func() {
			sc := bufio.NewScanner(out)
			sent := false
			for sc.Scan() {
				line := sc.Text()
				fmt.Fprintln(logf, line)
				if !sent && strings.HasPrefix(line, ready) {
					lines <- line
					sent = true
				}
			}
		}()
	}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	if out == nil {
		return p, "", nil
	}
	select {
	case line := <-lines:
		return p, line, nil
	case <-p.done:
		return nil, "", fmt.Errorf("%s exited before it was ready: %v (see %s.log)", name, p.err, name)
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, "", fmt.Errorf("%s not ready after 30 s", name)
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the child's process group, then SIGKILL after 10 s.
func (p *proc) stop() {
	if p == nil || !p.alive() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// stopAll stops every child still running (on exit or interruption).
func stopAll() {
	procsMu.Lock()
	ps := append([]*proc(nil), procs...)
	procsMu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop()
	}
}

// freePort asks the kernel for a free loopback port; never 6379.
func freePort() int {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port != 6379 {
			return port
		}
	}
}

const clkTck = 100 // USER_HZ on Linux

// cpuSeconds is utime+stime of pid from /proc/<pid>/stat.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// The command name may contain spaces; fields after the last ')' are fixed.
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / clkTck
}

// memKB returns VmRSS and VmHWM of pid in KiB.
func memKB(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			hwm, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return rss, hwm
}

// redisServer is a redis-server the harness started on a free port, with
// keyspace notifications for HASH writes on.
type redisServer struct {
	proc *proc
	port int
	rdb  *redis.Client
	dir  string
}

func startRedis(logDir string) (*redisServer, error) {
	port := freePort()
	dir, err := os.MkdirTemp("", "bench-redis-")
	if err != nil {
		return nil, err
	}
	p, _, err := startProc(logDir, fmt.Sprintf("redis-%d", port), nil, "", "redis-server",
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "no", "--daemonize", "no", "--notify-keyspace-events", "Eh")
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), ReadTimeout: 30 * time.Second})
	for i := 0; ; i++ {
		if err := rdb.Ping(context.Background()).Err(); err == nil {
			break
		} else if i > 100 {
			p.stop()
			return nil, fmt.Errorf("redis-server on %d does not answer: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &redisServer{proc: p, port: port, rdb: rdb, dir: dir}, nil
}

func (r *redisServer) stop() {
	if r == nil {
		return
	}
	r.rdb.Close()
	r.proc.stop()
	os.RemoveAll(r.dir)
}

// info parses INFO sections into a flat map; commandstats entries become
// cmd.<name>.calls and cmd.<name>.usec.
func (r *redisServer) info(sections ...string) map[string]float64 {
	out := map[string]float64{}
	text, err := r.rdb.Info(context.Background(), sections...).Result()
	if err != nil {
		return out
	}
	for _, line := range strings.Split(text, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if name, ok := strings.CutPrefix(k, "cmdstat_"); ok {
			for _, kv := range strings.Split(v, ",") {
				f, val, _ := strings.Cut(kv, "=")
				if n, err := strconv.ParseFloat(val, 64); err == nil {
					out["cmd."+name+"."+f] = n
				}
			}
			continue
		}
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// hsetEvent is one keyspace notification of an HSET and the lcut read right
// after it.
type hsetEvent struct {
	name string
	at   time.Time
	lcut int64
}

// watcher records HSETs (through keyspace notifications) after since.
type watcher struct {
	mu     sync.Mutex
	since  time.Time
	events []hsetEvent
	count  int
	ps     *redis.PubSub
	wg     sync.WaitGroup
}

func (r *redisServer) watch() (*watcher, error) {
	w := &watcher{since: time.Now().Add(24 * time.Hour)}
	ctx := context.Background()
	w.ps = r.rdb.Subscribe(ctx, "__keyevent@0__:hset")
	if _, err := w.ps.Receive(ctx); err != nil {
		return nil, err
	}
	ch := w.ps.Channel(redis.WithChannelSize(200000))
	lookups := make(chan hsetEvent, 200000)
	go func() {
		for m := range ch {
			now := time.Now()
			w.mu.Lock()
			on := now.After(w.since)
			w.count++
			w.mu.Unlock()
			if on {
				lookups <- hsetEvent{name: m.Payload, at: now}
			}
		}
		close(lookups)
	}()
	for range 4 {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for e := range lookups {
				e.lcut, _ = r.rdb.HGet(ctx, e.name, "lcut").Int64()
				w.mu.Lock()
				w.events = append(w.events, e)
				w.mu.Unlock()
			}
		}()
	}
	return w, nil
}

// start begins recording events from now on, forgetting earlier ones.
func (w *watcher) start() {
	w.mu.Lock()
	w.since = time.Now()
	w.events = nil
	w.mu.Unlock()
}

func (w *watcher) snapshot() []hsetEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]hsetEvent(nil), w.events...)
}

func (w *watcher) close() { w.ps.Close() }

// waitFor waits until an event on name with lcut ≥ lcut was seen.
func (w *watcher) waitFor(name string, lcut int64, timeout time.Duration) (hsetEvent, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, e := range w.snapshot() {
			if e.name == name && e.lcut >= lcut {
				return e, true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return hsetEvent{}, false
}

var httpClient = &http.Client{Timeout: 60 * time.Second}

func httpGet(url string) ([]byte, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return b, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b, err
}

// promSum adds up every sample of metric name whose label set contains all of
// the given label pairs (e.g. `outcome="written"`).
func promSum(text, name string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series := line[:sp]
		metric, lbls, _ := strings.Cut(series, "{")
		if metric != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(lbls, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// promHistogram returns cumulative bucket counts (le → count) of a histogram,
// summed over label sets.
func promHistogram(text, name string) map[float64]float64 {
	out := map[float64]float64{}
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"_bucket{") {
			continue
		}
		i := strings.Index(line, `le="`)
		if i < 0 {
			continue
		}
		rest := line[i+4:]
		le, _, _ := strings.Cut(rest, `"`)
		bound, err := strconv.ParseFloat(le, 64)
		if le == "+Inf" {
			bound, err = 1e18, nil
		}
		if err != nil {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, _ := strconv.ParseFloat(line[sp+1:], 64)
		out[bound] += v
	}
	return out
}

// histQuantile estimates quantile q from the difference of two cumulative
// bucket snapshots (upper bound of the bucket that holds it).
func histQuantile(before, after map[float64]float64, q float64) float64 {
	type b struct{ le, n float64 }
	var bs []b
	for le, n := range after {
		bs = append(bs, b{le, n - before[le]})
	}
	if len(bs) == 0 {
		return 0
	}
	// sort by le
	for i := range bs {
		for j := i + 1; j < len(bs); j++ {
			if bs[j].le < bs[i].le {
				bs[i], bs[j] = bs[j], bs[i]
			}
		}
	}
	total := bs[len(bs)-1].n
	if total == 0 {
		return 0
	}
	for _, x := range bs {
		if x.n >= q*total {
			return x.le
		}
	}
	return bs[len(bs)-1].le
}
