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
	ok := poller.Status{Key: "secret-abc…#1", Version: "v1", Confirmed: true}
	pending := poller.Status{Key: "secret-def…#2", Version: "v2", LastOutcome: "unauthorized"}
	cases := []struct {
		name     string
		statuses []poller.Status
		redisOK  time.Time
		ready    bool
		reason   string
	}{
		{"all confirmed, Redis fresh", []poller.Status{ok, ok}, now.Add(-iv), true, ""},
		{"one pending", []poller.Status{ok, pending}, now, false, "1 of 2 key/version pairs not yet confirmed current in Redis (e.g. secret-def…#2 v2: unauthorized)"},
		{"never polled", []poller.Status{{Key: "k", Version: "v1"}}, now, false, "not polled yet"},
		{"Redis silent for 3 intervals", []poller.Status{ok}, now.Add(-31 * time.Second), false, "Redis has not answered for 31s"},
		{"Redis never answered", []poller.Status{ok}, time.Time{}, false, "Redis has not answered yet"},
		{"no keys", nil, now, false, "no SDK keys configured"},
	}
	for _, c := range cases {
		ready, reason := Readiness(c.statuses, c.redisOK, now, iv)
		if ready != c.ready || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: got %v %q, want %v %q", c.name, ready, reason, c.ready, c.reason)
		}
	}
}

type fakeSource struct {
	st    []poller.Status
	alive time.Time
}

func (f fakeSource) Statuses() []poller.Status { return f.st }
func (f fakeSource) Alive() time.Time          { return f.alive }
func (f fakeSource) RedisOK() time.Time        { return time.Now() }

func TestHandler(t *testing.T) {
	src := fakeSource{st: []poller.Status{{Key: "secret-abc…#1", Version: "v1", Confirmed: true, Lcut: time.Now().Add(-time.Minute).UnixMilli()}}, alive: time.Now()}
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
