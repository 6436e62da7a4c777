package config

import (
	"strings"
	"testing"
	"time"
)

// Issue 15: REDIS_KEY_TTL against POLL_INTERVAL, REDIS_WAIT_REPLICAS and
// REDIS_WAIT_TIMEOUT, CONDITIONAL_FETCH_TIMEOUT against FETCH_TIMEOUT.
func TestIssue15Limits(t *testing.T) {
	base := defaults(t)
	base.SDKKeys = keyA
	cases := []struct {
		name  string
		mod   func(*Env)
		want  []string // variables with problems
		check func(Config) bool
		hints []string // in the message, when a problem is expected
	}{
		// A TTL shorter than two intervals would let keys expire between
		// two successful polls.
		{"ttl twice the interval", func(e *Env) { e.PollInterval, e.RedisKeyTTL = "10s", "20s" }, nil,
			func(c Config) bool { return c.KeyTTL == 20*time.Second }, nil},
		{"ttl just below twice the interval", func(e *Env) { e.PollInterval, e.RedisKeyTTL = "10s", "19.999s" }, []string{"REDIS_KEY_TTL"}, nil,
			[]string{"19.999s", "POLL_INTERVAL is 10s", "at least 20s", "0 for keys that never expire"}},
		{"ttl one interval", func(e *Env) { e.PollInterval, e.RedisKeyTTL = "1m", "1m" }, []string{"REDIS_KEY_TTL"}, nil,
			[]string{"1m0s is shorter than two poll intervals", "POLL_INTERVAL is 1m0s", "at least 2m0s"}},
		{"ttl against the default interval", func(e *Env) { e.RedisKeyTTL = "15s" }, []string{"REDIS_KEY_TTL"}, nil,
			[]string{"15s", "POLL_INTERVAL is 10s"}},
		{"ttl 0 with a long interval", func(e *Env) { e.PollInterval, e.RedisKeyTTL = "24h", "0s" }, nil,
			func(c Config) bool { return c.KeyTTL == 0 }, nil},
		{"ttl minimum with a short interval", func(e *Env) { e.PollInterval, e.RedisKeyTTL = "100ms", "1s" }, nil,
			func(c Config) bool { return c.KeyTTL == time.Second }, nil},
		{"ttl with a bad interval: one problem", func(e *Env) { e.PollInterval, e.RedisKeyTTL = "often", "5s" }, []string{"POLL_INTERVAL"}, nil, nil},
		{"bad ttl: one problem", func(e *Env) { e.RedisKeyTTL = "500ms" }, []string{"REDIS_KEY_TTL"}, nil, []string{"outside"}},

		// REDIS_WAIT_REPLICAS 0-16, REDIS_WAIT_TIMEOUT 1ms-5s.
		{"wait replicas 16", func(e *Env) { e.RedisWaitReplicas = "16" }, nil, func(c Config) bool { return c.WaitReplicas == 16 }, nil},
		{"wait replicas 1, timeout 1ms", func(e *Env) { e.RedisWaitReplicas, e.RedisWaitTimeout = "1", "1ms" }, nil,
			func(c Config) bool { return c.WaitReplicas == 1 && c.WaitTimeout == time.Millisecond }, nil},
		{"wait timeout 5s", func(e *Env) { e.RedisWaitTimeout = "5s" }, nil, func(c Config) bool { return c.WaitTimeout == 5*time.Second }, nil},
		{"wait replicas 17", func(e *Env) { e.RedisWaitReplicas = "17" }, []string{"REDIS_WAIT_REPLICAS"}, nil, []string{"0…16"}},
		{"wait replicas -1", func(e *Env) { e.RedisWaitReplicas = "-1" }, []string{"REDIS_WAIT_REPLICAS"}, nil, nil},
		{"wait replicas text", func(e *Env) { e.RedisWaitReplicas = "all" }, []string{"REDIS_WAIT_REPLICAS"}, nil, []string{"not a whole number"}},
		{"wait timeout 0", func(e *Env) { e.RedisWaitTimeout = "0" }, []string{"REDIS_WAIT_TIMEOUT"}, nil, nil},
		{"wait timeout 500us", func(e *Env) { e.RedisWaitTimeout = "500us" }, []string{"REDIS_WAIT_TIMEOUT"}, nil, nil},
		{"wait timeout 6s", func(e *Env) { e.RedisWaitTimeout = "6s" }, []string{"REDIS_WAIT_TIMEOUT"}, nil, []string{"1ms…5s"}},
		{"wait timeout text", func(e *Env) { e.RedisWaitTimeout = "soon" }, []string{"REDIS_WAIT_TIMEOUT"}, nil, nil},

		// CONDITIONAL_FETCH_TIMEOUT: 100ms up to FETCH_TIMEOUT; unset, 5s or
		// FETCH_TIMEOUT when that is shorter.
		{"conditional unset", func(e *Env) {}, nil, func(c Config) bool { return c.ConditionalFetchTimeout == 5*time.Second }, nil},
		{"conditional unset, short fetch timeout", func(e *Env) { e.FetchTimeout = "400ms" }, nil,
			func(c Config) bool {
				return c.ConditionalFetchTimeout == 400*time.Millisecond && c.FetchTimeout == 400*time.Millisecond
			}, nil},
		{"conditional 2s", func(e *Env) { e.CondFetchTimeout = "2s" }, nil, func(c Config) bool { return c.ConditionalFetchTimeout == 2*time.Second }, nil},
		{"conditional 100ms", func(e *Env) { e.CondFetchTimeout = "100ms" }, nil, func(c Config) bool { return c.ConditionalFetchTimeout == 100*time.Millisecond }, nil},
		{"conditional equal to fetch timeout", func(e *Env) { e.FetchTimeout, e.CondFetchTimeout = "2s", "2s" }, nil,
			func(c Config) bool { return c.ConditionalFetchTimeout == 2*time.Second }, nil},
		{"conditional above fetch timeout", func(e *Env) { e.FetchTimeout, e.CondFetchTimeout = "2s", "3s" }, []string{"CONDITIONAL_FETCH_TIMEOUT"}, nil,
			[]string{"3s is longer than FETCH_TIMEOUT (2s)"}},
		{"explicit 5s above a short fetch timeout", func(e *Env) { e.FetchTimeout, e.CondFetchTimeout = "1s", "5s" }, []string{"CONDITIONAL_FETCH_TIMEOUT"}, nil, nil},
		{"conditional below 100ms", func(e *Env) { e.CondFetchTimeout = "50ms" }, []string{"CONDITIONAL_FETCH_TIMEOUT"}, nil, []string{"outside"}},
		{"conditional text", func(e *Env) { e.CondFetchTimeout = "fast" }, []string{"CONDITIONAL_FETCH_TIMEOUT"}, nil, []string{"not a duration"}},
		{"conditional with a bad fetch timeout: one problem", func(e *Env) { e.FetchTimeout, e.CondFetchTimeout = "soon", "10s" }, []string{"FETCH_TIMEOUT"}, nil, nil},
		{"conditional unset with a bad fetch timeout: one problem", func(e *Env) { e.FetchTimeout = "2h" }, []string{"FETCH_TIMEOUT"}, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := base
			c.mod(&env)
			cfg, err := parseWant(t, env, c.want, c.hints)
			if err == nil && c.check != nil && !c.check(cfg) {
				t.Errorf("parsed %+v", cfg)
			}
		})
	}
}

