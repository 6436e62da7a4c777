package compat

// ID lists (issue 12): statsig-node 6.5.2 and go-sdk 1.35.1, in local mode (no
// network at all), evaluate the fixture's gate on_for_id_list ("userID in
// list_1") on the lists the real worker copied from the fake CDN into Redis,
// through the adapters of docs/adapters.md. Each list change at the CDN must
// reach an SDK started after it and, by polling its adapter, one already
// running:
//
//	list_1.txt                         abc in the list   true
//	the CDN appends -ungWv48B          abc removed       false
//	recreated (new fileID), abc added  abc in the list   true
//	list_1 leaves the manifest         no list           false

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	statsig "github.com/statsig-io/go-sdk"

	"github.com/statsig-populator/statsig-populator/compat/adapters/statsigredis"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

const (
	idListName = "list_1"
	idListGate = "on_for_id_list"
	// The line the CDN appends to list_1.txt to remove abc (list_1_updated.txt).
	idListRemoveAbc = "-ungWv48B\n"
	// What list_1 is recreated with: another file (abc and the other ID,
	// reordered), shorter than the 30 bytes an SDK consumed from the old one,
	// so that an SDK reading the new file from the old offset keeps failing.
	idListRecreated = "+Ngi8oeRO\n+ungWv48B\n"
	// The worker's ID-list poll interval in these tests.
	idListsPoll = 500 * time.Millisecond
)

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixtureManifestEntry is list_1 as a fixture manifest announces it.
func fixtureManifestEntry(t *testing.T, name string) fakecdn.IDListEntry {
	t.Helper()
	var m map[string]fakecdn.IDListEntry
	if err := json.Unmarshal(testdata(t, name), &m); err != nil {
		t.Fatalf("testdata/%s: %v", name, err)
	}
	e, ok := m[idListName]
	if !ok {
		t.Fatalf("testdata/%s has no %s", name, idListName)
	}
	return e
}

// idListWorld is a stack whose fake CDN serves the fixture payload (v1) and
// list_1 for key, with the worker writing them to Redis under prefix.
type idListWorld struct {
	s           *stack
	key         keys.SDKKey
	prefix      string
	dcsKey      string // the sfp HASH of the payload
	manifestKey string // the manifest HASH
	listKey     string // list_1's STRING
	payloadTime int64  // the fixture payload's time
	lastMarker  int64  // the manifest's lcut when it was last seen changed
}

// newIDListWorld starts the world; others are more SDK keys the worker serves,
// with the same payload and no ID lists.
func newIDListWorld(t *testing.T, key keys.SDKKey, prefix string, others ...keys.SDKKey) *idListWorld {
	t.Helper()
	payload := testdata(t, "download_config_specs.json")
	var p struct {
		Time    int64           `json:"time"`
		IDLists map[string]bool `json:"id_lists"`
	}
	if err := json.Unmarshal(payload, &p); err != nil || p.Time == 0 || !p.IDLists[idListName] {
		t.Fatalf("testdata/download_config_specs.json: time %d, id_lists %v, %v", p.Time, p.IDLists, err)
	}
	w := &idListWorld{s: newStack(t), key: key, prefix: prefix, payloadTime: p.Time}
	id := keys.Hashed.ID(key)
	w.dcsKey = prefix + keys.DCSKey("", keys.V1, keys.PlainText, id)
	w.manifestKey = keys.IDListsManifestKey(prefix, id)
	w.listKey = keys.IDListKey(prefix, idListName, id)

	all := []string{key.Reveal()}
	for _, k := range append([]keys.SDKKey{key}, others...) {
		// SetProject makes the key known (the ID-list endpoints need that);
		// its synthetic payload is never served: the fault's Body, the
		// fixture, answers every download_config_specs request of the key.
		w.s.cdn.SetProject(k, fakecdn.Project{Lcut: baseLcut, Value: 1})
		w.s.cdn.SetFault(k, fakecdn.Fault{Body: payload})
		if k != key {
			all = append(all, k.Reveal())
		}
	}
	e := fixtureManifestEntry(t, "get_id_lists.json")
	list := testdata(t, "list_1.txt")
	if e.Size != int64(len(list)) {
		t.Fatalf("testdata: get_id_lists.json announces %d bytes, list_1.txt has %d", e.Size, len(list))
	}
	w.s.cdn.PutIDList(key, idListName, e.FileID, e.CreationTime, list)

	w.s.startWorker(t, key, "STATSIG_SERVER_SDK_KEYS="+strings.Join(all, ","),
		"REDIS_FORMATS=sfp", "REDIS_KEY_SCHEMAS=hashed", "STATSIG_DCS_VERSIONS=v1", "REDIS_KEY_PREFIX="+prefix,
		"STATSIG_ID_LISTS=true", "ID_LISTS_POLL_INTERVAL="+idListsPoll.String())
	w.s.waitSFP(t, w.dcsKey, p.Time)
	for _, k := range others {
		w.s.waitSFP(t, prefix+keys.DCSKey("", keys.V1, keys.PlainText, keys.Hashed.ID(k)), p.Time)
	}
	w.waitList(t, "the worker to copy list_1.txt", e, list)
	return w
}

