package poller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
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
	// Newer than anything the CDN serves here, but not beyond the clock skew
	// (such a key would count as pinned and not be polled at all).
	h.rdb.HSet(ctx, future, "config", "planted by a newer writer", "lcut", "1701000000000", "encoding", "plain_text")
	h.rdb.HSet(ctx, older, "config", "planted long ago", "lcut", "5", "encoding", "plain_text")

	h.run()
	h.waitFor("older planted payload replaced", 5*time.Second, func() bool { return h.hash(older)["config"] == h.body(testKey, keys.V2) })
	// Several changes later the newer planted payload is still there.
	for i := 0; i < 3; i++ {
		h.cdn.Change(testKey, 1000)
		h.waitFor("change", 5*time.Second, func() bool { return h.hash(older)["config"] == h.body(testKey, keys.V2) })
	}
	if got := h.hash(future); got["config"] != "planted by a newer writer" || got["lcut"] != "1701000000000" {
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
	h.cdn.ResetLog()
	// Prove the older answers were served and acted on before judging.
	h.waitFor("older payloads served", 5*time.Second, func() bool {
		return len(h.cdn.RequestsFor(testKey, keys.V2)) >= 3 && h.status(testKey, keys.V2).LastOutcome == "stale_skipped"
	})
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

// targetsExist counts k's sfp targets that exist in Redis.
func (h *harness) targetsExist(k keys.SDKKey) int {
	n := 0
	for _, v := range allVers {
		for _, tg := range keys.Targets("", k, v, allSch) {
			n += int(h.rdb.Exists(context.Background(), tg.Key).Val())
		}
	}
	return n
}

// requests counts the CDN's answers to k (v1) since the log was reset.
func (h *harness) requests(k keys.SDKKey) int {
	return len(h.cdn.RequestsFor(k, keys.V1))
}

func TestUnauthorizedKeepsOrDeletes(t *testing.T) {
	const deleteAfter = 600 * time.Millisecond
	for _, del := range []bool{false, true} {
		h := newHarness(t, Options{DeleteOnUnauthorized: del, UnauthorizedRecheck: 100 * time.Millisecond, UnauthorizedDeleteAfter: deleteAfter})
		h.run()
		h.waitFor("initial sync", 5*time.Second, h.allCurrent)
		h.cdn.ResetLog()
		h.cdn.Revoke(testKey, 403)
		h.cdn.Change(testKey, 1)
		refusedAt := time.Now()
		h.waitFor("unauthorized status", 3*time.Second, func() bool {
			for _, s := range h.poller.Statuses() {
				if s.Key == testKey.Redacted() && !s.Unauthorized {
					return false
				}
			}
			return true
		})
		// One refusal proves little (a proxy's error page): nothing is
		// deleted yet, whatever the setting.
		if n := h.targetsExist(testKey); n != 4 || time.Since(refusedAt) >= deleteAfter {
			t.Fatalf("DELETE_ON_UNAUTHORIZED=%v: %d of 4 targets after the first refusal (%v in)", del, n, time.Since(refusedAt))
		}
		for _, s := range h.poller.Statuses() {
			if s.Key == testKey.Redacted() {
				if wait := time.Until(s.NextPoll); wait > 2*h.opt.Interval {
					t.Errorf("unauthorized key polled again in %v, want the recheck period", wait)
				}
			}
		}
		// Refused without a break for longer than deleteAfter and more
		// than three rechecks, while the other key is fine.
		h.waitFor("rechecks past the threshold", 10*time.Second, func() bool {
			return h.requests(testKey) > MinUnauthorizedRechecks+1 && time.Since(refusedAt) > deleteAfter+h.opt.Interval
		})
		if del {
			h.waitFor("entries deleted", 3*time.Second, func() bool { return h.targetsExist(testKey) == 0 })
		} else if n := h.targetsExist(testKey); n != 4 {
			t.Errorf("DELETE_ON_UNAUTHORIZED=false: %d of 4 targets left", n)
		}
		if !h.current(otherKey) {
			t.Error("the other key was affected")
		}
	}
}

// When every key is refused at once, the fault is upstream (a proxy's 403
// page, a CDN incident), not in the keys: nothing is deleted.
func TestEveryKeyRefusedDeletesNothing(t *testing.T) {
	h := newHarness(t, Options{DeleteOnUnauthorized: true, UnauthorizedRecheck: 100 * time.Millisecond, UnauthorizedDeleteAfter: 300 * time.Millisecond})
	h.run()
	h.waitFor("initial sync", 5*time.Second, h.allCurrent)
	h.cdn.ResetLog()
	h.cdn.Revoke(testKey, 403)
	h.cdn.Revoke(otherKey, 403)
	refusedAt := time.Now()
	h.waitFor("many rechecks of both keys past the threshold", 10*time.Second, func() bool {
		return h.requests(testKey) > 2*MinUnauthorizedRechecks && h.requests(otherKey) > 2*MinUnauthorizedRechecks &&
			time.Since(refusedAt) > time.Second
	})
	if a, b := h.targetsExist(testKey), h.targetsExist(otherKey); a != 4 || b != 4 {
		t.Errorf("every key refused: %d and %d of 4 targets left, want all", a, b)
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

// One broken target (a key of another type) must not stop the TTL refresh of
// the same key's healthy targets: they would expire.
func TestTTLRefreshedBesideABrokenTarget(t *testing.T) {
	ctx := context.Background()
	h := newHarnessTTL(t, Options{Keys: []keys.SDKKey{testKey}, Versions: []keys.Version{keys.V1}}, time.Minute)
	targets := keys.Targets("", testKey, keys.V1, allSch)
	h.rdb.Set(ctx, targets[1].Key, "not a hash", 0) // the prefix target is broken
	h.run()
	h.waitFor("healthy target written", 5*time.Second, func() bool { return h.hash(targets[0].Key)["lcut"] != "" })
	h.cdn.Change(testKey, 1000)
	h.waitFor("change written beside the broken target", 5*time.Second, func() bool {
		return h.hash(targets[0].Key)["config"] == h.body(testKey, keys.V1)
	})
	h.rdb.PExpire(ctx, targets[0].Key, 5*time.Second) // as if the TTL had been running down
	h.cdn.Change(testKey, 1000)                       // a full body: the healthy target is written again...
	h.waitFor("healthy target rewritten", 5*time.Second, func() bool { return h.hash(targets[0].Key)["config"] == h.body(testKey, keys.V1) })
	h.rdb.PExpire(ctx, targets[0].Key, 5*time.Second)
	h.cdn.SetFault(testKey, fakecdn.Fault{IgnoreSinceTime: true}) // ...and then unchanged on every poll
	h.waitFor("TTL of the healthy target refreshed", 3*time.Second, func() bool {
		return h.rdb.PTTL(ctx, targets[0].Key).Val() > 50*time.Second
	})
	if st := h.status(testKey, keys.V1); st.LastOutcome != "redis_error" {
		t.Errorf("the broken target went unreported: %+v", st)
	}
}

// REDIS_KEY_TTL changed to 0: keys written under the old TTL lose it.
func TestTTLRemovedWhenTurnedOff(t *testing.T) {
	ctx := context.Background()
	opt := Options{Keys: []keys.SDKKey{testKey}, Versions: []keys.Version{keys.V1}}
	h := newHarnessTTL(t, opt, time.Hour)
	ctxRun, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = h.poller.Run(ctxRun) }()
	h.waitFor("written with a TTL", 5*time.Second, func() bool {
		for _, tg := range keys.Targets("", testKey, keys.V1, allSch) {
			if h.rdb.PTTL(ctx, tg.Key).Val() <= 0 {
				return false
			}
		}
		return true
	})
	cancel()
	<-done
	// A new worker on the same Redis, without a TTL.
	h2 := newHarnessTTL(t, opt, 0)
	h2.rdb = h.rdb
	h2.poller.store = writer.New(h.rdb, 0)
	h2.poller.fetch = h.poller.fetch
	h2.run()
	h2.waitFor("TTLs removed", 5*time.Second, func() bool {
		for _, tg := range keys.Targets("", testKey, keys.V1, allSch) {
			if h.rdb.PTTL(ctx, tg.Key).Val() != -1 {
				return false
			}
		}
		return true
	})
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

// setAll writes lcut and a payload into every sfp target of k by hand, as
// another writer (or a bad payload of the past) would have.
func (h *harness) setAll(k keys.SDKKey, lcut int64) {
	for _, v := range allVers {
		for _, tg := range keys.Targets("", k, v, allSch) {
			h.rdb.HSet(context.Background(), tg.Key, "config", h.body(k, v), "lcut", strconv.FormatInt(lcut, 10), "encoding", "plain_text")
		}
	}
}

func (h *harness) status(k keys.SDKKey, v keys.Version) Status {
	for _, s := range h.poller.Statuses() {
		if s.Key == k.Redacted() && s.Version == v {
			return s
		}
	}
	h.t.Fatalf("no status for %s %s", k, v)
	return Status{}
}

// A key whose Redis entries hold an lcut far in the future (a payload dated
// 2100 written before the worker refused such payloads) can never be
// updated: the worker says so instead of reporting success, and rewrites
// the key once an operator removes the entries.
func TestFutureLcutInRedisIsReported(t *testing.T) {
	h := newHarness(t, Options{})
	h.setAll(testKey, 4102444800000)
	h.run()
	h.waitFor("the other key written", 5*time.Second, func() bool { return h.current(otherKey) })
	h.waitFor("the pinned key reported", 5*time.Second, func() bool {
		st := h.status(testKey, keys.V1)
		return st.FutureLcut && st.LastOutcome == "future_lcut"
	})
	st := h.status(testKey, keys.V2)
	if st.Current || st.Confirmed || st.LastError == "" {
		t.Errorf("pinned key status %+v, want not current with an error", st)
	}
	if n := len(h.cdn.RequestsFor(testKey, keys.V1)); n != 0 {
		t.Errorf("%d fetches for a pinned key: nothing it could write", n)
	}
	// The README's recovery: delete the entries; the next poll rewrites them.
	for _, v := range allVers {
		for _, tg := range keys.Targets("", testKey, v, allSch) {
			h.rdb.Del(context.Background(), tg.Key)
		}
	}
	h.waitFor("rewritten after the entries were removed", 3*time.Second, func() bool { return h.current(testKey) })
	if st := h.status(testKey, keys.V1); st.FutureLcut || !st.Current {
		t.Errorf("after recovery: %+v", st)
	}
}

// An outcome is "updated" only when a target was written: a full payload
// that every target already holds, or holds newer, is not.
func TestUpdatedOnlyWhenWritten(t *testing.T) {
	h := newHarness(t, Options{})
	h.cdn.SetFault(testKey, fakecdn.Fault{IgnoreSinceTime: true}) // a full body on every poll
	h.run()
	h.waitFor("initial sync", 5*time.Second, h.allCurrent)
	h.waitFor("a full body Redis already holds", 3*time.Second, func() bool { return h.status(testKey, keys.V1).LastOutcome == "unchanged" })
	// Another writer went ahead (a newer lcut, not a future one).
	h.setAll(testKey, h.cdn.Project(testKey).Lcut+5000)
	h.waitFor("an older full body", 3*time.Second, func() bool { return h.status(testKey, keys.V1).LastOutcome == "stale_skipped" })
	if st := h.status(testKey, keys.V1); !st.Current || st.FutureLcut {
		t.Errorf("status %+v", st)
	}
}

// gaps lists, for each key in ks and both versions, the time between
// consecutive requests the CDN received after from.
func (h *harness) gaps(ks []keys.SDKKey, from time.Time) []time.Duration {
	var out []time.Duration
	for _, k := range ks {
		for _, v := range allVers {
			var last time.Time
			for _, r := range h.cdn.RequestsFor(k, v) {
				if r.At.Before(from) {
					continue
				}
				if !last.IsZero() {
					out = append(out, r.At.Sub(last))
				}
				last = r.At
			}
		}
	}
	slices.Sort(out)
	return out
}

// With 10% of the keys hanging (no answer at all), the others keep their
// schedule: failing keys get only the slow share of the concurrency, and a
// fetch that hangs leaves its healthy slot after SlowAfter.
func TestHangingKeysDoNotStarveOthers(t *testing.T) {
	var ks []keys.SDKKey
	for i := range 40 {
		ks = append(ks, keys.MustParse(fmt.Sprintf("secret-%02d-hanging-test-key", i)))
	}
	const interval = 500 * time.Millisecond
	h := newHarness(t, Options{Keys: ks, Interval: interval, Concurrency: 4})
	h.run()
	h.waitFor("initial sync", 10*time.Second, h.allCurrent)
	hanging, healthy := ks[:4], ks[4:]
	for _, k := range hanging {
		h.cdn.SetFault(k, fakecdn.Fault{Delay: time.Minute}) // beyond the fetch timeout
	}
	start := time.Now()
	h.waitFor("every hanging key asked", 5*time.Second, func() bool {
		for _, k := range hanging {
			for _, v := range allVers {
				if !askedSince(h, k, v, start) {
					return false
				}
			}
		}
		return true
	})
	time.Sleep(max(0, 6*interval-time.Since(start)))
	g := h.gaps(healthy, start)
	if len(g) < 36*2*4 {
		t.Fatalf("only %d poll gaps of healthy keys in %v", len(g), time.Since(start))
	}
	p50, p99, worst := g[len(g)/2], g[len(g)*99/100], g[len(g)-1]
	t.Logf("healthy keys' poll gap with 10%% of keys hanging (interval %v, concurrency 4): median %v, p99 %v, max %v (%d gaps)", interval, p50, p99, worst, len(g))
	if p99 > interval*12/10 {
		t.Errorf("healthy keys' p99 poll gap %v, want at most 1.2 intervals (%v)", p99, interval*12/10)
	}
}

func askedSince(h *harness, k keys.SDKKey, v keys.Version, t time.Time) bool {
	for _, r := range h.cdn.RequestsFor(k, v) {
		if r.At.After(t) {
			return true
		}
	}
	return false
}

// unreachableStore is a writer whose Inspect reports the targets of one SDK
// key as on a node that cannot be asked (a failed Cluster master).
type unreachableStore struct {
	*writer.Writer
	down map[string]bool // target key names
}

func (s unreachableStore) Inspect(ctx context.Context, targets []keys.Target) ([]writer.Stored, error) {
	out, err := s.Writer.Inspect(ctx, targets)
	for i, t := range targets {
		if err == nil && s.down[t.Key] {
			out[i] = writer.Stored{Err: errors.New("dial tcp: connection refused"), Unreachable: true}
		}
	}
	return out, err
}

// A key whose node cannot be asked is a Redis retry: no fetch (nothing could
// be written), while the keys on other nodes go on.
func TestUnreachableTargetIsNotFetched(t *testing.T) {
	h := newHarness(t, Options{})
	down := map[string]bool{}
	for _, v := range allVers {
		for _, tg := range keys.Targets("", testKey, v, allSch) {
			down[tg.Key] = true
		}
	}
	h.poller.store = unreachableStore{Writer: h.poller.store.(*writer.Writer), down: down}
	h.run()
	h.waitFor("the other key written", 5*time.Second, func() bool { return h.current(otherKey) })
	h.waitFor("the unreachable key retried", 5*time.Second, func() bool {
		st := h.status(testKey, keys.V1)
		return st.LastOutcome == "redis_error" && st.ConsecutiveFailures >= 2
	})
	if n := len(h.cdn.RequestsFor(testKey, keys.V1)) + len(h.cdn.RequestsFor(testKey, keys.V2)); n != 0 {
		t.Errorf("%d fetches for a key whose Redis node cannot be asked", n)
	}
}
