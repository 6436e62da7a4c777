package compat

// The real Node SDKs (statsig-node 6.5.2 and @statsig/statsig-node-core 0.23.2,
// pinned in package.json) reading what the real worker wrote to a real Redis.

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// nodeScenario is what every Node test proves, in order:
//  1. an SDK started on the worker's Redis initializes from its adapter (the
//     SDK's own init/source reporting says so) and evaluates the pass gate,
//     the fail gate, the odd gate and the dynamic config as the CDN defines them;
//  2. after a change at the fake CDN reaches Redis, an SDK started then sees it;
//  3. the SDK started before the change sees it too, by polling its adapter;
//  4. neither SDK asked its adapter for any key but the expected one, nor
//     touched the network (tripwire, SDK request hook, socket guard), and the
//     fake CDN saw only the worker.
type nodeScenario struct {
	script      string   // node/legacy.mjs or node/core.mjs
	env         []string // the script's environment
	envB        []string // added to env for SDK B only
	wantKey     string   // the data-store key the SDK must ask for
	pollPath    string   // what the SDK must ask supportsPollingUpdatesFor / supportPollingUpdatesFor
	pollTimeout time.Duration
	// waitStored waits until Redis holds the payload of time lcut.
	waitStored func(t *testing.T, lcut int64)
	// checkInit asserts the SDK's own report that it initialized from the adapter.
	checkInit func(t *testing.T, who string, m message)
	// checkReport asserts SDK-specific parts of the final report.
	checkReport func(t *testing.T, who string, m message, lcuts []int64)
	// allowRequest says which HTTP requests an SDK may try (they are blocked
	// all the same); nil allows none.
	allowRequest func(who, url string) bool
}

func (sc nodeScenario) run(t *testing.T, s *stack, key keys.SDKKey) {
	p1 := s.cdn.Project(key)
	sc.waitStored(t, p1.Lcut)

	a, initA := startNode(t, "SDK A", sc.script, sc.env)
	sc.checkInit(t, "SDK A", initA)
	assertProject(t, "SDK A at start", initA.Eval, p1)

	p2 := s.change(key)
	sc.waitStored(t, p2.Lcut)

	b, initB := startNode(t, "SDK B (started after the change)", sc.script, append(append([]string(nil), sc.env...), sc.envB...))
	sc.checkInit(t, "SDK B", initB)
	assertProject(t, "SDK B at start", initB.Eval, p2)

	w := a.waitValue(p2.Value, sc.pollTimeout)
	assertProject(t, "SDK A after polling its adapter", w.Eval, p2)
	t.Logf("SDK A saw the change %d ms after it reached Redis", w.WaitedMs)

	for _, c := range []struct {
		who   string
		sdk   *nodeSDK
		lcuts []int64
	}{{"SDK A", a, []int64{p1.Lcut, p2.Lcut}}, {"SDK B", b, []int64{p2.Lcut}}} {
		r := c.sdk.quit()
		assertOnlyKeys(t, c.who, r.Calls.Get, sc.wantKey)
		if !slices.Contains(r.Calls.Polling, sc.pollPath) {
			t.Errorf("%s: the SDK never asked whether to poll %q (asked: %q)", c.who, sc.pollPath, r.Calls.Polling)
		}
		if len(r.Calls.Set) > 0 {
			t.Logf("%s called the adapter's no-op set for %q", c.who, r.Calls.Set)
		}
		if len(r.Connections) > 0 {
			t.Errorf("%s opened connections to something other than Redis: %q", c.who, r.Connections)
		}
		for _, u := range r.Requests {
			if sc.allowRequest == nil || !sc.allowRequest(c.who, u) {
				t.Errorf("%s tried an HTTP request: %q", c.who, u)
			} else {
				t.Logf("%s tried (and was refused) %q", c.who, u)
			}
		}
		if sc.checkReport != nil {
			sc.checkReport(t, c.who, r, c.lcuts)
		}
	}
	s.trip.assertUntouched(t)
	s.assertOnlyWorkerAtCDN(t)
}

// ---- statsig-node 6.5.2 (legacy, v1) ----

