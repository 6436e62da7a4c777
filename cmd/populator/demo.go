package main

// populator demo: the worker's real pipeline (runWorker, as `populator run`)
// against a Redis embedded in this process (miniredis) and, unless the user
// gives SDK keys, an embedded imitation of the CDN serving sample projects
// (internal/demo): a first run on a machine with Go and nothing else.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/statsig-populator/statsig-populator/internal/demo"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

const (
	demoRedisAddr   = "127.0.0.1:6379"
	demoAdminAddr   = "127.0.0.1:8080"
	demoChangeEvery = 15 * time.Second
	// demoReadyWait is how long demo waits for /readyz before it prints
	// its banner anyway: with the user's keys the real CDN may be slow or
	// unreachable, and the addresses are worth having meanwhile.
	demoReadyWait = 30 * time.Second
)

// BannerReady starts the line demo prints once the worker is ready; tests and
// the compat suite wait for it.
const BannerReady = "populator demo is ready"

func demoUsage(w io.Writer) {
	fmt.Fprintf(w, `Usage: populator demo [--redis-addr HOST:PORT] [--admin-addr HOST:PORT]

Runs the worker (the same code as "populator run") against a Redis embedded in
this process, so that you can watch it and point an SDK at it with nothing but Go
installed: no Redis, no SDK key, no network.

Without STATSIG_SERVER_SDK_KEYS the CDN is embedded too: an imitation of Statsig's
serving three sample projects under fake keys (secret-demo-...), one of which
changes every %s (a gate flips), so you see the worker's conditional polls
and a write.

With STATSIG_SERVER_SDK_KEYS (or STATSIG_SERVER_SDK_KEYS_FILE) set, demo fetches
those keys from Statsig's CDN (STATSIG_API_URL) into the embedded Redis: a local
Redis to develop against your own projects.

The embedded Redis holds everything in memory and loses it when demo stops: it
is for trying things only. The environment variables of "populator run" apply
("populator help" lists them), except those that choose a Redis (REDIS_URL,
REDIS_PASSWORD, ...), ADMIN_ADDR and LEADER_ELECTION, which demo sets itself.

Flags:
  --redis-addr HOST:PORT  where the embedded Redis listens (default %s;
                          a free port on the same host when that one is taken)
  --admin-addr HOST:PORT  the admin server: /status, /metrics, /healthz, /readyz
                          (default %s; a free port when that one is taken)

Ctrl-C stops it (exit 0).
`, demoChangeEvery, demoRedisAddr, demoAdminAddr)
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// Printed below, once: to stdout when asked for, to stderr after a
	// mistake (which flag has already named).
	fs.Usage = func() {}
	redisAddr := fs.String("redis-addr", demoRedisAddr, "")
	adminAddr := fs.String("admin-addr", demoAdminAddr, "")
	// Hidden (not in demoUsage): tests shorten the change period.
	changeEvery := fs.Duration("flip-every", demoChangeEvery, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			demoUsage(stdout)
			return nil
		}
		fmt.Fprintln(stderr)
		demoUsage(stderr)
		return exitError{exitBadConfig}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "populator demo: unexpected argument %q\n\n", fs.Arg(0))
		demoUsage(stderr)
		return exitError{exitBadConfig}
	}
	// 0 turns the flip off; anything shorter than 100ms would only burn CPU
	// and flood the log.
	if *changeEvery != 0 && (*changeEvery < 100*time.Millisecond || *changeEvery > 24*time.Hour) {
		fmt.Fprintln(stderr, "populator demo: --flip-every must be 0 (off) or from 100ms to 24h")
		return exitError{exitBadConfig}
	}
	out := &lockedWriter{w: stdout}
	userKeys := os.Getenv("STATSIG_SERVER_SDK_KEYS") != "" || os.Getenv("STATSIG_SERVER_SDK_KEYS_FILE") != ""

	mr, redisMoved, err := startDemoRedis(*redisAddr)
	if err != nil {
		fmt.Fprintln(stderr, "populator demo:", err)
		return exitError{exitBadConfig}
	}
	defer mr.Close()

	var cdn *demo.CDN
	if !userKeys {
		cdn, err = demo.StartCDN(demo.Options{ChangeEvery: *changeEvery, OnChange: func(p demo.Project, now fakecdn.Project) {
			fmt.Fprintf(out, "demo: the CDN now serves a change to %s (%s is now %s, %s.%s = %d); the worker writes it at its next poll\n",
				p.Name, demo.FlipGate, onOff(now.Value%2 == 1), demo.ConfigName, demo.ConfigField, now.Value)
		}})
		if err != nil {
			fmt.Fprintln(stderr, "populator demo:", err)
			return exitError{exitFailure}
		}
		defer cdn.Close()
	}

	admin, adminMoved, err := pickDemoAddr(*adminAddr)
	if err != nil {
		fmt.Fprintln(stderr, "populator demo: --admin-addr:", err)
		return exitError{exitBadConfig}
	}

	env := newEnvChange()
	defer env.restore()
	ignored := env.forDemo(mr.Addr(), admin, cdn)
	if len(ignored) > 0 {
		what := "its embedded Redis"
		if cdn != nil {
			what += " and sample projects"
		}
		fmt.Fprintf(stderr, "populator demo: ignoring %s from the environment: demo runs on %s\n", strings.Join(ignored, ", "), what)
	}
	// The same load runWorker makes next, for the banner: key names depend
	// on the layout variables, which the user may have set.
	cfg, err := config.Load(true)
	if err != nil {
		fmt.Fprintln(stderr, "populator demo:", err)
		return exitError{exitBadConfig}
	}

	// The worker stops when ctx ends (Ctrl-C), as `populator run` does.
	done := make(chan error, 1)
	go func() { done <- runWorker(ctx, stderr) }()

	ready, reason, exited, werr := waitDemoReady(ctx, "http://"+localAddr(admin), done, demoReadyWait)
	if exited {
		return werr
	}
	if ctx.Err() == nil {
		b := demoBanner{cfg: cfg, redisAddr: mr.Addr(), redisWanted: *redisAddr, redisMoved: redisMoved,
			admin: "http://" + localAddr(admin), adminWanted: *adminAddr, adminMoved: adminMoved, cdn: cdn,
			changeEvery: *changeEvery, ready: ready, notReady: reason}
		b.print(out)
	}
	err = <-done
	if err == nil {
		fmt.Fprintln(out, "demo stopped; its in-memory Redis is gone.")
	}
	return err
}

