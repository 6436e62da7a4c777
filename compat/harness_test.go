package compat

// Plumbing shared by the compatibility tests: the worker binary, a real
// redis-server, the fake CDN, a tripwire that every SDK URL points at, and the
// node check scripts.

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// populatorBin is the worker binary under test: built from the repository
// root (..) by TestMain, or taken from $POPULATOR_BIN.
var populatorBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if bin := os.Getenv("POPULATOR_BIN"); bin != "" {
		populatorBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "populator-compat")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	populatorBin = filepath.Join(dir, "populator")
	build := exec.Command("go", "build", "-o", populatorBin, "./cmd/populator")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the worker (go build ./cmd/populator in the repository root):", err)
		return 1
	}
	return m.Run()
}

// baseLcut is the first lcut of every test project.
const baseLcut = int64(1767225600000) // 2026-01-01T00:00:00Z

// stack is one test's world: its own redis-server, fake CDN and tripwire.
type stack struct {
	redis  *redistest.Server
	cdn    *fakecdn.Server
	cdnURL string
	trip   *tripwire
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{redis: redistest.Start(t), cdn: fakecdn.New(), trip: newTripwire(t)}
	srv := httptest.NewServer(s.cdn)
	t.Cleanup(srv.Close)
	s.cdnURL = srv.URL
	return s
}

// startWorker runs `populator` (the long-running mode) against the stack until
// the test ends; extra is appended to its environment.
func (s *stack) startWorker(t *testing.T, key keys.SDKKey, extra ...string) {
	t.Helper()
	cmd := exec.Command(populatorBin)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"STATSIG_SERVER_SDK_KEYS=" + key.Reveal(),
		"STATSIG_API_URL=" + s.cdnURL,
		"REDIS_URL=" + s.redis.URL(),
		"POLL_INTERVAL=300ms",
		"FETCH_TIMEOUT=2s",
		"LOG_LEVEL=debug",
		// the admin server (if this build has one) on a port of its own:
		// the tests run in parallel
		"ADMIN_ADDR=127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)),
	}, extra...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the worker: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker exited with %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("worker did not stop within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("worker output:\n%s", lastLines(out.String(), 40))
		}
	})
}

// waitFor polls check until it returns "" (success) or timeout passes; the last
// complaint is the failure message.
func waitFor(t *testing.T, timeout time.Duration, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %v for %s: %s", timeout, what, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSFP waits until the sfp HASH at key holds a payload of time lcut.
func (s *stack) waitSFP(t *testing.T, key string, lcut int64) {
	t.Helper()
	waitFor(t, 15*time.Second, "the worker to write "+key, func() string {
		vals, err := s.redis.Client().HMGet(context.Background(), key, "lcut", "config", "encoding").Result()
		if err != nil {
			return err.Error()
		}
		if vals[0] == nil || vals[1] == nil {
			return "no lcut/config fields yet"
		}
		if got := fmt.Sprint(vals[0]); got != strconv.FormatInt(lcut, 10) {
			return "lcut is " + got
		}
		if vals[2] != "plain_text" {
			return fmt.Sprintf("encoding is %v", vals[2])
		}
		return checkPayloadTime(vals[1].(string), lcut)
	})
}

// waitNodeRedis waits until field of the node-redis HASH holds
// base64(zlib(payload)) of a payload of time lcut.
func (s *stack) waitNodeRedis(t *testing.T, hash, field string, lcut int64) {
	t.Helper()
	waitFor(t, 15*time.Second, "the worker to write field "+field+" of HASH "+hash+" (REDIS_FORMATS=node-redis)", func() string {
		v, err := s.redis.Client().HGet(context.Background(), hash, field).Result()
		if err != nil {
			return err.Error()
		}
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return "value is not standard base64: " + err.Error()
		}
		zr, err := zlib.NewReader(bytes.NewReader(raw))
		if err != nil {
			return "value is not a zlib stream: " + err.Error()
		}
		payload, err := io.ReadAll(zr)
		if err != nil {
			return "inflating: " + err.Error()
		}
		return checkPayloadTime(string(payload), lcut)
	})
}

func checkPayloadTime(payload string, lcut int64) string {
	var p struct {
		Time int64 `json:"time"`
	}
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		return "payload is not JSON: " + err.Error()
	}
	if p.Time != lcut {
		return fmt.Sprintf("payload time is %d, want %d", p.Time, lcut)
	}
	return ""
}

