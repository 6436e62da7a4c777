package compat

// The real legacy Go SDK (github.com/statsig-io/go-sdk v1.35.1, pinned in
// go.mod), in-process, reading what the real worker wrote to a real Redis
// through adapters/statsigredis.

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	statsig "github.com/statsig-io/go-sdk"

	"github.com/statsig-populator/statsig-populator/compat/adapters/statsigredis"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// recordingAdapter records what go-sdk asks of the adapter under test.
type recordingAdapter struct {
	inner statsig.IDataAdapter
	mu    sync.Mutex
	gets  []string
	sets  []string
	polls []string
}

func (r *recordingAdapter) Get(key string) string {
	r.mu.Lock()
	r.gets = append(r.gets, key)
	r.mu.Unlock()
	return r.inner.Get(key)
}

func (r *recordingAdapter) Set(key, value string) {
	r.mu.Lock()
	r.sets = append(r.sets, key)
	r.mu.Unlock()
	r.inner.Set(key, value)
}

func (r *recordingAdapter) Initialize() { r.inner.Initialize() }
func (r *recordingAdapter) Shutdown()   { r.inner.Shutdown() }

func (r *recordingAdapter) ShouldBeUsedForQueryingUpdates(key string) bool {
	r.mu.Lock()
	if !slices.Contains(r.polls, key) {
		r.polls = append(r.polls, key)
	}
	r.mu.Unlock()
	return r.inner.ShouldBeUsedForQueryingUpdates(key)
}

func (r *recordingAdapter) calls() (gets, sets, polls []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.gets), slices.Clone(r.sets), slices.Clone(r.polls)
}

// goSDK starts a go-sdk client whose only source is the adapter: every URL
// points at the tripwire, event logging is off, ID lists are not polled during
// the test.
func goSDK(t *testing.T, s *stack, key keys.SDKKey, adapter statsig.IDataAdapter) (*statsig.Client, statsig.InitializeDetails) {
	t.Helper()
	opts := goSDKOptions(t, s, adapter)
	opts.ConfigSyncInterval = 200 * time.Millisecond
	opts.IDListSyncInterval = time.Hour
	return statsig.NewClientWithDetails(key.Reveal(), opts)
}

// goSDKOptions are the options every go-sdk client of the suite shares: the
// adapter, every URL at the tripwire, no event logging or diagnostics, errors
// in the test log.
func goSDKOptions(t *testing.T, s *stack, adapter statsig.IDataAdapter) *statsig.Options {
	return &statsig.Options{
		API: s.trip.URL,
		APIOverrides: statsig.APIOverrides{
			DownloadConfigSpecs: s.trip.URL,
			GetIDLists:          s.trip.URL,
			LogEvent:            s.trip.URL,
		},
		DataAdapter: adapter,
		InitTimeout: 10 * time.Second,
		StatsigLoggerOptions: statsig.StatsigLoggerOptions{
			DisableAllLogging:      true,
			DisableInitDiagnostics: true,
			DisableSyncDiagnostics: true,
			DisableApiDiagnostics:  true,
		},
		OutputLoggerOptions: statsig.OutputLoggerOptions{
			LogCallback: func(message string, err error) {
				if err != nil {
					t.Logf("go-sdk: %s %v", message, err)
				}
			},
		},
		IPCountryOptions: statsig.IPCountryOptions{Disabled: true},
		UAParserOptions:  statsig.UAParserOptions{Disabled: true},
	}
}

func goEval(c *statsig.Client) evalResult {
	user := statsig.User{UserID: "compat-user"}
	gate := c.GetGateWithExposureLoggingDisabled(user, fakecdn.GatePass)
	config := c.GetConfigWithExposureLoggingDisabled(user, fakecdn.ConfigName)
	e := evalResult{
		GatePass: gate.Value,
		GateFail: c.CheckGateWithExposureLoggingDisabled(user, fakecdn.GateFail),
		GateOdd:  c.CheckGateWithExposureLoggingDisabled(user, fakecdn.GateOdd),
	}
	if v, ok := config.Value[fakecdn.ConfigField].(float64); ok {
		e.ConfigValue = &v
	}
	if l, ok := config.Value["label"].(string); ok {
		e.ConfigLabel = &l
	}
	if d := gate.EvaluationDetails; d != nil {
		reason := string(d.Source) // go-sdk's Reason is "None" here; Source carries it
		lcut := d.ConfigSyncTime
		e.Reason, e.Lcut = &reason, &lcut
	}
	return e
}