// startDemoRedis starts miniredis on addr or, when that port is taken (a
// Redis already on 6379, say), on a free port of the same host; moved says
// which happened.
func startDemoRedis(addr string) (*miniredis.Miniredis, bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, false, fmt.Errorf("--redis-addr %q is not host:port", addr)
	}
	mr := miniredis.NewMiniRedis()
	// Keys with a TTL (REDIS_KEY_TTL, the ID-list stages) expire by the
	// clock, as on a real Redis; miniredis's default is to wait for
	// FastForward.
	mr.ClockTTL(true)
	moved := false
	if err := mr.StartAddr(addr); err != nil {
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, false, fmt.Errorf("embedded Redis on %s: %w", addr, err)
		}
		moved = true
		if err := mr.StartAddr(net.JoinHostPort(host, "0")); err != nil {
			return nil, false, fmt.Errorf("embedded Redis on a free port of %s: %w", host, err)
		}
	}
	return mr, moved, nil
}

// pickDemoAddr resolves a listen address for the worker's admin server: addr
// itself when it can be listened on, else a free port of the same host. The
// worker listens on it a moment later; the port is probed and released here
// because admin.Serve does not report the port it got.
func pickDemoAddr(addr string) (string, bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false, fmt.Errorf("%q is not host:port", addr)
	}
	moved := false
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if !errors.Is(err, syscall.EADDRINUSE) {
			return "", false, err
		}
		moved = true
		if ln, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
			return "", false, err
		}
	}
	got := ln.Addr().(*net.TCPAddr)
	ln.Close()
	return net.JoinHostPort(host, strconv.Itoa(got.Port)), moved, nil
}