// change makes a change at the fake CDN (Value+1, lcut+1000) and returns the
// new project.
func (s *stack) change(key keys.SDKKey) fakecdn.Project {
	return s.cdn.Change(key, 1000)
}

// assertOnlyWorkerAtCDN checks that every request the fake CDN received came
// from the worker (its User-Agent), never from an SDK.
func (s *stack) assertOnlyWorkerAtCDN(t *testing.T) {
	t.Helper()
	reqs := s.cdn.Requests()
	if len(reqs) == 0 {
		t.Errorf("the fake CDN saw no request at all")
	}
	for _, r := range reqs {
		if ua := r.Header.Get("User-Agent"); !strings.HasPrefix(ua, "statsig-populator/") {
			t.Errorf("the fake CDN saw a request that is not the worker's: %s %s (User-Agent %q)", r.Method, r.Path, ua)
		}
	}
}

// tripwire is where every SDK URL option points. It answers 503 to anything
// (a CONNECT through it as a proxy included) and remembers what it saw.
type tripwire struct {
	URL  string
	mu   sync.Mutex
	seen []string
}

func newTripwire(t *testing.T) *tripwire {
	tw := &tripwire{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw.mu.Lock()
		tw.seen = append(tw.seen, r.Method+" "+r.Host+" "+r.URL.String())
		tw.mu.Unlock()
		http.Error(w, "compat tripwire: SDKs must not use the network", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	tw.URL = srv.URL
	return tw
}

func (tw *tripwire) Seen() []string {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return append([]string(nil), tw.seen...)
}

func (tw *tripwire) assertUntouched(t *testing.T) {
	t.Helper()
	if seen := tw.Seen(); len(seen) > 0 {
		t.Errorf("an SDK used the network (the tripwire saw %d requests): %q", len(seen), seen)
	}
}

// ---- node check scripts ----

// evalResult is one evaluation by an SDK (see node/*.mjs and gosdk_test.go).
type evalResult struct {
	GatePass    bool     `json:"gatePass"`
	GateFail    bool     `json:"gateFail"`
	GateOdd     bool     `json:"gateOdd"`
	ConfigValue *float64 `json:"configValue"`
	ConfigLabel *string  `json:"configLabel"`
	Reason      *string  `json:"reason"`
	Lcut        *int64   `json:"lcut"`
}

type adapterCalls struct {
	Get     []string `json:"get"`
	Set     []string `json:"set"`
	Polling []string `json:"polling"`
}

// message is one protocol line from a node check script.
type message struct {
	Event       string       `json:"event"`
	Error       *string      `json:"error"`
	Success     bool         `json:"success"`
	Source      *string      `json:"source"`
	Eval        evalResult   `json:"eval"`
	WaitedMs    int64        `json:"waitedMs"`
	Connections []string     `json:"connections"`
	Requests    []string     `json:"requests"`
	Calls       adapterCalls `json:"calls"`
	Updates     []coreUpdate `json:"updates"`
	Raw         string       `json:"-"`
}

type coreUpdate struct {
	Source    json.RawMessage `json:"source"`
	SourceAPI *string         `json:"sourceApi"`
	Time      *int64          `json:"time"`
}

const mark = "@@compat "

// nodeSDK is one running node check script.
type nodeSDK struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	msgs   chan message
	output *syncBuffer // everything the script printed that is not a protocol line
	done   chan error
}

// nodeEnv is the environment every check script gets: the fake CDN's names,
// and proxy variables that send any HTTP(S) a library makes on its own to the
// tripwire.
func (s *stack) nodeEnv(key keys.SDKKey, extra ...string) []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.TempDir(),
		"REDIS_ADDR=" + s.redis.Addr(),
		"SDK_KEY=" + key.Reveal(),
		"TRIPWIRE_URL=" + s.trip.URL,
		"HTTP_PROXY=" + s.trip.URL, "HTTPS_PROXY=" + s.trip.URL, "ALL_PROXY=" + s.trip.URL,
		"http_proxy=" + s.trip.URL, "https_proxy=" + s.trip.URL, "all_proxy=" + s.trip.URL,
		"CONFIG_NAME=" + fakecdn.ConfigName,
		"CONFIG_FIELD=" + fakecdn.ConfigField,
		"GATE_ODD=" + fakecdn.GateOdd,
	}, extra...)
}