// manifest reads the manifest HASH: its config (nil when the HASH is absent),
// lcut and encoding.
func (w *idListWorld) manifest() (config map[string]fakecdn.IDListEntry, marker int64, encoding string, err error) {
	vals, err := w.s.redis.Client().HMGet(context.Background(), w.manifestKey, "config", "lcut", "encoding").Result()
	if err != nil {
		return nil, 0, "", err
	}
	if vals[0] == nil {
		return nil, 0, "", nil
	}
	config = map[string]fakecdn.IDListEntry{}
	if err := json.Unmarshal([]byte(fmt.Sprint(vals[0])), &config); err != nil {
		return nil, 0, "", fmt.Errorf("manifest config %q is not a JSON object of entries: %v", vals[0], err)
	}
	marker, err = strconv.ParseInt(fmt.Sprint(vals[1]), 10, 64)
	if err != nil {
		return nil, 0, "", fmt.Errorf("manifest lcut %v is not an integer", vals[1])
	}
	encoding, _ = vals[2].(string)
	return config, marker, encoding, nil
}

// waitList waits until Redis holds list_1 as want announces it (url aside:
// the fake's) with content, under a manifest lcut greater than the last one
// seen; it returns when it saw that.
func (w *idListWorld) waitList(t *testing.T, what string, want fakecdn.IDListEntry, content []byte) time.Time {
	t.Helper()
	waitFor(t, 15*time.Second, what, func() string {
		m, marker, encoding, err := w.manifest()
		switch {
		case err != nil:
			return err.Error()
		case m == nil:
			return "no manifest HASH " + w.manifestKey
		case encoding != "plain_text":
			return fmt.Sprintf("manifest encoding is %q", encoding)
		}
		got, ok := m[idListName]
		if !ok {
			return fmt.Sprintf("the manifest has no %s: %+v", idListName, m)
		}
		if got.URL == "" {
			return fmt.Sprintf("the manifest's %s has no url (go-sdk skips such an entry): %+v", idListName, got)
		}
		got.URL = want.URL
		if got != want {
			return fmt.Sprintf("the manifest's %s is %+v, want %+v", idListName, got, want)
		}
		if marker <= w.lastMarker {
			return fmt.Sprintf("the manifest's lcut is %d, not past %d", marker, w.lastMarker)
		}
		v, err := w.s.redis.Client().Get(context.Background(), w.listKey).Bytes()
		if err != nil {
			return "list " + w.listKey + ": " + err.Error()
		}
		if !bytes.Equal(v, content) {
			return fmt.Sprintf("list holds %q, want %q", v, content)
		}
		w.lastMarker = marker
		return ""
	})
	return time.Now()
}

