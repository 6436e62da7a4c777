package compat

// `populator demo` (the built binary, as a user runs it) with the real Node
// SDKs: statsig-node 6.5.2 and @statsig/statsig-node-core start from the
// demo's embedded Redis through the project's adapters, evaluate the sample
// gates, and see the gate the demo flips; and the Node lines the demo prints
// run as printed.

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/demo"
	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// demoFlipEvery is longer than statsig-node's fastest adapter poll (5 s), so
// that an SDK polling its adapter sees every value the demo serves.
const demoFlipEvery = 7 * time.Second

// demoProc is a running `populator demo`.
type demoProc struct {
	redisAddr string
	banner    string // stdout up to the end of the banner
	out       *syncBuffer
	rdb       *redis.Client
}

func startDemo(t *testing.T) *demoProc {
	t.Helper()
	cmd := exec.Command(populatorBin, "demo", "--redis-addr", "127.0.0.1:"+strconv.Itoa(redistest.FreePort(t)),
		"--admin-addr", "127.0.0.1:0", "--flip-every", demoFlipEvery.String())
	// As a user starts it: no Redis, CDN or key variables at all.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "POLL_INTERVAL=500ms", "ID_LISTS_POLL_INTERVAL=500ms"}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &demoProc{out: &syncBuffer{}}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting populator demo: %v", err)
	}
	done := make(chan error, 1)
	bannerDone := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		closed := false
		for sc.Scan() {
			d.out.Write([]byte(sc.Text() + "\n"))
			if !closed && strings.HasPrefix(sc.Text(), "Ctrl-C stops the demo") {
				closed = true
				close(bannerDone)
			}
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt) // Ctrl-C
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("populator demo exited with %v after Ctrl-C, want 0", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("populator demo did not stop within 15s of Ctrl-C")
		}
		if t.Failed() {
			t.Logf("demo stdout:\n%s\ndemo stderr:\n%s", d.out.String(), lastLines(stderr.String(), 40))
		}
	})
	select {
	case <-bannerDone:
	case <-time.After(60 * time.Second):
		t.Fatalf("populator demo printed no ready banner within 60s:\n%s\n%s", d.out.String(), lastLines(stderr.String(), 40))
	}
	d.banner = d.out.String()
	if !strings.Contains(d.banner, "populator demo is ready") {
		t.Fatalf("the demo was not ready when it printed its banner:\n%s", d.banner)
	}
	m := regexp.MustCompile(`(?m)^  Redis   redis://(\S+)$`).FindStringSubmatch(d.banner)
	if m == nil {
		t.Fatalf("the banner names no Redis address:\n%s", d.banner)
	}
	d.redisAddr = m[1]
	d.rdb = redis.NewClient(&redis.Options{Addr: d.redisAddr, MaxRetries: -1})
	t.Cleanup(func() { d.rdb.Close() })
	return d
}

// changingProject is the sample project the demo changes on its timer.
func changingProject(t *testing.T) demo.Project {
	t.Helper()
	ps, err := demo.Projects()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Changes {
			return p
		}
	}
	t.Fatal("no sample project changes")
	return demo.Project{}
}

// demoNodeEnv is a check script's environment against the demo's Redis, with
// every URL option and proxy variable on the tripwire.
func demoNodeEnv(redisAddr string, trip *tripwire, key keys.SDKKey, extra ...string) []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.TempDir(),
		"REDIS_ADDR=" + redisAddr,
		"SDK_KEY=" + key.Reveal(),
		"TRIPWIRE_URL=" + trip.URL,
		"HTTP_PROXY=" + trip.URL, "HTTPS_PROXY=" + trip.URL, "ALL_PROXY=" + trip.URL,
		"http_proxy=" + trip.URL, "https_proxy=" + trip.URL, "all_proxy=" + trip.URL,
		"CONFIG_NAME=" + demo.ConfigName,
		"CONFIG_FIELD=" + demo.ConfigField,
		"GATE_ODD=" + demo.FlipGate,
	}, extra...)
}

