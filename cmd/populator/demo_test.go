package main

// populator demo: its embedded Redis (miniredis) must behave like Redis for
// every command the worker sends, and the demo must come up, write, follow a
// change and stop cleanly.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/internal/demo"
	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/leader"
	"github.com/statsig-populator/statsig-populator/pkg/redisconn"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

// ---- miniredis against redis-server ----

// demoClient connects to addr the way the worker does (redisconn: client
// name, buffers; protocol 2 or 3, go-redis's default being 3).
func demoClient(t *testing.T, addr string, protocol int) redis.UniversalClient {
	t.Helper()
	rdb, err := redisconn.New(redisconn.Options{Mode: redisconn.Standalone, Addrs: []string{addr},
		Tuning: redisconn.Tuning{Protocol: protocol, MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// TestDemoMiniredisRunsTheWriter runs every operation of pkg/writer (the
// download_config_specs scripts in the three formats, the reads, TTL
// refreshes, deletes, the type guards, and the ID-list scripts) against a
// real redis-server and against miniredis, over RESP2 and RESP3, and
// requires the same transcript from all: any difference is an
// incompatibility that would make the demo behave unlike production.
func TestDemoMiniredisRunsTheWriter(t *testing.T) {
	rs := redistest.Start(t)
	mr := miniredis.RunT(t)
	mr.ClockTTL(true)
	var want []string
	for _, protocol := range []int{3, 2} {
		for _, b := range []struct{ name, addr string }{{"redis-server", rs.Addr()}, {"miniredis", mr.Addr()}} {
			rdb := demoClient(t, b.addr, protocol)
			got := writerTranscript(t, rdb)
			if want == nil {
				want = got
				continue
			}
			if d := diffLines(want, got); d != "" {
				t.Errorf("%s over RESP%d differs from redis-server over RESP3:\n%s", b.name, protocol, d)
			}
		}
	}
	if len(want) < 150 {
		t.Fatalf("the transcript has only %d lines: the exercise did not run", len(want))
	}
}

// writerTranscript runs the writer's operations on an empty rdb and records
// every result, without key names or anything that depends on timing.
func writerTranscript(t *testing.T, rdb redis.UniversalClient) []string {
	t.Helper()
	ctx := context.Background()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var out []string
	rec := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	k := keys.MustParse("secret-demo-miniredis-compat-0001")
	plain, withTTL := writer.New(rdb, 0), writer.New(rdb, time.Hour)
	var all []keys.Target
	for _, l := range []keys.Layout{
		{Prefix: "a:", Formats: []keys.Format{keys.SFP, keys.NodeRedis}, Schemas: []keys.Schema{keys.Hashed, keys.Prefix}},
		{Prefix: "b:", Formats: []keys.Format{keys.String}, Schemas: []keys.Schema{keys.Hashed, keys.Prefix}},
	} {
		for _, v := range []keys.Version{keys.V1, keys.V2} {
			all = append(all, l.Targets(k, v)...)
		}
	}
	name := func(tg keys.Target) string {
		return string(tg.Version) + "/" + string(tg.Format) + "/" + string(tg.Schema)
	}
	body := func(v keys.Version, lcut int64) []byte {
		if v == keys.V2 {
			return fakecdn.V2Body(k, fakecdn.Project{Lcut: lcut, Value: int(lcut)})
		}
		return fakecdn.V1Body(k, fakecdn.Project{Lcut: lcut, Value: int(lcut)})
	}
	inspect := func(step string) {
		st, err := plain.Inspect(ctx, all)
		rec("%s: inspect err=%v", step, err)
		for i, s := range st {
			rec("%s: inspect %s lcut=%d err=%v unreachable=%v", step, name(all[i]), s.Lcut, s.Err, s.Unreachable)
		}
	}
	read := func(step string, lcut int64) {
		es, err := plain.ReadMany(ctx, all)
		rec("%s: read err=%v", step, err)
		for i, e := range es {
			rec("%s: read %s payload=%v lcut=%d size>0=%v ttl>0=%v ttl<0=%v sibling=%v err=%v", step, name(all[i]),
				bytes.Equal(e.Payload, body(all[i].Version, lcut)), e.Lcut, e.Size > 0, e.TTL > 0, e.TTL < 0, e.Sibling, e.Err)
		}
	}

	inspect("empty")
	read("empty", 0)
	for _, tg := range all {
		for _, w := range []struct {
			w    *writer.Writer
			lcut int64
		}{{plain, 1000}, {plain, 1000}, {plain, 900}, {withTTL, 2000}} {
			res, err := w.w.Write(ctx, tg, &writer.Payload{Body: body(tg.Version, w.lcut), Lcut: w.lcut})
			rec("write %s lcut=%d: written=%v stored=%d warning=%q err=%v", name(tg), w.lcut, res.Written, res.Stored, res.Warning, err)
		}
	}
	inspect("written")
	read("written", 2000)

	for _, tg := range all {
		if sib := tg.BRSibling(); sib != "" {
			rdb.Set(ctx, sib, "not protobuf", 0)
		}
	}
	read("siblings", 2000)
	rec("delete siblings: err=%v", plain.DeleteSiblings(ctx, all))
	read("siblings deleted", 2000)
	rec("touch without TTL: err=%v", plain.Touch(ctx, all))
	read("persisted", 2000)
	rec("touch with TTL: err=%v", withTTL.Touch(ctx, all))
	read("expiring", 2000)
	rec("delete: err=%v", plain.Delete(ctx, all))
	inspect("deleted")

	// Keys of another type are never overwritten, and are reported
	// without their names.
	for _, tg := range all {
		if tg.Format == keys.String {
			rdb.HSet(ctx, tg.Key, "f", "v")
		} else {
			rdb.Set(ctx, tg.Key, "someone else's", 0)
		}
	}
	for _, tg := range all {
		res, err := plain.Write(ctx, tg, &writer.Payload{Body: body(tg.Version, 3000), Lcut: 3000})
		rec("wrong type: write %s: written=%v err=%v", name(tg), res.Written, err)
	}
	inspect("wrong types")
	read("wrong types", 3000)
	rdb.FlushAll(ctx)
	// The string format's lcut companion of another type.
	for _, tg := range all {
		if tg.Format == keys.String {
			rdb.HSet(ctx, tg.LcutRef, "f", "v")
			res, err := plain.Write(ctx, tg, &writer.Payload{Body: body(tg.Version, 3000), Lcut: 3000})
			rec("wrong type lcut: write %s: written=%v err=%v", name(tg), res.Written, err)
		}
	}
	inspect("wrong lcut types")
	read("wrong lcut types", 3000)
	rdb.FlushAll(ctx)

	out = append(out, idListTranscript(t, rdb, k)...)
	return out
}

// idListTranscript runs the ID-list scripts (STRLEN, APPEND, RENAME,
// GETRANGE, PEXPIRE, PERSIST, SET PX inside EVALSHA) and the manifest ones
// (HSET, HMGET) and records what each did.
func idListTranscript(t *testing.T, rdb redis.UniversalClient, k keys.SDKKey) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	rec := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	plain, withTTL := writer.New(rdb, 0), writer.New(rdb, time.Hour)
	for _, s := range []keys.Schema{keys.Hashed, keys.Prefix} {
		tg := keys.NewIDListTarget("i:", k, s, "beta_testers")
		mt := keys.NewManifestTarget("i:", k, s)
		step := func(what string, res writer.IDListWrite, err error) {
			rec("%s %s: %+v err=%v", s, what, res, err)
		}
		state := func(what string) {
			st, err := plain.ReadIDLists(ctx, []keys.IDListTarget{tg})
			if err != nil {
				rec("%s %s: read err=%v", s, what, err)
				return
			}
			content, _ := rdb.Get(ctx, tg.Key).Result()
			ttl := rdb.PTTL(ctx, tg.Key).Val()
			rec("%s %s: state %+v content=%q ttl>0=%v", s, what, st[0], content, ttl > 0)
		}
		state("empty")
		res, err := plain.AppendIDList(ctx, tg, "F1", 5, []byte("+aaaaaaaa\n"))
		step("append past an absent list", res, err)
		res, err = plain.AppendIDList(ctx, tg, "F1", 0, []byte("+aaaaaaaa\n"))
		step("append first", res, err)
		res, err = plain.AppendIDList(ctx, tg, "F1", 0, []byte("+aaaaaaaa\n"))
		step("append again", res, err)
		res, err = withTTL.AppendIDList(ctx, tg, "F1", 10, []byte("+bbbbbbbb\n"))
		step("append next with a TTL", res, err)
		res, err = plain.AppendIDList(ctx, tg, "F0", 20, []byte("-aaaaaaaa\n"))
		step("append another fileID", res, err)
		state("appended")
		res, err = plain.AppendIDList(ctx, tg, "F1", 20, []byte("-aaaaaaaa\n"))
		step("append without TTL", res, err)
		state("persisted")
		res, err = plain.StageIDList(ctx, tg, "tok1", 0, []byte("+cccccccc\n"))
		step("stage first", res, err)
		res, err = plain.StageIDList(ctx, tg, "tok1", 10, []byte("+dddddddd\n"))
		step("stage next", res, err)
		res, err = plain.StageIDList(ctx, tg, "tok2", 10, []byte("+eeeeeeee\n"))
		step("stage by another writer", res, err)
		state("staged")
		res, err = plain.CommitIDList(ctx, tg, "tok1", "F2", 30)
		step("commit a wrong length", res, err)
		res, err = plain.CommitIDList(ctx, tg, "tok2", "F2", 20)
		step("commit another's stage", res, err)
		res, err = withTTL.CommitIDList(ctx, tg, "tok1", "F2", 20)
		step("commit", res, err)
		state("committed")
		res, err = plain.AbortIDList(ctx, tg, "")
		step("abort nothing", res, err)
		res, err = plain.StageIDList(ctx, tg, "tok3", 0, []byte("+ffffffff\n"))
		step("stage again", res, err)
		res, err = plain.AbortIDList(ctx, tg, "tok4")
		step("abort another's", res, err)
		res, err = plain.AbortIDList(ctx, tg, "tok3")
		step("abort", res, err)
		state("aborted")

		for _, m := range []struct {
			w      *writer.Writer
			marker int64
		}{{plain, 5}, {plain, 5}, {plain, 4}, {withTTL, 6}, {plain, 7}} {
			mw, err := m.w.WriteIDListManifest(ctx, mt, []byte(fmt.Sprintf(`{"beta_testers":{"marker":%d}}`, m.marker)), m.marker)
			rec("%s manifest %d: %+v err=%v", s, m.marker, mw, err)
		}
		config, marker, err := plain.ReadIDListManifest(ctx, mt)
		rec("%s manifest read: %s %d err=%v ttl<0=%v", s, config, marker, err, rdb.PTTL(ctx, mt.Key).Val() < 0)

		// Keys of other types: answered, never overwritten or named.
		rdb.Set(ctx, mt.Key, "x", 0)
		mw, err := plain.WriteIDListManifest(ctx, mt, []byte(`{}`), 9)
		rec("%s manifest over a string: %+v err=%v", s, mw, err)
		_, _, err = plain.ReadIDListManifest(ctx, mt)
		rec("%s manifest read of a string: err=%v", s, err)
		rdb.Del(ctx, tg.Key)
		rdb.HSet(ctx, tg.Key, "f", "v")
		res, err = plain.AppendIDList(ctx, tg, "F3", 0, []byte("+gggggggg\n"))
		step("append over a hash", res, err)
		state("list is a hash")
		rdb.HSet(ctx, tg.StagingKey, "f", "v")
		res, err = plain.StageIDList(ctx, tg, "tok5", 0, []byte("+gggggggg\n"))
		step("stage over a hash", res, err)
		res, err = plain.CommitIDList(ctx, tg, "tok5", "F3", 10)
		step("commit from a hash", res, err)
		rdb.Del(ctx, tg.Key, tg.FileIDKey, tg.StagingKey)
		rdb.SAdd(ctx, tg.FileIDKey, "x")
		res, err = plain.AppendIDList(ctx, tg, "F3", 0, []byte("+gggggggg\n"))
		step("append with a set as fileID", res, err)
		state("fileid is a set")
		rec("%s delete list: err=%v", s, plain.DeleteIDList(ctx, tg))
		rec("%s delete manifest: err=%v", s, plain.DeleteIDListManifest(ctx, mt))
		n, _ := rdb.Exists(ctx, tg.Key, tg.FileIDKey, tg.StagingKey, tg.StagingTokenKey, mt.Key).Result()
		rec("%s left after delete: %d", s, n)
	}
	return out
}

// TestDemoMiniredisLeaderLease runs pkg/leader's lease scripts on miniredis
// (and on redis-server, for comparison): one of two electors leads, the other
// sees it as the holder, and takes over once the first releases the lease on
// its way out.
func TestDemoMiniredisLeaderLease(t *testing.T) {
	rs := redistest.Start(t)
	mr := miniredis.RunT(t)
	mr.ClockTTL(true)
	for _, b := range []struct{ name, addr string }{{"redis-server", rs.Addr()}, {"miniredis", mr.Addr()}} {
		t.Run(b.name, func(t *testing.T) {
			rdb := demoClient(t, b.addr, 3)
			const key = "demo:statsig-populator:leader"
			lease := 900 * time.Millisecond
			e1, e2 := leader.New(rdb, key, lease, zerolog.Nop()), leader.New(rdb, key, lease, zerolog.Nop())
			ctx1, stop1 := context.WithCancel(context.Background())
			done1 := make(chan struct{})
			go func() { e1.Run(ctx1); close(done1) }()
			waitUntil(t, 3*time.Second, "the first elector to lead", e1.Leading)
			ctx2, stop2 := context.WithCancel(context.Background())
			done2 := make(chan struct{})
			go func() { e2.Run(ctx2); close(done2) }()
			defer func() { stop2(); <-done2 }()
			time.Sleep(lease / 2)
			if e2.Leading() {
				t.Fatalf("both electors lead")
			}
			if h := e2.State().Holder; h != e1.ID() {
				t.Errorf("the second elector sees %q holding the lease, want %q", h, e1.ID())
			}
			if ttl := rdb.PTTL(context.Background(), key).Val(); ttl <= 0 || ttl > lease {
				t.Errorf("the lease's TTL is %v, want within (0, %v]", ttl, lease)
			}
			// Renewals keep it past one lease.
			time.Sleep(lease)
			if !e1.Leading() || e2.Leading() {
				t.Fatalf("after a lease: first leads %v, second leads %v", e1.Leading(), e2.Leading())
			}
			stop1()
			<-done1
			if e1.Leading() {
				t.Errorf("the first elector still leads after it stopped")
			}
			// Released, not expired: the second takes over at its next step
			// (a third of the lease), well before the lease would run out.
			start := time.Now()
			waitUntil(t, 3*time.Second, "the second elector to take over", e2.Leading)
			t.Logf("take-over after release: %v (lease %v)", time.Since(start).Round(time.Millisecond), lease)
		})
	}
}

// ---- the demo itself ----

// syncBuffer collects a writer's output for a test to read while it grows.
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

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("waited %v for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// takenPort listens on a free loopback port until the test ends: an address
// the demo must not get.
func takenPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

var bannerRedis = regexp.MustCompile(`(?m)^  Redis   redis://(\S+)$`)

// inProcessDemo runs `populator demo args…` in this process until the test
// ends, and returns its stdout, stderr and a function that stops it and
// returns its exit code.
func inProcessDemo(t *testing.T, args ...string) (stdout, stderr *syncBuffer, stop func() int) {
	t.Helper()
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"demo"}, args...), stdout, stderr) }()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				code = exitCode(err, stderr)
			case <-time.After(15 * time.Second):
				t.Errorf("demo did not stop within 15s of its context's end")
			}
		})
		return code
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("demo stdout:\n%s\ndemo stderr:\n%s", stdout, lastLines(stderr.String(), 40))
		}
	})
	return stdout, stderr, stop
}

