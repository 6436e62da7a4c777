package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/poller"
)

func TestReadiness(t *testing.T) {
	now := time.Now()
	const iv = 10 * time.Second
	ok := poller.Status{Key: "secret-abc...#1", Version: "v1", Confirmed: true}
	pending := poller.Status{Key: "secret-def...#2", Version: "v2", LastOutcome: "http_5xx", ConsecutiveFailures: 3}
	refused := poller.Status{Key: "secret-ghi...#3", Version: "v1", LastOutcome: "unauthorized", Unauthorized: true}
	cases := []struct {
		name     string
		statuses []poller.Status
		redisOK  time.Time
		ready    bool
		reason   string
	}{
		{"all confirmed, Redis fresh", []poller.Status{ok, ok}, now.Add(-iv), true, ""},
		{"one pending", []poller.Status{ok, pending}, now, false, "1 of 2 key/version pairs not yet confirmed current in Redis (e.g. secret-def...#2 v2: http_5xx)"},
		// A revoked key is not this replica's fault: it must not hold a
		// rollout with maxUnavailable 0 forever.
		{"one key refused", []poller.Status{ok, refused}, now, true, ""},
		{"every key refused", []poller.Status{refused}, now, true, ""},
		// A key that fails after its first success leaves the replica ready
		// (the staleness gauges show it).
		{"failing after confirmation", []poller.Status{ok, {Key: "k", Version: "v1", Confirmed: true, ConsecutiveFailures: 100, LastOutcome: "timeout"}}, now, true, ""},
		{"never polled", []poller.Status{{Key: "k", Version: "v1"}}, now, false, "not polled yet"},
		{"Redis silent for 3 intervals", []poller.Status{ok}, now.Add(-31 * time.Second), false, "Redis has not answered for 31s"},
		{"Redis never answered", []poller.Status{ok}, time.Time{}, false, "Redis has not answered yet"},
		{"no keys", nil, now, false, "no SDK keys configured"},
	}
	for _, c := range cases {
		ready, reason := Readiness(c.statuses, c.redisOK, now, now, iv)
		if ready != c.ready || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: got %v %q, want %v %q", c.name, ready, reason, c.ready, c.reason)
		}
	}
	if ready, reason := Readiness([]poller.Status{ok}, now, now.Add(-time.Minute), now, iv); ready || reason != "scheduling loop not running" {
		t.Errorf("a stuck loop: got %v %q, want not ready", ready, reason)
	}
}

type fakeSource struct {
	st    []poller.Status
	alive time.Time
	calls *int // Statuses calls, when set
}

func (f fakeSource) Statuses() []poller.Status {
	if f.calls != nil {
		*f.calls++
	}
	return f.st
}
func (f fakeSource) Alive() time.Time   { return f.alive }
func (f fakeSource) RedisOK() time.Time { return time.Now() }

func TestHandler(t *testing.T) {
	src := fakeSource{st: []poller.Status{{Key: "secret-abc...#1", Version: "v1", Confirmed: true, Lcut: time.Now().Add(-time.Minute).UnixMilli()}}, alive: time.Now()}
	h := Handler(src, Options{Interval: time.Second, Version: "v9"})
	get := func(path string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d", code)
	}
	code, body := get("/status")
	if code != 200 || body["version"] != "v9" || body["ready"] != true {
		t.Errorf("/status = %d %v", code, body)
	}
	k := body["keys"].([]any)[0].(map[string]any)
	if age := k["lcut_age_seconds"].(float64); age < 59 || age > 70 {
		t.Errorf("lcut age %v", age)
	}
	if l := body["leader"].(map[string]any); l["enabled"] != false || l["leading"] != true {
		t.Errorf("leader without election = %v", l)
	}
	// A stuck loop fails liveness.
	h = Handler(fakeSource{st: src.st, alive: time.Now().Add(-time.Minute)}, Options{Interval: time.Second})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != 503 {
		t.Errorf("/healthz with a stuck loop = %d", rec.Code)
	}
}

func TestStatusSnapshotAndFilter(t *testing.T) {
	calls := 0
	src := fakeSource{st: []poller.Status{
		{Key: "secret-abc...#11111111", Version: "v1", Confirmed: true},
		{Key: "secret-abc...#11111111", Version: "v2", Confirmed: true},
		{Key: "secret-xyz...#22222222", Version: "v1", Confirmed: true},
	}, alive: time.Now(), calls: &calls}
	h := Handler(src, Options{Interval: time.Second})
	get := func(path string) []any {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return body["keys"].([]any)
	}
	if n := len(get("/status")); n != 3 || calls != 1 {
		t.Errorf("/status: %d keys from %d snapshots, want 3 from 1", n, calls)
	}
	if n := len(get("/status?key=secret-xyz")); n != 1 {
		t.Errorf("/status?key=secret-xyz: %d keys, want 1", n)
	}
	if n := len(get("/status?key=" + "secret-abc...%2311111111")); n != 2 {
		t.Errorf("/status?key=<full redacted name>: %d keys, want 2", n)
	}
	if n := len(get("/status?key=nothing")); n != 0 {
		t.Errorf("/status?key=nothing: %d keys, want 0", n)
	}
}