// TestDemoWithNodeSDKs: both Node SDKs start from the demo's Redis, evaluate
// the sample project, and see its gate flip by polling their adapters.
func TestDemoWithNodeSDKs(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	p := changingProject(t)
	trip := newTripwire(t)
	for _, sdk := range []struct {
		name, script  string
		env           []string
		wantReason    string
		legacySource  bool
		allowRequests bool
	}{
		{name: "statsig-node 6.5.2", script: "legacy.mjs", wantReason: "DataAdapter", legacySource: true, allowRequests: true,
			env: []string{"GATE_PASS=" + demo.PassGate, "GATE_FAIL=" + demo.FailGate, "LAYOUT=sfp"}},
		{name: "@statsig/statsig-node-core", script: "core.mjs", wantReason: "Adapter(DataStore):Recognized",
			env: []string{"GATE_PASS=" + demo.PassGateV2, "GATE_FAIL=" + demo.FailGateV2, "KEY_SCHEMA=v2"}},
	} {
		t.Run(sdk.name, func(t *testing.T) {
			t.Parallel()
			n, init := startNode(t, sdk.name, sdk.script, demoNodeEnv(d.redisAddr, trip, p.Key, sdk.env...))
			if !init.Success || (sdk.legacySource && deref(init.Source) != "DataAdapter") {
				t.Errorf("initialize() = {success: %v, source: %s, error: %s}, want success from the adapter",
					init.Success, deref(init.Source), deref(init.Error))
			}
			e := init.Eval
			if r := deref(e.Reason); r != sdk.wantReason {
				t.Errorf("evaluation reason %s, want %s", r, sdk.wantReason)
			}
			if !e.GatePass || e.GateFail {
				t.Errorf("the gates for everyone / no one: %v / %v, want true / false", e.GatePass, e.GateFail)
			}
			if e.ConfigValue == nil || e.Lcut == nil {
				t.Fatalf("no %s value or lcut: %s", demo.ConfigName, init.Raw)
			}
			value := int(*e.ConfigValue)
			if e.GateOdd != (value%2 == 1) {
				t.Errorf("%s = %v with %s.%s = %d", demo.FlipGate, e.GateOdd, demo.ConfigName, demo.ConfigField, value)
			}
			// The flip: the next value, seen by polling the adapter.
			w := n.waitValue(value+1, demoFlipEvery+15*time.Second)
			if w.Eval.ConfigValue == nil || int(*w.Eval.ConfigValue) != value+1 {
				t.Fatalf("the SDK never saw %s.%s = %d: %s", demo.ConfigName, demo.ConfigField, value+1, w.Raw)
			}
			if w.Eval.GateOdd == e.GateOdd {
				t.Errorf("%s did not flip: %v before and after the change", demo.FlipGate, e.GateOdd)
			}
			if w.Eval.Lcut == nil || *w.Eval.Lcut <= *e.Lcut {
				t.Errorf("lcut %s after the change, %d before", ptrString(w.Eval.Lcut), *e.Lcut)
			}
			t.Logf("%s: %s went %v → %v (value %d → %d), seen %d ms after the SDK asked", sdk.name, demo.FlipGate,
				e.GateOdd, w.Eval.GateOdd, value, value+1, w.WaitedMs)
			r := n.quit()
			if len(r.Connections) > 0 {
				t.Errorf("the SDK opened connections to something other than Redis: %q", r.Connections)
			}
			for _, u := range r.Requests {
				// statsig-node 6.5.2 posts a diagnostics event to
				// {api}/log_event on shutdown (see node_test.go); refused.
				if !sdk.allowRequests || u != trip.URL+"/log_event" {
					t.Errorf("the SDK tried an HTTP request: %q", u)
				}
			}
		})
	}
	t.Cleanup(func() { trip.assertUntouched(t) })
}

// TestDemoPrintedNodeSnippet runs the Node lines the demo's banner prints, as
// printed (only the adapter's import path is pointed at compat/adapters), and
// checks the gate value it prints against what Redis holds.
func TestDemoPrintedNodeSnippet(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("node_modules/statsig-node"); err != nil {
		t.Fatalf("compat/node_modules is missing: run compat/run.sh (or npm ci in compat/) first")
	}
	d := startDemo(t)
	p := changingProject(t)

	var lines []string
	in := false
	for _, l := range strings.Split(d.banner, "\n") {
		switch {
		case strings.HasPrefix(l, "  import statsig from 'statsig-node';"):
			in = true
		case in && strings.HasPrefix(l, "Ctrl-C"):
			in = false
		}
		if in {
			lines = append(lines, strings.TrimPrefix(l, "  "))
		}
	}
	snippet := strings.TrimSpace(strings.Join(lines, "\n"))
	const printed, here = "from './statsig-node.mjs'", "from './adapters/statsig-node.mjs'"
	if !strings.Contains(snippet, printed) || !strings.Contains(snippet, demo.JSString(p.Key.Reveal())) {
		t.Fatalf("the banner's Node lines do not import %s or use the changing sample key:\n%s", printed, snippet)
	}
	snippet = strings.Replace(snippet, printed, here, 1)

	// The gate is checked while Redis holds it on: an SDK that failed to read
	// Redis would answer false, so only "true" proves the lines work. The
	// sample project starts with an odd value (on); a flip between the reads
	// before and after the run means asking again.
	if p.Value%2 != 1 {
		t.Fatalf("the changing sample project starts with value %d: its %s is off, which proves nothing here", p.Value, demo.FlipGate)
	}
	trip := newTripwire(t)
	for attempt := 1; ; attempt++ {
		waitFor(t, 2*demoFlipEvery+5*time.Second, demo.FlipGate+" on in Redis", func() string {
			if !redisGate(t, d, p.Key) {
				return "it is off"
			}
			return ""
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "node", "--input-type=module", "-e", snippet)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(),
			"HTTP_PROXY=" + trip.URL, "HTTPS_PROXY=" + trip.URL, "http_proxy=" + trip.URL, "https_proxy=" + trip.URL}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("the printed Node lines failed: %v\n%s", err, out)
		}
		if !redisGate(t, d, p.Key) && attempt < 3 {
			continue
		}
		got, want := strings.TrimSpace(string(out)), demo.FlipGate+": true"
		if got != want {
			t.Fatalf("the printed Node lines printed %q, want %q (what Redis holds)", got, want)
		}
		t.Logf("the printed Node lines printed %q", got)
		break
	}
	trip.assertUntouched(t)
}

// redisGate is the flip gate's value in the v1 payload Redis holds for k.
func redisGate(t *testing.T, d *demoProc, k keys.SDKKey) bool {
	t.Helper()
	config, err := d.rdb.HGet(context.Background(), keys.DCSKey("", keys.V1, keys.PlainText, keys.Hashed.ID(k)), "config").Result()
	if err != nil {
		t.Fatalf("reading the demo's Redis: %v", err)
	}
	var p struct {
		Gates []struct {
			Name  string `json:"name"`
			Rules []struct {
				Pass int `json:"passPercentage"`
			} `json:"rules"`
		} `json:"feature_gates"`
	}
	if err := json.Unmarshal([]byte(config), &p); err != nil {
		t.Fatal(err)
	}
	for _, g := range p.Gates {
		if g.Name == demo.FlipGate && len(g.Rules) == 1 {
			return g.Rules[0].Pass == 100
		}
	}
	t.Fatalf("no %s in the payload", demo.FlipGate)
	return false
}