// waitBanner waits for the ready banner and returns the Redis address it
// names.
func waitBanner(t *testing.T, stdout *syncBuffer, limit time.Duration) (string, time.Duration) {
	t.Helper()
	took := waitUntil(t, limit, "the ready banner", func() bool {
		s := stdout.String()
		return strings.Contains(s, BannerReady) && strings.Contains(s, "Ctrl-C stops the demo.")
	})
	m := bannerRedis.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("the banner names no Redis address:\n%s", stdout)
	}
	return m[1], took
}

// oddGate is whether the odd_value_gate of a v1 payload passes.
func oddGate(t *testing.T, payload string) bool {
	t.Helper()
	var p struct {
		Gates []struct {
			Name  string `json:"name"`
			Rules []struct {
				Pass int `json:"passPercentage"`
			} `json:"rules"`
		} `json:"feature_gates"`
	}
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		t.Fatalf("the v1 payload is not JSON: %v", err)
	}
	for _, g := range p.Gates {
		if g.Name == demo.FlipGate && len(g.Rules) == 1 {
			return g.Rules[0].Pass == 100
		}
	}
	t.Fatalf("the v1 payload has no %s", demo.FlipGate)
	return false
}

// checkEntries asserts that Redis holds a valid payload for every key,
// version and schema, and returns the v1 hashed payload of each key.
func checkEntries(t *testing.T, rdb *redis.Client, ks []keys.SDKKey) map[keys.SDKKey]string {
	t.Helper()
	ctx := context.Background()
	v1 := map[keys.SDKKey]string{}
	for _, k := range ks {
		for _, v := range []keys.Version{keys.V1, keys.V2} {
			for _, tg := range keys.Targets("", k, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
				vals, err := rdb.HMGet(ctx, tg.Key, "config", "lcut", "encoding").Result()
				if err != nil {
					t.Fatalf("%s %s %s: %v", k.Redacted(), v, tg.Schema, err)
				}
				config, _ := vals[0].(string)
				meta, err := fetcher.Validate([]byte(config), v, k.HashedSDKKeyUsed())
				if err != nil {
					t.Fatalf("%s %s %s: the entry does not validate: %v", k.Redacted(), v, tg.Schema, err)
				}
				if vals[1] != fmt.Sprint(meta.Time) || vals[2] != "plain_text" {
					t.Errorf("%s %s %s: lcut %v, encoding %v; want %d, plain_text", k.Redacted(), v, tg.Schema, vals[1], vals[2], meta.Time)
				}
				if v == keys.V1 && tg.Schema == keys.Hashed {
					v1[k] = config
				}
			}
		}
	}
	return v1
}