// startNode runs node/<script> and returns once it reported its initialization.
func startNode(t *testing.T, name, script string, env []string) (*nodeSDK, message) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("node_modules", "statsig-node")); err != nil {
		t.Fatalf("compat/node_modules is missing: run compat/run.sh (or npm ci in compat/) first")
	}
	cmd := exec.Command("node", filepath.Join("node", script))
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	n := &nodeSDK{t: t, name: name, cmd: cmd, stdin: stdin, msgs: make(chan message, 16), output: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = n.output
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting node: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, mark) {
				n.output.Write([]byte(line + "\n"))
				continue
			}
			var m message
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, mark)), &m); err != nil {
				n.output.Write([]byte("unparsable protocol line: " + line + "\n"))
				continue
			}
			m.Raw = line
			n.msgs <- m
		}
		close(n.msgs)
		n.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = n.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, lastLines(n.output.String(), 40))
		}
	})
	m := n.next("init", 30*time.Second)
	if m.Error != nil && m.Event == "error" {
		t.Fatalf("%s failed: %s", name, *m.Error)
	}
	return n, m
}

func (n *nodeSDK) next(event string, timeout time.Duration) message {
	n.t.Helper()
	select {
	case m, ok := <-n.msgs:
		if !ok {
			n.t.Fatalf("%s exited before its %q line:\n%s", n.name, event, lastLines(n.output.String(), 40))
		}
		if m.Event == "error" {
			n.t.Fatalf("%s failed: %s", n.name, deref(m.Error))
		}
		if m.Event != event {
			n.t.Fatalf("%s: got %q, want %q: %s", n.name, m.Event, event, m.Raw)
		}
		return m
	case <-time.After(timeout):
		n.t.Fatalf("%s: no %q line within %v:\n%s", n.name, event, timeout, lastLines(n.output.String(), 40))
	}
	return message{}
}

func (n *nodeSDK) send(cmd string) {
	n.t.Helper()
	if _, err := io.WriteString(n.stdin, cmd+"\n"); err != nil {
		n.t.Fatalf("%s: writing %q: %v", n.name, cmd, err)
	}
}

// waitValue asks the SDK to re-evaluate until the config value is v.
func (n *nodeSDK) waitValue(v int, timeout time.Duration) message {
	n.t.Helper()
	n.send(fmt.Sprintf("wait %d %d", v, timeout.Milliseconds()))
	return n.next("wait", timeout+10*time.Second)
}

// quit shuts the SDK down and returns its report.
func (n *nodeSDK) quit() message {
	n.t.Helper()
	n.send("quit")
	m := n.next("bye", 30*time.Second)
	select {
	case err := <-n.done:
		if err != nil {
			n.t.Errorf("%s exited with %v", n.name, err)
		}
	case <-time.After(10 * time.Second):
		n.t.Errorf("%s did not exit after quit", n.name)
	}
	return m
}

// ---- assertions on evaluations ----

// assertProject checks an evaluation against project p: the pass gate passes,
// the fail gate fails, the odd gate follows Value, and the config carries Value.
func assertProject(t *testing.T, who string, e evalResult, p fakecdn.Project) {
	t.Helper()
	if !e.GatePass {
		t.Errorf("%s: the gate that passes for everyone failed", who)
	}
	if e.GateFail {
		t.Errorf("%s: the gate that passes for no one passed", who)
	}
	if want := p.Value%2 == 1; e.GateOdd != want {
		t.Errorf("%s: %s = %v, want %v (Value %d)", who, fakecdn.GateOdd, e.GateOdd, want, p.Value)
	}
	if e.ConfigValue == nil || *e.ConfigValue != float64(p.Value) {
		t.Errorf("%s: %s.%s = %v, want %d", who, fakecdn.ConfigName, fakecdn.ConfigField, ptrString(e.ConfigValue), p.Value)
	}
	if want := fmt.Sprintf("value-%d", p.Value); e.ConfigLabel == nil || *e.ConfigLabel != want {
		t.Errorf("%s: %s.label = %v, want %q", who, fakecdn.ConfigName, ptrString(e.ConfigLabel), want)
	}
	if e.Lcut == nil || *e.Lcut != p.Lcut {
		t.Errorf("%s: evaluation lcut = %v, want %d", who, ptrString(e.Lcut), p.Lcut)
	}
}

// assertOnlyKeys checks that an adapter was asked for want and nothing else.
func assertOnlyKeys(t *testing.T, who string, got []string, want string) {
	t.Helper()
	if len(got) == 0 {
		t.Errorf("%s: the adapter was never asked for %q", who, want)
	}
	for _, k := range got {
		if k != want {
			t.Errorf("%s: the adapter was asked for %q, want only %q", who, k, want)
		}
	}
}

// ---- small things ----

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprint(*p)
}
