package poller

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func TestChangeReachesRedis(t *testing.T) {
	h := newHarness(t, Options{})
	h.run()
	h.waitFor("initial sync", 5*time.Second, h.allCurrent)
	h.cdn.Change(testKey, 5000)
	took := h.waitFor("change in Redis", 3*h.opt.Interval, func() bool { return h.current(testKey) })
	t.Logf("change reached Redis after %v (interval %v)", took, h.opt.Interval)
	// The other key was not rewritten: its lcut is unchanged.
	tg := keys.Targets("", otherKey, keys.V1, allSch)[0]
	if got := h.hash(tg.Key)["lcut"]; got != strconv.FormatInt(h.cdn.Project(otherKey).Lcut, 10) {
		t.Errorf("other key lcut = %s", got)
	}
}

func TestNeverBackInTime(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Options{})
	future := keys.Targets("", testKey, keys.V1, allSch)[0].Key // hashed v1
	older := keys.Targets("", testKey, keys.V2, allSch)[1].Key  // prefix v2
	h.rdb.HSet(ctx, future, "config", "planted by a newer writer", "lcut", "9999999999999", "encoding", "plain_text")
	h.rdb.HSet(ctx, older, "config", "planted long ago", "lcut", "5", "encoding", "plain_text")

	h.run()
	h.waitFor("older planted payload replaced", 5*time.Second, func() bool { return h.hash(older)["config"] == h.body(testKey, keys.V2) })
	// Several changes later the newer planted payload is still there.
	for i := 0; i < 3; i++ {
		h.cdn.Change(testKey, 1000)
		h.waitFor("change", 5*time.Second, func() bool { return h.hash(older)["config"] == h.body(testKey, keys.V2) })
	}
	if got := h.hash(future); got["config"] != "planted by a newer writer" || got["lcut"] != "9999999999999" {
		t.Fatalf("a payload with a newer lcut was overwritten: %.100v", got)
	}

	// The CDN going back in time (a payload older than what Redis holds) never
	// reaches Redis either.
	want := h.hash(older)
	h.cdn.SetFault(keys.SDKKey{}, fakecdn.Fault{OlderTime: true, IgnoreSinceTime: true})
	h.redis.FlushAll() // force full fetches that all come back older...
	for _, name := range []string{older} {
		h.rdb.HSet(ctx, name, want) // ...except where Redis still holds the newer payload
	}
	time.Sleep(4 * h.opt.Interval)
	if got := h.hash(older); got["lcut"] != want["lcut"] || got["config"] != want["config"] {
		t.Fatalf("older CDN payload replaced a newer one: lcut %s -> %s", want["lcut"], got["lcut"])
	}
}

func TestFlushAllHeals(t *testing.T) {
	h := newHarness(t, Options{Interval: 500 * time.Millisecond})
	h.run()
	h.waitFor("initial sync", 5*time.Second, h.allCurrent)
	time.Sleep(200 * time.Millisecond)
	h.redis.FlushAll()
	took := h.waitFor("restored after FLUSHALL", 2*h.opt.Interval, h.allCurrent)
	t.Logf("restored %d keys after FLUSHALL in %v (interval %v)", 2*len(allVers)*len(allSch), took, h.opt.Interval)
}

func TestRedisRestartHeals(t *testing.T) {
	h := newHarness(t, Options{Interval: 500 * time.Millisecond})
	h.run()
	h.waitFor("initial sync", 5*time.Second, h.allCurrent)
	h.redis.Kill()
	time.Sleep(3 * h.opt.Interval) // polls fail meanwhile
	h.redis.Restart()              // empty, same port
	took := h.waitFor("restored after restart", 2*h.opt.Interval, h.allCurrent)
	t.Logf("restored after a Redis restart in %v (interval %v)", took, h.opt.Interval)
}

func TestSlowKeyDoesNotDelayOthers(t *testing.T) {
	h := newHarness(t, Options{})
	h.run()
	h.waitFor("initial sync", 5*time.Second, h.allCurrent)
	// testKey now hangs beyond the fetch timeout on every request.
	h.cdn.SetFault(testKey, fakecdn.Fault{Delay: 10 * time.Second})
	time.Sleep(h.opt.Interval)
	for i := 0; i < 3; i++ {
		h.cdn.Change(otherKey, 1000)
		took := h.waitFor("other key's change", 3*h.opt.Interval, func() bool { return h.current(otherKey) })
		t.Logf("change %d of the healthy key reached Redis in %v", i, took)
	}
	// And the stuck key still holds its last good payload.
	if !h.current(testKey) {
		t.Fatal("the slow key lost its payload")
	}
}