func legacyScenario(s *stack, key keys.SDKKey, wantKey string, waitStored func(*testing.T, int64), env ...string) nodeScenario {
	return nodeScenario{
		script:      "legacy.mjs",
		env:         s.nodeEnv(key, append([]string{"GATE_PASS=" + fakecdn.GatePass, "GATE_FAIL=" + fakecdn.GateFail}, env...)...),
		wantKey:     wantKey,
		pollPath:    "/v1/download_config_specs",
		pollTimeout: 20 * time.Second, // statsig-node polls every 5 s at the fastest
		waitStored:  waitStored,
		// SDK B runs in localMode: no HTTP request at all.
		envB: []string{"LOCAL_MODE=1"},
		// statsig-node 6.5.2 queues a statsig::diagnostics event even with
		// disableAllLogging and tries to post it to {api}/log_event on shutdown.
		// networkOverrideFunc refuses it; localMode (SDK B) never tries.
		allowRequest: func(who, url string) bool {
			return who == "SDK A" && url == s.trip.URL+"/log_event"
		},
		checkInit: func(t *testing.T, who string, m message) {
			t.Helper()
			if !m.Success || deref(m.Source) != "DataAdapter" {
				t.Errorf("%s: initialize() = {success: %v, source: %s, error: %s}, want success from DataAdapter",
					who, m.Success, deref(m.Source), deref(m.Error))
			}
			if deref(m.Eval.Reason) != "DataAdapter" {
				t.Errorf("%s: evaluation reason = %s, want DataAdapter", who, deref(m.Eval.Reason))
			}
		},
	}
}

// statsig-node over the sfp layout: HASH statsig|/v1/download_config_specs|plain_text|<hashed>, field config.
func TestStatsigNodeSFP(t *testing.T) {
	t.Parallel()
	key := keys.MustParse("secret-compatNode0001abcdefghij")
	s := newStack(t)
	s.cdn.SetProject(key, fakecdn.Project{Lcut: baseLcut, Value: 1})
	s.startWorker(t, key, "REDIS_FORMATS=sfp", "REDIS_KEY_SCHEMAS=hashed", "STATSIG_DCS_VERSIONS=v1")
	dcsKey := keys.DCSKey("", keys.V1, keys.PlainText, keys.Hashed.ID(key))
	legacyScenario(s, key, dcsKey, func(t *testing.T, lcut int64) { s.waitSFP(t, dcsKey, lcut) },
		"LAYOUT=sfp").run(t, s, key)
}

// statsig-node over the node-redis layout (what the statsig-node-redis package
// reads): HASH <prefix>statsig-redis, field = the SDK's key, value base64(zlib).
// A key prefix is set to check that it goes on the HASH name, not the field.
func TestStatsigNodeNodeRedisLayout(t *testing.T) {
	t.Parallel()
	key := keys.MustParse("secret-compatNodeRedis02abcdefgh")
	s := newStack(t)
	s.cdn.SetProject(key, fakecdn.Project{Lcut: baseLcut + 7000, Value: 3})
	const prefix = "compat:"
	s.startWorker(t, key, "REDIS_FORMATS=node-redis", "REDIS_KEY_PREFIX="+prefix, "REDIS_KEY_SCHEMAS=hashed,prefix",
		"STATSIG_DCS_VERSIONS=v1")
	hash := prefix + "statsig-redis"
	field := keys.DCSKey("", keys.V1, keys.PlainText, keys.Hashed.ID(key))
	legacyScenario(s, key, field, func(t *testing.T, lcut int64) {
		s.waitNodeRedis(t, hash, field, lcut)
		// the prefix schema's field is there too, under the same HASH
		s.waitNodeRedis(t, hash, keys.DCSKey("", keys.V1, keys.PlainText, keys.Prefix.ID(key)), lcut)
	}, "LAYOUT=node-redis", "NODE_REDIS_HASH="+hash).run(t, s, key)
}

// ---- @statsig/statsig-node-core 0.23.2 (server-core, v2) ----

func coreScenario(s *stack, key keys.SDKKey, wantKey string, waitStored func(*testing.T, int64), env ...string) nodeScenario {
	return nodeScenario{
		script:      "core.mjs",
		env:         s.nodeEnv(key, append([]string{"GATE_PASS=" + fakecdn.GatePassV2, "GATE_FAIL=" + fakecdn.GateFailV2}, env...)...),
		wantKey:     wantKey,
		pollPath:    "/v2/download_config_specs",
		pollTimeout: 15 * time.Second, // specsSyncIntervalMs is 1000
		waitStored:  waitStored,
		checkInit: func(t *testing.T, who string, m message) {
			t.Helper()
			if !m.Success {
				t.Errorf("%s: initialize() failed: %s", who, deref(m.Error))
			}
			if r := deref(m.Eval.Reason); r != "Adapter(DataStore):Recognized" {
				t.Errorf("%s: evaluation reason = %s, want Adapter(DataStore):Recognized", who, r)
			}
		},
		checkReport: func(t *testing.T, who string, m message, lcuts []int64) {
			t.Helper()
			// core's specs_updated events: every update came from the data store,
			// and each lcut the SDK should have seen arrived that way.
			var seen []int64
			for _, u := range m.Updates {
				var src map[string]string
				_ = json.Unmarshal(u.Source, &src)
				if src["Adapter"] != "DataStore" || deref(u.SourceAPI) != "datastore" {
					t.Errorf("%s: specs_updated from source %s (api %s), want Adapter DataStore (datastore)", who, u.Source, deref(u.SourceAPI))
				}
				if u.Time != nil {
					seen = append(seen, *u.Time)
				}
			}
			if !slices.Equal(seen, lcuts) {
				t.Errorf("%s: specs_updated times %v, want %v", who, seen, lcuts)
			}
		},
	}
}