// waitDemoReady polls /readyz until it answers 200, the worker exits (exited,
// with its error), ctx ends, or limit passes (ready false, with the last
// reason /readyz gave).
func waitDemoReady(ctx context.Context, base string, done <-chan error, limit time.Duration) (ready bool, reason string, exited bool, err error) {
	client := &http.Client{Timeout: time.Second}
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	reason = "the admin server has not answered yet"
	for {
		select {
		case err := <-done:
			return false, "", true, err
		case <-ctx.Done():
			return false, "", false, nil
		case <-deadline.C:
			return false, reason, false, nil
		case <-tick.C:
		}
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return true, "", false, nil
		}
		reason = strings.TrimSpace(string(body))
	}
}

// envChange sets environment variables for the worker that runs in this
// process and remembers what was there, so that restore puts it back: tests
// run demo in-process, one after the other.
type envChange struct {
	saved map[string]*string // nil: was unset
	known map[string]bool    // every variable config reads
}

func newEnvChange() *envChange {
	return &envChange{saved: map[string]*string{}, known: configVars()}
}

func (e *envChange) save(k string) {
	if _, ok := e.saved[k]; ok {
		return
	}
	if v, ok := os.LookupEnv(k); ok {
		e.saved[k] = &v
	} else {
		e.saved[k] = nil
	}
}

func (e *envChange) set(k, v string) { e.save(k); os.Setenv(k, v) }

func (e *envChange) unset(k string) { e.save(k); os.Unsetenv(k) }

// setDefault sets k unless the user did: their choice of, say, LOG_LEVEL
// stands.
func (e *envChange) setDefault(k, v string) {
	if os.Getenv(k) == "" {
		e.set(k, v)
	}
}

func (e *envChange) restore() {
	for k, v := range e.saved {
		if v == nil {
			os.Unsetenv(k)
		} else {
			os.Setenv(k, *v)
		}
	}
	e.saved = map[string]*string{}
}

// demoKeepRedisVars are the REDIS_* variables about what is written, not
// where: they apply to the embedded Redis as to any.
var demoKeepRedisVars = []string{"REDIS_KEY_PREFIX", "REDIS_KEY_SCHEMAS", "REDIS_FORMATS", "REDIS_NODE_REDIS_HASH", "REDIS_KEY_TTL"}

// forDemo points the worker at the embedded Redis (and CDN, when cdn is not
// nil) and returns the user's variables it overrode, for a notice.
func (e *envChange) forDemo(redisAddr, adminAddr string, cdn *demo.CDN) (ignored []string) {
	override := func(k, v string) {
		if old := os.Getenv(k); old != "" && old != v {
			ignored = append(ignored, k)
		}
		if v == "" {
			e.unset(k)
		} else {
			e.set(k, v)
		}
	}
	// Every variable that picks a Redis, its credentials, TLS or
	// replication, whatever config grows: any of them would send the worker
	// elsewhere or ask miniredis for what it cannot do.
	var redisVars []string
	for k := range e.known {
		if strings.HasPrefix(k, "REDIS_") && !slices.Contains(demoKeepRedisVars, k) {
			redisVars = append(redisVars, k)
		}
	}
	slices.Sort(redisVars)
	for _, k := range redisVars {
		override(k, "")
	}
	override("REDIS_URL", "redis://"+redisAddr+"/0")
	override("ADMIN_ADDR", adminAddr)
	// One worker, one Redis: there is nobody to share a lease with.
	override("LEADER_ELECTION", "false")
	e.setDefault("LOG_FORMAT", "console")
	if cdn == nil {
		return ignored
	}
	var ks []string
	for _, p := range cdn.Projects {
		ks = append(ks, p.Key.Reveal())
	}
	override("STATSIG_SERVER_SDK_KEYS", strings.Join(ks, ","))
	override("STATSIG_API_URL", cdn.URL)
	override("STATSIG_CA_FILE", "")
	// Short polls and debug logs: the point is to watch the polls
	// ("polled … outcome=…", debug) and the write after a change.
	e.setDefault("POLL_INTERVAL", "5s")
	e.setDefault("LOG_LEVEL", "debug")
	// ID lists are on by default where they can be (v1 in the sfp layout);
	// the manifest is polled as often as the configs, for the same reason.
	// Set only when config reads the variable: it refuses unknown values
	// but ignores unknown names, so a build without ID lists is not misled.
	if e.known["ID_LISTS_POLL_INTERVAL"] {
		e.setDefault("ID_LISTS_POLL_INTERVAL", "5s")
	}
	return ignored
}