// TestDemoInProcess runs the demo with the Redis address it asks for taken:
// it must pick a free port, say so, write valid entries for the three sample
// keys and their ID lists, write the change that flips the gate, restore the
// environment, and exit 0 when its context ends.
func TestDemoInProcess(t *testing.T) {
	t.Setenv("STATSIG_SERVER_SDK_KEYS", "")
	t.Setenv("STATSIG_SERVER_SDK_KEYS_FILE", "")
	t.Setenv("POLL_INTERVAL", "300ms") // the user's choice stands; it makes the test quick
	t.Setenv("ID_LISTS_POLL_INTERVAL", "300ms")
	t.Setenv("REDIS_URL", "redis://127.0.0.1:1/0") // the user's Redis: demo must ignore it
	adminBefore, adminWasSet := os.LookupEnv("ADMIN_ADDR")
	taken := takenPort(t)
	stdout, stderr, stop := inProcessDemo(t, "--redis-addr", taken, "--admin-addr", "127.0.0.1:0", "--flip-every", "1500ms")
	addr, took := waitBanner(t, stdout, 20*time.Second)
	t.Logf("ready banner after %v", took.Round(time.Millisecond))
	if addr == taken {
		t.Fatalf("demo claims the taken address %s", taken)
	}
	banner := stdout.String()
	for _, want := range []string{taken + " is taken, so a free port was chosen", "IN MEMORY ONLY", "/status", "/metrics", "/healthz",
		"redis-cli -p ", "HGETALL 'statsig|/v1/download_config_specs|plain_text|", "statsig.initialize(", "localMode: true"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q", want)
		}
	}
	if !strings.Contains(stderr.String(), "ignoring REDIS_URL") {
		t.Errorf("demo did not say it ignores the user's REDIS_URL")
	}

	projects, err := demo.Projects()
	if err != nil {
		t.Fatal(err)
	}
	if len(projects) != 3 {
		t.Fatalf("%d sample projects, want 3", len(projects))
	}
	var changing keys.SDKKey
	for _, p := range projects {
		if !strings.Contains(banner, p.Key.Reveal()) {
			t.Errorf("the banner does not show the sample key %s", p.Key.Reveal())
		}
		if p.Changes {
			changing = p.Key
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	first := checkEntries(t, rdb, demo.Keys(projects))

	// The ID lists, once the worker keeps them.
	ctx := context.Background()
	for _, p := range projects {
		for _, l := range p.IDLists {
			tg := keys.NewIDListTarget("", p.Key, keys.Hashed, l.Name)
			waitUntil(t, 10*time.Second, "ID list "+l.Name, func() bool { return rdb.Get(ctx, tg.Key).Val() == string(l.Content) })
		}
	}

	// The change: the gate flips in Redis.
	was := oddGate(t, first[changing])
	flipTook := waitUntil(t, 10*time.Second, "the flipped gate in Redis", func() bool {
		return oddGate(t, checkEntries(t, rdb, []keys.SDKKey{changing})[changing]) != was
	})
	t.Logf("flip reached Redis %v after the banner (flip every 1.5s, poll every 300ms)", flipTook.Round(time.Millisecond))
	if !strings.Contains(stdout.String(), "demo: the CDN now serves a change to checkout") {
		t.Errorf("demo did not announce the change")
	}
	if !strings.Contains(stderr.String(), "payload written") {
		t.Errorf("the worker's log does not show the write")
	}

	if code := stop(); code != 0 {
		t.Fatalf("exit code %d after the context ended, want 0", code)
	}
	if v := os.Getenv("REDIS_URL"); v != "redis://127.0.0.1:1/0" {
		t.Errorf("REDIS_URL after demo is %q: the environment was not restored", v)
	}
	if v, ok := os.LookupEnv("ADMIN_ADDR"); v != adminBefore || ok != adminWasSet {
		t.Errorf("ADMIN_ADDR after demo is %q (set %v), before %q (set %v)", v, ok, adminBefore, adminWasSet)
	}
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Errorf("the embedded Redis still answers after demo stopped")
	}
}