// server-core with dataStoreKeySchemaVersion 'v2': the hashed key. SDK B leaves
// the option out, to check that 'v2' is the default.
func TestCoreSFPHashedV2(t *testing.T) {
	t.Parallel()
	key := keys.MustParse("secret-compatCore0003abcdefghij")
	s := newStack(t)
	s.cdn.SetProject(key, fakecdn.Project{Lcut: baseLcut + 3000, Value: 5})
	s.startWorker(t, key, "REDIS_FORMATS=sfp", "REDIS_KEY_SCHEMAS=hashed", "STATSIG_DCS_VERSIONS=v2")
	dcsKey := keys.DCSKey("", keys.V2, keys.PlainText, keys.Hashed.ID(key))
	sc := coreScenario(s, key, dcsKey, func(t *testing.T, lcut int64) { s.waitSFP(t, dcsKey, lcut) }, "KEY_SCHEMA=v2")
	sc.envB = []string{"KEY_SCHEMA=default"}
	sc.run(t, s, key)
}

// server-core with dataStoreKeySchemaVersion 'v3': the 20-character prefix key,
// under a REDIS_KEY_PREFIX.
func TestCoreSFPPrefixV3(t *testing.T) {
	t.Parallel()
	key := keys.MustParse("secret-compatCore0004abcdefghij")
	s := newStack(t)
	s.cdn.SetProject(key, fakecdn.Project{Lcut: baseLcut + 4000, Value: 7})
	const prefix = "tenant-a:"
	s.startWorker(t, key, "REDIS_FORMATS=sfp", "REDIS_KEY_SCHEMAS=prefix", "STATSIG_DCS_VERSIONS=v2", "REDIS_KEY_PREFIX="+prefix)
	dataStoreKey := keys.DCSKey("", keys.V2, keys.PlainText, keys.Prefix.ID(key))
	if !strings.HasSuffix(dataStoreKey, "|secret-compatCore000") {
		t.Fatalf("unexpected prefix-schema key %q", dataStoreKey)
	}
	coreScenario(s, key, dataStoreKey, func(t *testing.T, lcut int64) { s.waitSFP(t, prefix+dataStoreKey, lcut) },
		"KEY_SCHEMA=v3", "KEY_PREFIX="+prefix).run(t, s, key)
}

// Negative control: the same SDK pointed at a key schema the worker did not
// write must not report an adapter initialization. This keeps the positive
// tests honest (they can fail), and shows that the tripwire catches core's own
// traffic (its error report goes through the configured proxy).
func TestCoreWrongSchemaIsNotServed(t *testing.T) {
	t.Parallel()
	key := keys.MustParse("secret-compatCore0005abcdefghij")
	s := newStack(t)
	s.cdn.SetProject(key, fakecdn.Project{Lcut: baseLcut + 5000, Value: 9})
	s.startWorker(t, key, "REDIS_FORMATS=sfp", "REDIS_KEY_SCHEMAS=hashed", "STATSIG_DCS_VERSIONS=v2")
	s.waitSFP(t, keys.DCSKey("", keys.V2, keys.PlainText, keys.Hashed.ID(key)), baseLcut+5000)

	sdk, m := startNode(t, "core with the v3 schema", "core.mjs", s.nodeEnv(key,
		"GATE_PASS="+fakecdn.GatePassV2, "GATE_FAIL="+fakecdn.GateFailV2, "KEY_SCHEMA=v3"))
	if strings.HasPrefix(deref(m.Eval.Reason), "Adapter(DataStore)") || m.Eval.GatePass || m.Eval.ConfigValue != nil {
		t.Errorf("core initialized from a key the worker never wrote: %s", m.Raw)
	}
	r := sdk.quit()
	assertOnlyKeys(t, "core with the v3 schema", r.Calls.Get, keys.DCSKey("", keys.V2, keys.PlainText, keys.Prefix.ID(key)))
	t.Logf("init: success=%v error=%s reason=%s; tripwire saw %q", m.Success, deref(m.Error), deref(m.Eval.Reason), s.trip.Seen())
	if len(s.trip.Seen()) == 0 {
		t.Errorf("the tripwire saw nothing: core's error traffic is not being caught")
	}
}