// The new problems are collected with the others, in Env's order.
func TestIssue15ProblemsTogether(t *testing.T) {
	env := defaults(t)
	env.SDKKeys = keyA
	env.PollInterval = "30s"
	env.FetchTimeout = "1s"
	env.CondFetchTimeout = "2s"
	env.RedisKeyTTL = "45s"
	env.RedisWaitReplicas = "99"
	env.RedisWaitTimeout = "1m"
	env.LogLevel = "loud"
	_, err := env.Parse(noFile, true)
	want := "CONDITIONAL_FETCH_TIMEOUT,REDIS_KEY_TTL,REDIS_WAIT_REPLICAS,REDIS_WAIT_TIMEOUT,LOG_LEVEL"
	if got := strings.Join(problemVars(t, err), ","); got != want {
		t.Fatalf("problems with %s, want %s\n%v", got, want, err)
	}
	for _, h := range []string{"45s is shorter than two poll intervals (POLL_INTERVAL is 30s)", "2s is longer than FETCH_TIMEOUT (1s)"} {
		if !strings.Contains(err.Error(), h) {
			t.Errorf("message lacks %q:\n%v", h, err)
		}
	}
}

// CONDITIONAL_FETCH_TIMEOUT= (empty, as Helm renders "nothing") is unset.
func TestConditionalFetchTimeoutEmpty(t *testing.T) {
	defaults(t) // a clean environment
	t.Setenv("STATSIG_SERVER_SDK_KEYS", keyA)
	t.Setenv("FETCH_TIMEOUT", "3s")
	t.Setenv("CONDITIONAL_FETCH_TIMEOUT", "")
	c, err := Load(true)
	if err != nil {
		t.Fatal(err)
	}
	if c.ConditionalFetchTimeout != 3*time.Second {
		t.Fatalf("ConditionalFetchTimeout = %v, want FETCH_TIMEOUT (3s)", c.ConditionalFetchTimeout)
	}
	t.Setenv("CONDITIONAL_FETCH_TIMEOUT", "1500ms")
	if c, err = Load(true); err != nil || c.ConditionalFetchTimeout != 1500*time.Millisecond {
		t.Fatalf("%v, %v", c.ConditionalFetchTimeout, err)
	}
}

// help lists the new variables with their defaults.
func TestUsageListsIssue15Variables(t *testing.T) {
	var b strings.Builder
	if err := Usage(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"REDIS_WAIT_REPLICAS (default 0)", "REDIS_WAIT_TIMEOUT (default 100ms)", "CONDITIONAL_FETCH_TIMEOUT\n", "Default 5s, or FETCH_TIMEOUT when that is shorter"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}