// TestDemoUserKeys: with STATSIG_SERVER_SDK_KEYS set, demo fetches those keys
// from STATSIG_API_URL (here a fake CDN standing in for Statsig's) into its
// embedded Redis, starts no CDN of its own, and never prints the secret.
func TestDemoUserKeys(t *testing.T) {
	cdn := fakecdn.New()
	k := keys.MustParse("secret-userKeyForTheDemo0123456789")
	cdn.SetProject(k, fakecdn.Project{Lcut: time.Now().Add(-time.Hour).UnixMilli(), Value: 3})
	srv := httptest.NewServer(cdn)
	t.Cleanup(srv.Close)
	t.Setenv("STATSIG_SERVER_SDK_KEYS", k.Reveal())
	t.Setenv("STATSIG_SERVER_SDK_KEYS_FILE", "")
	t.Setenv("STATSIG_API_URL", srv.URL)
	t.Setenv("POLL_INTERVAL", "300ms")
	stdout, stderr, stop := inProcessDemo(t, "--redis-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	addr, _ := waitBanner(t, stdout, 20*time.Second)
	banner := stdout.String()
	if strings.Contains(banner+stderr.String(), k.Reveal()) || strings.Contains(banner, keys.Prefix.ID(k)) {
		t.Errorf("demo printed the user's secret key (or its prefix-schema name)")
	}
	for _, want := range []string{k.Redacted(), "process.env.STATSIG_SERVER_SECRET", "the one STATSIG_API_URL names"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q", want)
		}
	}
	if strings.Contains(banner, "Sample SDK keys") || strings.Contains(banner, "localMode") {
		t.Errorf("the banner speaks of sample keys while the user's are in use")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	checkEntries(t, rdb, []keys.SDKKey{k})
	if len(cdn.RequestsFor(k, keys.V1)) == 0 {
		t.Errorf("the user's CDN saw no request")
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

func TestDemoUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"demo", "--help"}, &stdout, &stderr); err != nil {
		t.Fatalf("demo --help: %v", err)
	}
	for _, want := range []string{"--redis-addr", "--admin-addr", "in memory", "STATSIG_SERVER_SDK_KEYS", "Ctrl-C"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("demo --help lacks %q", want)
		}
	}
	if strings.Contains(stdout.String(), "flip-every") {
		t.Errorf("demo --help shows the hidden --flip-every")
	}
	for _, args := range [][]string{{"demo", "extra"}, {"demo", "--nope"}, {"demo", "--redis-addr", "no-port"},
		{"demo", "--flip-every", "-1s"}, {"demo", "--flip-every", "1ns"}, {"demo", "--flip-every", "8760h"},
		{"demo", "--flip-every", "soon"}, {"demo", "--flip-every", "9999999999999999999h"},
		{"demo", "--redis-addr", "127.0.0.1:99999"}, {"demo", "--redis-addr", ":-1"},
		{"demo", "--admin-addr", "nonsense"}, {"demo", "--admin-addr", "127.0.0.1:99999"}} {
		stderr.Reset()
		if code := exitCode(run(context.Background(), args, io.Discard, &stderr), &stderr); code != exitBadConfig {
			t.Errorf("%q: exit %d, want %d", args, code, exitBadConfig)
		}
	}
	stdout.Reset()
	_ = run(context.Background(), []string{"help"}, &stdout, io.Discard)
	if !strings.Contains(stdout.String(), "\n  demo ") {
		t.Errorf("populator help does not list demo")
	}
}

