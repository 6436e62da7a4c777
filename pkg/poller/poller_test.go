package poller

import (
	"context"
	"io"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

var (
	testKey  = keys.MustParse("secret-abc123XYZ0123456789example")
	otherKey = keys.MustParse("secret-harness-00001")
	allVers  = []keys.Version{keys.V1, keys.V2}
	allSch   = []keys.Schema{keys.Hashed, keys.Prefix}
)

func nopLogger() zerolog.Logger { return zerolog.New(io.Discard) }

type harness struct {
	t      testing.TB
	cdn    *fakecdn.Server
	redis  *redistest.Server
	rdb    *redis.Client
	opt    Options
	poller *Poller
}

func newHarness(t testing.TB, opt Options) *harness {
	t.Helper()
	h := &harness{t: t, cdn: fakecdn.New(), redis: redistest.Start(t)}
	srv := httptest.NewServer(h.cdn)
	t.Cleanup(srv.Close)
	h.rdb = h.redis.Client()
	if opt.Keys == nil {
		opt.Keys = []keys.SDKKey{testKey, otherKey}
	}
	if opt.Versions == nil {
		opt.Versions = allVers
	}
	if opt.Layout.Schemas == nil {
		opt.Layout.Schemas = allSch
	}
	if opt.Layout.Formats == nil {
		opt.Layout.Formats = []keys.Format{keys.SFP}
	}
	if opt.Interval == 0 {
		opt.Interval = 300 * time.Millisecond
	}
	for i, k := range opt.Keys {
		h.cdn.SetProject(k, fakecdn.Project{Lcut: 1700000000000 + int64(i)*1000, Value: 1})
	}
	rdb := redis.NewClient(&redis.Options{Addr: h.redis.Addr(), MaxRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	ttl := time.Duration(0)
	if opt.RedisTimeout == 0 {
		opt.RedisTimeout = time.Second
	}
	h.opt = opt
	f := fetcher.New(fetcher.Options{BaseURL: srv.URL, Timeout: time.Second, MaxPayloadBytes: 4 << 20, UserAgent: "test"})
	h.poller = New(opt, f, writer.New(rdb, ttl), nopLogger(), nil)
	return h
}

func newHarnessTTL(t *testing.T, opt Options, ttl time.Duration) *harness {
	h := newHarness(t, opt)
	rdb := redis.NewClient(&redis.Options{Addr: h.redis.Addr(), MaxRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	h.poller.store = writer.New(rdb, ttl)
	return h
}

// run starts Run in the background and stops it when the test ends.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = h.poller.Run(ctx) }()
	h.t.Cleanup(func() { cancel(); wg.Wait() })
}

func (h *harness) body(k keys.SDKKey, v keys.Version) string {
	p := h.cdn.Project(k)
	if v == keys.V1 {
		return string(fakecdn.V1Body(k, p))
	}
	return string(fakecdn.V2Body(k, p))
}

func (h *harness) hash(name string) map[string]string {
	return h.rdb.HGetAll(context.Background(), name).Val()
}

// current reports whether every target of k holds the CDN's current payload.
func (h *harness) current(k keys.SDKKey) bool {
	for _, v := range h.opt.Versions {
		for _, t := range h.opt.Layout.Targets(k, v) {
			if e, err := writer.New(h.rdb, 0).Read(context.Background(), t); err != nil || string(e.Payload) != h.body(k, v) {
				return false
			}
		}
	}
	return true
}

func (h *harness) allCurrent() bool {
	for _, k := range h.opt.Keys {
		if !h.current(k) {
			return false
		}
	}
	return true
}

// waitFor polls cond every 10ms and returns how long it took to hold.
func (h *harness) waitFor(what string, limit time.Duration, cond func() bool) time.Duration {
	h.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			h.t.Fatalf("%s: not true after %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestOnceWritesTheExactLayout(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Options{Layout: keys.Layout{Prefix: "team-a:"}})
	// A statsig-br sibling left by someone else would hide every JSON write
	// from server-core stores with getBytes: it must go.
	for _, k := range h.opt.Keys {
		for _, tg := range keys.Targets("team-a:", k, keys.V2, allSch) {
			h.rdb.Set(ctx, tg.BRSibling(), "stale protobuf", 0)
		}
	}
	statuses := h.poller.Once(ctx)
	for _, s := range statuses {
		if !s.Current || s.LastOutcome != "updated" {
			t.Errorf("status %+v, want current after an update", s)
		}
	}

	var want []string
	for i, k := range h.opt.Keys {
		lcut := strconv.FormatInt(1700000000000+int64(i)*1000, 10)
		for _, v := range allVers {
			for _, tg := range keys.Targets("team-a:", k, v, allSch) {
				want = append(want, tg.Key)
				got := h.hash(tg.Key)
				if len(got) != 3 || got["encoding"] != "plain_text" || got["lcut"] != lcut || got["config"] != h.body(k, v) {
					t.Errorf("%s = %.200v, want encoding, lcut %s and the exact %s payload", tg.Key, got, lcut, v)
				}
				if ttl := h.rdb.TTL(ctx, tg.Key).Val(); ttl != -1 {
					t.Errorf("%s has TTL %v with REDIS_KEY_TTL 0", tg.Key, ttl)
				}
			}
		}
	}
	all := h.rdb.Keys(ctx, "*").Val()
	sort.Strings(all)
	sort.Strings(want)
	if len(all) != len(want) {
		t.Fatalf("Redis holds %d keys, want exactly the %d targets:\n%v\nwant\n%v", len(all), len(want), all, want)
	}
	for i := range want {
		if all[i] != want[i] {
			t.Fatalf("Redis holds %q, want %q", all[i], want[i])
		}
	}
	// Golden name of one of them, from the layout's worked example.
	if h.hash("team-a:statsig|/v2/download_config_specs|plain_text|DTAAZ4lexssiyUagx9aS5cly2FLf0wud0zKZT2l1qPM=")["lcut"] == "" {
		t.Error("the worked-example key name is not among those written")
	}
}

func TestSteadyStateIsConditionalAndWritesNothing(t *testing.T) {
	h := newHarness(t, Options{Interval: 100 * time.Millisecond})
	h.run()
	h.waitFor("initial sync", 5*time.Second, h.allCurrent)
	before := writeCommands(h.rdb)
	time.Sleep(600 * time.Millisecond)

	for _, k := range h.opt.Keys {
		for _, v := range allVers {
			reqs := h.cdn.RequestsFor(k, v)
			if len(reqs) < 4 {
				t.Fatalf("%s %s: only %d requests in ~7 intervals", k, v, len(reqs))
			}
			if reqs[0].SinceTime != -1 {
				t.Errorf("%s %s: first request has sinceTime %d, want none", k, v, reqs[0].SinceTime)
			}
			want := h.cdn.Project(k).Lcut
			for _, r := range reqs[1:] {
				if r.SinceTime != want {
					t.Errorf("%s %s: later request sinceTime = %d, want %d", k, v, r.SinceTime, want)
				}
			}
		}
	}
	if n := h.cdn.Count("full"); n != 4 {
		t.Errorf("CDN sent %d full payloads, want 4 (one per key and version)", n)
	}
	// No write command reached Redis after the initial sync.
	if a := writeCommands(h.rdb); a != before {
		t.Errorf("Redis ran %d write commands in steady state", a-before)
	}
}

// writeCommands counts the write commands Redis has run (INFO commandstats).
func writeCommands(rdb *redis.Client) int {
	n := 0
	for _, line := range strings.Split(rdb.Info(context.Background(), "commandstats").Val(), "\n") {
		for _, cmd := range []string{"evalsha", "eval", "hset", "del", "pexpire", "persist", "set", "expire"} {
			prefix := "cmdstat_" + cmd + ":calls="
			if strings.HasPrefix(line, prefix) {
				c, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(line, prefix), ",", 2)[0])
				n += c
			}
		}
	}
	return n
}