// appendRemoval makes the CDN append the line that removes abc and waits for
// Redis to hold list_1_updated.txt, as get_id_lists_updated.json announces it.
func (w *idListWorld) appendRemoval(t *testing.T) time.Time {
	t.Helper()
	w.s.cdn.AppendIDList(w.key, idListName, []byte(idListRemoveAbc))
	updated := testdata(t, "list_1_updated.txt")
	e := fixtureManifestEntry(t, "get_id_lists_updated.json")
	if _, cdn, _ := w.s.cdn.IDList(w.key, idListName); !bytes.Equal(cdn, updated) || e.Size != int64(len(updated)) {
		t.Fatalf("the CDN's list is %q, list_1_updated.txt %q (%d bytes announced)", cdn, updated, e.Size)
	}
	return w.waitList(t, "the worker to append "+idListRemoveAbc, e, updated)
}

// recreate makes the CDN replace list_1 by a new file (new fileID) that has
// abc, and waits for Redis to hold it.
func (w *idListWorld) recreate(t *testing.T) time.Time {
	t.Helper()
	fileID := w.s.cdn.RecreateIDList(w.key, idListName, []byte(idListRecreated))
	e, _, _ := w.s.cdn.IDList(w.key, idListName)
	if e.FileID != fileID {
		t.Fatalf("the CDN announces fileID %q after RecreateIDList returned %q", e.FileID, fileID)
	}
	return w.waitList(t, "the worker to replace list_1 by fileID "+fileID, e, []byte(idListRecreated))
}

// remove takes list_1 out of the CDN's manifest and waits for Redis's
// manifest to leave it out too.
func (w *idListWorld) remove(t *testing.T) time.Time {
	t.Helper()
	w.s.cdn.RemoveIDList(w.key, idListName)
	waitFor(t, 15*time.Second, "the worker to take list_1 out of the manifest", func() string {
		m, marker, _, err := w.manifest()
		switch {
		case err != nil:
			return err.Error()
		case m != nil && marker <= w.lastMarker:
			return fmt.Sprintf("the manifest's lcut is %d, not past %d", marker, w.lastMarker)
		}
		if _, ok := m[idListName]; ok {
			return fmt.Sprintf("the manifest still names %s: %+v", idListName, m)
		}
		if m == nil {
			t.Logf("the worker deleted the manifest HASH")
		} else {
			t.Logf("the manifest is now %v (lcut %d)", m, marker)
			w.lastMarker = marker
		}
		return ""
	})
	at := time.Now()
	if n, _ := w.s.redis.Client().Exists(context.Background(), w.listKey).Result(); n > 0 {
		t.Logf("list_1's STRING is still in Redis after it left the manifest")
	}
	return at
}

// idListEval is one evaluation of the fixture's gates, by either SDK.
type idListEval struct {
	InList    bool    `json:"inList"`    // on_for_id_list for abc
	NotInList bool    `json:"notInList"` // on_for_id_list for regular_user_id (in no list)
	AlwaysOn  bool    `json:"alwaysOn"`  // always_on_gate
	Reason    *string `json:"reason"`
	Lcut      *int64  `json:"lcut"`
}

// check asserts an evaluation from the adapter's payload with abc in list_1 or not.
func (w *idListWorld) check(t *testing.T, who string, e idListEval, inList bool) {
	t.Helper()
	if e.InList != inList {
		t.Errorf("%s: %s for abc = %v, want %v", who, idListGate, e.InList, inList)
	}
	if e.NotInList {
		t.Errorf("%s: %s passed for regular_user_id, who is in no list", who, idListGate)
	}
	if !e.AlwaysOn {
		t.Errorf("%s: always_on_gate failed: the fixture payload is not loaded", who)
	}
	if deref(e.Reason) != "DataAdapter" {
		t.Errorf("%s: evaluation reason/source = %s, want DataAdapter", who, deref(e.Reason))
	}
	if e.Lcut == nil || *e.Lcut != w.payloadTime {
		t.Errorf("%s: evaluation lcut = %s, want %d", who, ptrString(e.Lcut), w.payloadTime)
	}
}