// TestDemoBinaryCtrlC runs the built binary as a user does and presses
// Ctrl-C (SIGINT): exit 0.
func TestDemoBinaryCtrlC(t *testing.T) {
	cmd := exec.Command(e2e.Binary, "demo", "--redis-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	cmd.Env = e2e.Env("POLL_INTERVAL=300ms")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var out syncBuffer
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Write([]byte(sc.Text() + "\n"))
			if strings.HasPrefix(sc.Text(), "Ctrl-C stops the demo") {
				lines <- sc.Text()
			}
		}
	}()
	select {
	case <-lines:
	case <-time.After(30 * time.Second):
		t.Fatalf("no banner within 30s:\n%s\n%s", out.String(), lastLines(stderr.String(), 30))
	}
	start := time.Now()
	_ = cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) || err != nil {
		t.Fatalf("after Ctrl-C: %v\n%s", err, lastLines(stderr.String(), 30))
	}
	t.Logf("exit 0 %v after SIGINT", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out.String(), "demo stopped") {
		t.Errorf("no goodbye line:\n%s", out.String())
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// diffLines lists the lines where two transcripts differ.
func diffLines(want, got []string) string {
	var b strings.Builder
	for i := 0; i < max(len(want), len(got)); i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			fmt.Fprintf(&b, "  line %d\n    want %s\n    got  %s\n", i+1, w, g)
		}
	}
	if slices.Equal(want, got) {
		return ""
	}
	return b.String()
}