// go-sdk over the sfp layout: statsig.cache → HASH statsig|/v1/download_config_specs|plain_text|<hashed>,
// under a REDIS_KEY_PREFIX.
func TestGoSDKSFP(t *testing.T) {
	t.Parallel()
	key := keys.MustParse("secret-compatGoSDK006abcdefghij")
	s := newStack(t)
	s.cdn.SetProject(key, fakecdn.Project{Lcut: baseLcut + 6000, Value: 11})
	const prefix = "go:"
	s.startWorker(t, key, "REDIS_FORMATS=sfp", "REDIS_KEY_SCHEMAS=hashed", "STATSIG_DCS_VERSIONS=v1", "REDIS_KEY_PREFIX="+prefix)
	redisKey := prefix + keys.DCSKey("", keys.V1, keys.PlainText, keys.Hashed.ID(key))
	p1 := s.cdn.Project(key)
	s.waitSFP(t, redisKey, p1.Lcut)

	rdb := redis.NewClient(&redis.Options{Addr: s.redis.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })

	check := func(who string, d statsig.InitializeDetails, e evalResult, p fakecdn.Project) {
		t.Helper()
		if !d.Success || d.Source != statsig.SourceDataAdapter || d.Error != nil {
			t.Errorf("%s: InitializeDetails = {Success: %v, Source: %s, Error: %v}, want success from %s",
				who, d.Success, d.Source, d.Error, statsig.SourceDataAdapter)
		}
		if deref(e.Reason) != string(statsig.SourceDataAdapter) {
			t.Errorf("%s: evaluation source = %s, want %s", who, deref(e.Reason), statsig.SourceDataAdapter)
		}
		assertProject(t, who, e, p)
	}

	adapterA := &recordingAdapter{inner: statsigredis.New(rdb, prefix, key.Reveal())}
	a, detailsA := goSDK(t, s, key, adapterA)
	stopA := sync.OnceFunc(a.Shutdown)
	t.Cleanup(stopA)
	check("SDK A at start", detailsA, goEval(a), p1)

	p2 := s.change(key)
	s.waitSFP(t, redisKey, p2.Lcut)

	adapterB := &recordingAdapter{inner: statsigredis.New(rdb, prefix, key.Reveal())}
	b, detailsB := goSDK(t, s, key, adapterB)
	stopB := sync.OnceFunc(b.Shutdown)
	t.Cleanup(stopB)
	check("SDK B (started after the change)", detailsB, goEval(b), p2)

	start := time.Now()
	waitFor(t, 10*time.Second, "SDK A to poll the change from its adapter", func() string {
		if e := goEval(a); e.ConfigValue == nil || *e.ConfigValue != float64(p2.Value) {
			return fmt.Sprintf("config value is %s", ptrString(e.ConfigValue))
		}
		return ""
	})
	t.Logf("SDK A saw the change %v after it reached Redis", time.Since(start).Round(time.Millisecond))
	assertProject(t, "SDK A after polling its adapter", goEval(a), p2)

	stopA()
	stopB()
	for _, c := range []struct {
		who string
		r   *recordingAdapter
	}{{"SDK A", adapterA}, {"SDK B", adapterB}} {
		gets, sets, polls := c.r.calls()
		// go-sdk asks for its fixed keys; the adapter answers statsig.cache only.
		for _, k := range gets {
			if k != statsig.CONFIG_SPECS_KEY && k != statsig.ID_LISTS_KEY {
				t.Errorf("%s: go-sdk asked its adapter for %q", c.who, k)
			}
		}
		if !slices.Contains(gets, statsig.CONFIG_SPECS_KEY) {
			t.Errorf("%s: go-sdk never asked for %q", c.who, statsig.CONFIG_SPECS_KEY)
		}
		if c.who == "SDK A" && !slices.Contains(polls, statsig.CONFIG_SPECS_KEY) {
			t.Errorf("%s: go-sdk never asked whether to poll %q (asked %q)", c.who, statsig.CONFIG_SPECS_KEY, polls)
		}
		if len(sets) > 0 {
			t.Logf("%s called the adapter's no-op Set for %q", c.who, sets)
		}
	}
	s.trip.assertUntouched(t)
	s.assertOnlyWorkerAtCDN(t)
}

// Negative control: an adapter for a key the worker did not write leaves go-sdk
// uninitialized from Redis, and its fallback to the network lands on the tripwire.
func TestGoSDKMissingKeyIsNotServed(t *testing.T) {
	t.Parallel()
	key := keys.MustParse("secret-compatGoSDK007abcdefghij")
	s := newStack(t)
	s.cdn.SetProject(key, fakecdn.Project{Lcut: baseLcut + 7000, Value: 13})
	s.startWorker(t, key, "REDIS_FORMATS=sfp", "REDIS_KEY_SCHEMAS=hashed", "STATSIG_DCS_VERSIONS=v1")
	s.waitSFP(t, keys.DCSKey("", keys.V1, keys.PlainText, keys.Hashed.ID(key)), baseLcut+7000)

	rdb := redis.NewClient(&redis.Options{Addr: s.redis.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	c, d := goSDK(t, s, key, statsigredis.New(rdb, "wrong-prefix:", key.Reveal()))
	defer c.Shutdown()
	e := goEval(c)
	if d.Source == statsig.SourceDataAdapter || e.GatePass || e.ConfigValue != nil {
		t.Errorf("go-sdk initialized from a key the worker never wrote: %+v, %+v", d, e)
	}
	if len(s.trip.Seen()) == 0 {
		t.Errorf("the tripwire saw nothing: go-sdk's network fallback is not being caught")
	}
	t.Logf("details %+v; tripwire saw %q", d, s.trip.Seen())
}