// ---- statsig-node 6.5.2 ----

// The node instances live in one process (node/idlists.mjs) and poll ID lists
// every 30 s, statsig-node's minimum. Each change is checked on an instance
// started after it reached Redis and on one started before, which must see it
// within one interval of its arrival. The instances' syncs pace the changes,
// so that the whole takes about two intervals, not three: A (started first)
// sees the append at its first sync; the recreate follows at once, and B,
// started 5 s after A, sees it at its own first sync, 5 s later; the removal
// follows, and C (started after the recreate) and B see it at their next syncs.
func TestIDListsStatsigNode(t *testing.T) {
	t.Parallel()
	const interval = 30 * time.Second
	const slack = 5 * time.Second
	key := keys.MustParse("secret-compatIDListNode01abcdefgh")
	const prefix = "ids:"
	w := newIDListWorld(t, key, prefix)

	sdk, initA := startNode(t, "statsig-node (ID lists)", "idlists.mjs", w.s.nodeEnv(key,
		"KEY_PREFIX="+prefix, "ID_LISTS_SYNC_MS="+strconv.FormatInt(interval.Milliseconds(), 10)))
	startedA := time.Now()
	type report struct {
		ID      string     `json:"id"`
		Success bool       `json:"success"`
		Source  *string    `json:"source"`
		Error   *string    `json:"error"`
		Eval    idListEval `json:"eval"`
	}
	parse := func(m message) report {
		t.Helper()
		var r report
		if err := json.Unmarshal([]byte(strings.TrimPrefix(m.Raw, mark)), &r); err != nil {
			t.Fatalf("%s: %v", m.Raw, err)
		}
		return r
	}
	started := func(m message, inList bool) {
		t.Helper()
		r := parse(m)
		who := "instance " + r.ID + " at start"
		if !r.Success || deref(r.Source) != "DataAdapter" {
			t.Errorf("%s: initializeAsync() = {success: %v, source: %s, error: %s}, want success from DataAdapter",
				who, r.Success, deref(r.Source), deref(r.Error))
		}
		w.check(t, who, r.Eval, inList)
	}
	start := func(id string, inList bool) {
		t.Helper()
		sdk.send("start " + id)
		started(sdk.next("start", 30*time.Second), inList)
	}
	// wait asks instance id to re-evaluate until abc's membership is inList,
	// for at most one interval (plus slack) after the change reached Redis.
	wait := func(id string, inList bool, reached time.Time) {
		t.Helper()
		budget := time.Until(reached.Add(interval + slack))
		sdk.send(fmt.Sprintf("wait %s %v %d", id, inList, max(budget, 0).Milliseconds()))
		r := parse(sdk.next("wait", budget+10*time.Second))
		w.check(t, "instance "+id+" (started before the change, polling its adapter)", r.Eval, inList)
		t.Logf("instance %s saw the change %v after it reached Redis", id, time.Since(reached).Round(100*time.Millisecond))
	}

	started(initA, true)

	reached := w.appendRemoval(t)
	time.Sleep(time.Until(startedA.Add(5 * time.Second)))
	start("B", false)
	wait("A", false, reached)

	reached = w.recreate(t)
	start("C", true)
	wait("B", true, reached)

	reached = w.remove(t)
	start("D", false)
	wait("C", false, reached)
	wait("B", false, reached)

	sdk.send("quit")
	bye := sdk.next("bye", 30*time.Second)
	var r struct {
		Connections []string `json:"connections"`
		Requests    []string `json:"requests"`
		Instances   map[string]struct {
			Get           []string `json:"get"`
			Set           []string `json:"set"`
			Polling       []string `json:"polling"`
			ManifestReads []int64  `json:"manifestReads"`
		} `json:"instances"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(bye.Raw, mark)), &r); err != nil {
		t.Fatalf("%s: %v", bye.Raw, err)
	}
	id := keys.Hashed.ID(key)
	wantKeys := []string{keys.DCSKey("", keys.V1, keys.PlainText, id), keys.IDListsManifestKey("", id), keys.IDListKey("", idListName, id)}
	for name, c := range r.Instances {
		who := "instance " + name
		for _, k := range c.Get {
			if !slices.Contains(wantKeys, k) {
				t.Errorf("%s asked its adapter for %q", who, k)
			}
		}
		// D started after list_1 left the manifest, and quits before its
		// first ID-list sync: the poll question comes with that sync.
		if name == "D" {
			continue
		}
		if !slices.Contains(c.Get, wantKeys[2]) {
			t.Errorf("%s never asked for list_1 (%q): %q", who, wantKeys[2], c.Get)
		}
		if !slices.Contains(c.Polling, "/v1/get_id_lists") {
			t.Errorf("%s never asked whether to poll /v1/get_id_lists (asked %q)", who, c.Polling)
		}
		if len(c.Set) > 0 {
			t.Logf("%s called the adapter's no-op set for %q", who, c.Set)
		}
		t.Logf("%s read the ID-list manifest at %v ms after its start", who, c.ManifestReads)
	}
	if len(r.Instances["A"].ManifestReads) < 2 || len(r.Instances["B"].ManifestReads) < 3 {
		t.Errorf("instances A and B did not poll the ID-list manifest (A read it at %v ms, B at %v ms)",
			r.Instances["A"].ManifestReads, r.Instances["B"].ManifestReads)
	}
	if len(r.Connections) > 0 {
		t.Errorf("statsig-node opened connections to something other than Redis: %q", r.Connections)
	}
	if len(r.Requests) > 0 {
		t.Errorf("statsig-node tried HTTP requests in localMode: %q", r.Requests)
	}
	select {
	case err := <-sdk.done:
		if err != nil {
			t.Errorf("node exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("node did not exit after quit")
	}
	w.s.trip.assertUntouched(t)
	w.s.assertOnlyWorkerAtCDN(t)
}

// ---- go-sdk 1.35.1 ----

// goIDListSDK starts a go-sdk client in local mode on adapter, polling it for
// ID lists every syncEvery, and checks that it initialized from the adapter;
// stop shuts it down (at the latest when the test ends).
func goIDListSDK(t *testing.T, s *stack, key keys.SDKKey, adapter statsig.IDataAdapter, syncEvery time.Duration) (c *statsig.Client, stop func()) {
	t.Helper()
	opts := goSDKOptions(t, s, adapter)
	// Local mode makes no request; the URLs point at the tripwire all the same.
	opts.LocalMode = true
	opts.ConfigSyncInterval = time.Second
	opts.IDListSyncInterval = syncEvery
	c, d := statsig.NewClientWithDetails(key.Reveal(), opts)
	stop = sync.OnceFunc(c.Shutdown)
	t.Cleanup(stop)
	if !d.Success || d.Source != statsig.SourceDataAdapter || d.Error != nil {
		t.Errorf("go-sdk: InitializeDetails = {Success: %v, Source: %s, Error: %v}, want success from %s",
			d.Success, d.Source, d.Error, statsig.SourceDataAdapter)
	}
	return c, stop
}

func goIDListEval(c *statsig.Client) idListEval {
	abc := statsig.User{UserID: "abc"}
	// go-sdk leaves EvaluationDetails out of a gate that fails by its
	// default rule, so the source and lcut are read from always_on_gate.
	on := c.GetGateWithExposureLoggingDisabled(abc, "always_on_gate")
	e := idListEval{
		InList:    c.CheckGateWithExposureLoggingDisabled(abc, idListGate),
		NotInList: c.CheckGateWithExposureLoggingDisabled(statsig.User{UserID: "regular_user_id"}, idListGate),
		AlwaysOn:  on.Value,
	}
	if d := on.EvaluationDetails; d != nil {
		source, lcut := string(d.Source), d.ConfigSyncTime
		e.Reason, e.Lcut = &source, &lcut
	}
	return e
}

// go-sdk has no minimum ID-list interval: A polls every 500 ms, so each change
// is checked on it within 5 s of reaching Redis. A second SDK key, served by
// the same worker without ID lists, checks that the adapter reads its own
// key's lists only (go-sdk's keys name no SDK key).
func TestIDListsGoSDK(t *testing.T) {
	t.Parallel()
	const interval = 500 * time.Millisecond
	key := keys.MustParse("secret-compatIDListGo01abcdefghij")
	other := keys.MustParse("secret-compatIDListGo02abcdefghij")
	const prefix = "go-ids:"
	w := newIDListWorld(t, key, prefix, other)

	rdb := redis.NewClient(&redis.Options{Addr: w.s.redis.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	adapterA := &recordingAdapter{inner: statsigredis.New(rdb, prefix, key.Reveal())}
	a, stopA := goIDListSDK(t, w.s, key, adapterA, interval)
	w.check(t, "SDK A at start", goIDListEval(a), true)

	o, _ := goIDListSDK(t, w.s, other, statsigredis.New(rdb, prefix, other.Reveal()), interval)
	w.check(t, "an SDK of another key, which has no ID lists", goIDListEval(o), false)

	// fresh starts a new SDK, checks it, and shuts it down.
	fresh := func(who string, inList bool) {
		t.Helper()
		c, stop := goIDListSDK(t, w.s, key, statsigredis.New(rdb, prefix, key.Reveal()), time.Hour)
		w.check(t, who, goIDListEval(c), inList)
		stop()
	}
	// poll waits for A to see the change, within 5 s of its reaching Redis.
	poll := func(what string, inList bool, reached time.Time) {
		t.Helper()
		waitFor(t, time.Until(reached.Add(5*time.Second)), "SDK A to poll "+what+" from its adapter", func() string {
			if e := goIDListEval(a); e.InList != inList {
				return fmt.Sprintf("%s for abc is %v", idListGate, e.InList)
			}
			return ""
		})
		w.check(t, "SDK A after polling "+what, goIDListEval(a), inList)
		t.Logf("SDK A saw %s %v after it reached Redis", what, time.Since(reached).Round(time.Millisecond))
	}

	reached := w.appendRemoval(t)
	fresh("SDK B (started after the append)", false)
	poll("the append", false, reached)

	reached = w.recreate(t)
	fresh("SDK C (started after the recreate)", true)
	poll("the recreated list", true, reached)

	reached = w.remove(t)
	fresh("SDK D (started after the removal)", false)
	poll("the removal", false, reached)

	stopA()
	gets, sets, polls := adapterA.calls()
	allowed := []string{statsig.CONFIG_SPECS_KEY, statsig.ID_LISTS_KEY, statsig.ID_LISTS_KEY + "::" + idListName}
	for _, k := range gets {
		if !slices.Contains(allowed, k) {
			t.Errorf("SDK A asked its adapter for %q", k)
		}
	}
	if !slices.Contains(gets, allowed[2]) {
		t.Errorf("SDK A never asked for %q", allowed[2])
	}
	if n := countOf(gets, statsig.ID_LISTS_KEY); n < 4 {
		t.Errorf("SDK A read %q %d times: it did not poll its adapter for ID lists", statsig.ID_LISTS_KEY, n)
	}
	if !slices.Contains(polls, statsig.ID_LISTS_KEY) {
		t.Errorf("SDK A never asked whether to poll %q (asked %q)", statsig.ID_LISTS_KEY, polls)
	}
	if len(sets) > 0 {
		t.Logf("SDK A called the adapter's no-op Set for %q", sets)
	}
	w.s.trip.assertUntouched(t)
	w.s.assertOnlyWorkerAtCDN(t)
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