func TestBadUpstreamKeepsGoodData(t *testing.T) {
	for _, f := range []fakecdn.Fault{
		{Status: 500}, {Status: 503}, {Status: 429}, {Reset: true}, {Truncate: true}, {InvalidJSON: true},
		{WrongHashedKey: true}, {WrongVersion: true}, {Protobuf: true}, {Delta: true}, {Pad: 5 << 20}, {Delay: 2 * time.Second},
	} {
		h := newHarness(t, Options{})
		h.run()
		h.waitFor("initial sync", 5*time.Second, h.allCurrent)
		want := map[string]map[string]string{}
		for _, v := range allVers {
			for _, tg := range keys.Targets("", testKey, v, allSch) {
				want[tg.Key] = h.hash(tg.Key)
			}
		}
		h.cdn.SetFault(testKey, f)
		h.cdn.Change(testKey, 1000) // the CDN has news, but only bad answers for it
		h.redis.FlushAll()          // and Redis asks for a full payload
		for name, w := range want {
			h.rdb.HSet(context.Background(), name, w)
		}
		h.waitFor("failures recorded", 5*time.Second, func() bool {
			st := h.poller.Statuses()
			return st[0].ConsecutiveFailures >= 2 && st[1].ConsecutiveFailures >= 2
		})
		for name, w := range want {
			if got := h.hash(name); got["config"] != w["config"] || got["lcut"] != w["lcut"] {
				t.Errorf("fault %+v replaced %s", f, name)
			}
		}
		if st := h.poller.Statuses()[0]; st.Current || st.LastError == "" {
			t.Errorf("fault %+v: status %+v, want a failing key", f, st)
		}
		if !h.current(otherKey) {
			t.Errorf("fault %+v on one key broke the other", f)
		}
		// Fault over: the key recovers.
		h.cdn.ClearFaults()
		took := h.waitFor("recovery", 2*h.opt.Interval+time.Second, func() bool { return h.current(testKey) })
		t.Logf("fault %+v: recovered %v after it ended", f, took)
	}
}

func TestUnauthorizedKeepsOrDeletes(t *testing.T) {
	for _, del := range []bool{false, true} {
		h := newHarness(t, Options{DeleteOnUnauthorized: del})
		h.run()
		h.waitFor("initial sync", 5*time.Second, h.allCurrent)
		h.cdn.Revoke(testKey, 403)
		h.cdn.Change(testKey, 1)
		h.waitFor("unauthorized status", 3*time.Second, func() bool {
			for _, s := range h.poller.Statuses() {
				if s.Key == testKey.Redacted() && !s.Unauthorized {
					return false
				}
			}
			return true
		})
		for _, s := range h.poller.Statuses() {
			if s.Key == testKey.Redacted() {
				if wait := time.Until(s.NextPoll); wait < 4*time.Minute {
					t.Errorf("unauthorized key polled again in %v, want about 5 minutes", wait)
				}
			}
		}
		for _, v := range allVers {
			for _, tg := range keys.Targets("", testKey, v, allSch) {
				exists := h.rdb.Exists(context.Background(), tg.Key).Val() == 1
				if exists == del {
					t.Errorf("DELETE_ON_UNAUTHORIZED=%v: %s exists=%v", del, tg.Key, exists)
				}
			}
		}
		if !h.current(otherKey) {
			t.Error("the other key was affected")
		}
	}
}

func TestTTLRefreshedOnEveryPoll(t *testing.T) {
	ctx := context.Background()
	h := newHarnessTTL(t, Options{Keys: []keys.SDKKey{testKey}, Versions: []keys.Version{keys.V1}}, time.Minute)
	h.run()
	h.waitFor("initial sync", 5*time.Second, h.allCurrent)
	name := keys.Targets("", testKey, keys.V1, allSch)[0].Key
	h.rdb.PExpire(ctx, name, 5*time.Second) // as if the TTL had been running down
	h.waitFor("TTL refreshed by a no-update poll", 3*h.opt.Interval, func() bool {
		return h.rdb.PTTL(ctx, name).Val() > 50*time.Second
	})
	if h.cdn.Count("full") != 1 {
		t.Errorf("CDN sent %d full payloads, want 1: the refresh needs no write", h.cdn.Count("full"))
	}
}

func TestOtherFormats(t *testing.T) {
	ctx := context.Background()
	layout := keys.Layout{Prefix: "p:", NodeRedisHash: "statsig-redis-x", Formats: []keys.Format{keys.NodeRedis, keys.String}, Schemas: allSch}
	h := newHarness(t, Options{Layout: layout})
	for _, s := range h.poller.Once(ctx) {
		if !s.Current {
			t.Fatalf("not current after once: %+v", s)
		}
	}
	if !h.allCurrent() {
		t.Fatal("targets do not hold the payloads")
	}
	// Exactly: the shared hash, and per key, version and schema a string and its lcut key.
	all := h.rdb.Keys(ctx, "*").Val()
	if want := 1 + 2*2*2*2; len(all) != want {
		t.Errorf("Redis holds %d keys, want %d: %v", len(all), want, all)
	}
	if n := h.rdb.HLen(ctx, "p:statsig-redis-x").Val(); n != 2*2*2*2 {
		t.Errorf("node-redis hash has %d fields, want 16 (payload and lcut per key, version, schema)", n)
	}
	h.run()
	h.cdn.Change(testKey, 1000)
	h.waitFor("change in every format", 3*h.opt.Interval, h.allCurrent)
	h.redis.FlushAll()
	h.waitFor("restored after FLUSHALL", 2*h.opt.Interval, h.allCurrent)
}