// configVars is every environment variable config reads (config.Env's tags).
func configVars() map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeOf(config.Env{})
	for i := 0; i < t.NumField(); i++ {
		if name := t.Field(i).Tag.Get("envconfig"); name != "" {
			out[name] = true
		}
	}
	return out
}

// demoBanner is what demo prints once the worker is ready.
type demoBanner struct {
	cfg                    config.Config
	redisAddr, redisWanted string
	redisMoved             bool
	admin, adminWanted     string
	adminMoved             bool
	cdn                    *demo.CDN // nil: the user's keys, Statsig's CDN
	changeEvery            time.Duration
	ready                  bool
	notReady               string
}

func (b demoBanner) print(w io.Writer) {
	var s strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	host, port, _ := net.SplitHostPort(b.redisAddr)
	cli := "redis-cli -p " + port
	if host != "127.0.0.1" {
		cli = "redis-cli -h " + host + " -p " + port
	}
	redisURL := "redis://" + b.redisAddr

	p("")
	if b.ready {
		p("%s: the worker polls the CDN and keeps Redis current.", BannerReady)
	} else {
		p("populator demo is running, but not ready yet (%s); the addresses:", b.notReady)
	}
	p("")
	p("  Redis   %s", redisURL)
	if b.redisMoved {
		p("          (%s is taken, so a free port was chosen; --redis-addr chooses)", b.redisWanted)
	}
	p("          Embedded in this process and IN MEMORY ONLY: for trying things, not for production.")
	p("          Everything in it is gone when demo stops.")
	if b.cdn != nil {
		p("  CDN     %s   an embedded imitation of Statsig's, serving sample projects", b.cdn.URL)
	} else if b.cfg.APIURL == "https://api.statsigcdn.com" {
		p("  CDN     %s   Statsig's, for your STATSIG_SERVER_SDK_KEYS", b.cfg.APIURL)
	} else {
		p("  CDN     the one STATSIG_API_URL names, for your STATSIG_SERVER_SDK_KEYS")
	}
	p("  Admin   %s/status    what each key is doing (JSON)", b.admin)
	p("          %s/metrics   Prometheus metrics", b.admin)
	p("          %s/healthz   liveness (and /readyz: readiness)", b.admin)
	if b.adminMoved {
		p("          (%s is taken, so a free port was chosen; --admin-addr chooses)", b.adminWanted)
	}
	p("")

	var show keys.SDKKey
	if b.cdn != nil {
		p("Sample SDK keys (fake: only this demo's CDN knows them):")
		for _, pr := range b.cdn.Projects {
			note := ""
			if pr.Changes && b.changeEvery > 0 {
				note = fmt.Sprintf("   changes every %s: %s flips", b.changeEvery, demo.FlipGate)
				show = pr.Key
			}
			p("  %-38s %s%s", pr.Key.Reveal(), pr.Title, note)
		}
		if show.IsZero() {
			show = b.cdn.Projects[0].Key
		}
	} else {
		p("Your SDK keys (redacted):")
		for _, k := range b.cfg.SDKKeys {
			p("  %s", k.Redacted())
		}
		show = b.cfg.SDKKeys[0]
	}
	p("")

	p("Look at what the worker wrote (any Redis client works):")
	shown := false
	for _, v := range b.cfg.Versions {
		for _, t := range b.cfg.Layout.Targets(show, v) {
			// Under the prefix schema a name holds 20 characters of the
			// key: print those of sample keys only.
			if t.Schema == keys.Prefix && b.cdn == nil {
				continue
			}
			p("  %s %s", cli, redisCLIRead(t))
			p("      # %s", t.ReadBy())
			shown = true
			break
		}
	}
	if b.cfg.IDLists && b.cdn != nil {
		for _, pr := range b.cdn.Projects {
			if pr.Changes && len(pr.IDLists) > 0 {
				l := pr.IDLists[0]
				t := keys.NewIDListTarget(b.cfg.Layout.Prefix, pr.Key, keys.Hashed, l.Name)
				p("  %s GET %s", cli, shellQuote(t.Key))
				p("      # ID list %s: the SDKs' hashes of %s", l.Name, strings.Join(l.Users, ", "))
			}
		}
	}
	if !shown {
		p("  (only prefix-schema names, which hold part of the key: `populator keys --sdk-key KEY` prints them)")
	}
	p("  %s --scan                  # every key", cli)
	p("")
	p("Read every entry back the way the SDKs read it:")
	if b.cdn != nil {
		p("  REDIS_URL=%s STATSIG_SERVER_SDK_KEYS=%s go run ./cmd/populator check", redisURL, strings.Join(keyStrings(b.cdn.Projects), ","))
	} else {
		p("  REDIS_URL=%s go run ./cmd/populator check    # with your STATSIG_SERVER_SDK_KEYS set", redisURL)
	}
	p("")

	sn := demo.Snippet{RedisURL: redisURL, Adapter: "./statsig-node.mjs", KeyPrefix: b.cfg.Layout.Prefix}
	if b.cdn != nil {
		sn.SDKKey, sn.Gate, sn.LocalMode = demo.JSString(show.Reveal()), demo.FlipGate, true
	} else {
		sn.SDKKey, sn.Gate = "process.env.STATSIG_SERVER_SECRET", "a_gate_of_yours"
	}
	if slices.Contains(b.cfg.Versions, keys.V1) && slices.Contains(b.cfg.Layout.Formats, keys.SFP) && slices.Contains(b.cfg.Layout.Schemas, keys.Hashed) {
		p("An SDK started from this Redis: statsig-node 6 with the project's read-only adapter")
		p("(npm install statsig-node ioredis; copy compat/adapters/statsig-node.mjs beside demo.mjs;")
		p("docs/adapters.md has the others), in demo.mjs, then node demo.mjs:")
		p("")
		for _, line := range strings.Split(strings.TrimRight(sn.String(), "\n"), "\n") {
			if line == "" {
				p("")
			} else {
				p("  %s", line)
			}
		}
		p("")
	}
	p("Ctrl-C stops the demo.")
	p("")
	io.WriteString(w, s.String())
}

// redisCLIRead is the redis-cli command (without the connection flags) that
// shows t.
func redisCLIRead(t keys.Target) string {
	switch t.Format {
	case keys.NodeRedis:
		return "HGET " + shellQuote(t.Key) + " " + shellQuote(t.Field)
	case keys.String:
		return "GET " + shellQuote(t.Key)
	}
	return "HGETALL " + shellQuote(t.Key)
}

// shellQuote quotes s for a POSIX shell: key names hold '|'.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func keyStrings(ps []demo.Project) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Key.Reveal()
	}
	return out
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// lockedWriter serialises the banner and the change notices, which come from
// the CDN's timer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
