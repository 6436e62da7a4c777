package poller

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

func TestListDecisionBigAppendReplaces(t *testing.T) {
	e := &idlists.Entry{Name: "l", Size: 10 + MaxAppendInMemory + 1, FileID: "F", URL: "http://x/l"}
	stored := &idlists.Stored{FileID: "F", Length: 10}
	if d := listDecision(stored, e, false); d.Action != idlists.Replace || d.Offset != 0 || d.Length != e.Size {
		t.Fatalf("a growth beyond MaxAppendInMemory: %+v", d)
	}
	e.Size = 10 + MaxAppendInMemory
	if d := listDecision(stored, e, false); d.Action != idlists.Append || d.Offset != 10 {
		t.Fatalf("a growth of MaxAppendInMemory: %+v", d)
	}
	if d := listDecision(stored, nil, true); d.Action != idlists.Nothing {
		t.Fatalf("a kept absent list: %+v", d)
	}
	if d := listDecision(stored, nil, false); d.Action != idlists.Remove {
		t.Fatalf("an absent list not kept: %+v", d)
	}
}

func TestKeepAbsentAndMarker(t *testing.T) {
	for n, want := range map[int]bool{0: true, 1: true, 2: false, 3: false} {
		if got := keepAbsent(n); got != want {
			t.Errorf("keepAbsent(%d) = %v", n, got)
		}
	}
	for _, c := range []struct{ now, stored, want int64 }{{100, 0, 100}, {100, 100, 101}, {100, 500, 501}} {
		if got := nextMarker(c.now, c.stored); got != c.want {
			t.Errorf("nextMarker(%d, %d) = %d", c.now, c.stored, got)
		}
	}
}

func TestStoredManifest(t *testing.T) {
	cdn := map[string]idlists.Entry{
		"a": {Name: "a", Size: 30, URL: "u/a2", CreationTime: 5, FileID: "A"},
		"b": {Name: "b", Size: 50, URL: "u/b2", CreationTime: 9, FileID: "B2"},
	}
	before := map[string]idlists.Entry{
		"b": {Name: "b", Size: 40, URL: "u/b1", CreationTime: 7, FileID: "B1"},
		"c": {Name: "c", Size: 10, URL: "u/c", CreationTime: 1, FileID: "C"},
	}
	held := map[string]heldList{
		"a": {Length: 20, FileID: "A"},  // behind the CDN: announced as stored
		"b": {Length: 40, FileID: "B1"}, // the new file failed: the old entry stays
		"c": {Length: 10, FileID: "C"},  // being removed
		"d": {Length: 10, FileID: "X"},  // no manifest describes it
		"e": {Length: 0, FileID: "E"},   // empty
	}
	got := map[string]idlists.Entry{}
	if err := json.Unmarshal(storedManifest(held, cdn, before, map[string]bool{"c": true}), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]idlists.Entry{
		"a": {Name: "a", Size: 20, URL: "u/a2", CreationTime: 5, FileID: "A"},
		"b": {Name: "b", Size: 40, URL: "u/b1", CreationTime: 7, FileID: "B1"},
	}
	if len(got) != len(want) || got["a"] != want["a"] || got["b"] != want["b"] {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if string(storedManifest(nil, nil, nil, nil)) != "{}" {
		t.Fatal("nothing held must still be a manifest, {}")
	}
	if len(parseStoredManifest([]byte("not json"))) != 0 || len(parseStoredManifest([]byte(`{"x|y":{"fileID":"F","url":"u"}}`))) != 0 {
		t.Fatal("garbage or unusable names must parse as nothing")
	}
}

// idHarness is a syncer against a real redis-server and the fake CDN, driven
// one sync at a time.
type idHarness struct {
	t     *testing.T
	redis *redistest.Server
	cdn   *fakecdn.Server
	s     *IDLists
	store *writer.Writer
}

var idKey = keys.MustParse("secret-idListsPollerKey0000000000000")

func newIDHarness(t *testing.T, opt IDListOptions) *idHarness {
	t.Helper()
	r := redistest.Start(t)
	cdn := fakecdn.New()
	cdn.SetProject(idKey, fakecdn.Project{Lcut: 1000})
	srv := httptest.NewServer(cdn)
	t.Cleanup(srv.Close)
	store := writer.New(r.Client(), opt.TTL)
	client := idlists.New(idlists.Options{BaseURL: srv.URL, Timeout: 5 * time.Second})
	opt.Keys = []keys.SDKKey{idKey}
	opt.Schemas = []keys.Schema{keys.Hashed, keys.Prefix}
	if opt.Interval == 0 {
		opt.Interval = time.Minute
	}
	return &idHarness{t: t, redis: r, cdn: cdn, store: store, s: NewIDLists(opt, client, store, zerolog.Nop(), nil)}
}

func (h *idHarness) sync() IDListStatus {
	h.t.Helper()
	return h.s.Once(context.Background())[0]
}

// held returns, per schema, the stored manifest entries and list values.
func (h *idHarness) held() ([]map[string]idlists.Entry, []map[string]string) {
	h.t.Helper()
	ctx := context.Background()
	var mans []map[string]idlists.Entry
	var lists []map[string]string
	for _, mt := range h.s.manifests(idKey) {
		b, _, err := h.store.ReadIDListManifest(ctx, mt)
		if err != nil {
			h.t.Fatal(err)
		}
		m := map[string]idlists.Entry{}
		if b != nil {
			if err := json.Unmarshal(b, &m); err != nil {
				h.t.Fatalf("stored manifest %q: %v", b, err)
			}
		}
		ls := map[string]string{}
		for name, e := range m {
			v, err := h.redis.Client().Get(ctx, keys.NewIDListTarget("", idKey, mt.Schema, name).Key).Result()
			if err != nil {
				h.t.Fatalf("manifest announces %s but the list is not stored: %v", name, err)
			}
			if int64(len(v)) != e.Size {
				h.t.Fatalf("manifest announces %d bytes of %s, %d stored", e.Size, name, len(v))
			}
			ls[name] = v
		}
		mans = append(mans, m)
		lists = append(lists, ls)
	}
	return mans, lists
}

// wantList checks every schema holds content for name under fileID.
func (h *idHarness) wantList(name, fileID, content string) {
	h.t.Helper()
	mans, lists := h.held()
	for i := range mans {
		if mans[i][name].FileID != fileID || lists[i][name] != content {
			h.t.Fatalf("schema %d: %s = %q under %q; want %q under %q", i, name, lists[i][name], mans[i][name].FileID, content, fileID)
		}
	}
}

func TestIDListsLifecycle(t *testing.T) {
	h := newIDHarness(t, IDListOptions{})
	ctx := context.Background()
	list1 := "+ungWv48B\n+Ngi8oeRO\n"

	// No lists yet: an empty manifest is stored (a reader needs the lookup).
	if st := h.sync(); st.LastOutcome != "updated" || !st.Current {
		t.Fatalf("first sync: %+v", st)
	}
	if mans, _ := h.held(); len(mans[0]) != 0 || len(mans[1]) != 0 {
		t.Fatalf("manifests: %+v", mans)
	}

	h.cdn.PutIDList(idKey, "list_1", "123", 0, []byte(list1))
	if st := h.sync(); st.LastOutcome != "updated" || !st.Current || st.Lists != 1 || st.Bytes != 20 {
		t.Fatalf("new list: %+v", st)
	}
	h.wantList("list_1", "123", list1)

	// Unchanged: nothing written (the manifest's marker does not move).
	_, marker, _ := h.store.ReadIDListManifest(ctx, keys.NewManifestTarget("", idKey, keys.Hashed))
	if st := h.sync(); st.LastOutcome != "unchanged" {
		t.Fatalf("unchanged: %+v", st)
	}
	if _, m2, _ := h.store.ReadIDListManifest(ctx, keys.NewManifestTarget("", idKey, keys.Hashed)); m2 != marker {
		t.Fatalf("an unchanged sync moved the marker %d → %d", marker, m2)
	}

	// An append downloads only the new bytes.
	h.cdn.ResetLog()
	h.cdn.AppendIDList(idKey, "list_1", []byte("-ungWv48B\n"))
	if st := h.sync(); st.LastOutcome != "updated" || st.Bytes != 30 {
		t.Fatalf("append: %+v", st)
	}
	h.wantList("list_1", "123", list1+"-ungWv48B\n")
	ranges := 0
	for _, r := range h.cdn.Requests() {
		if strings.HasPrefix(r.Path, fakecdn.IDListFilePath) {
			ranges++
			if got := r.Header.Get("Range"); got != "bytes=20-" {
				t.Errorf("append asked for %q, want bytes=20-", got)
			}
		}
	}
	if ranges != 1 {
		t.Errorf("%d downloads for one append to two schemas, want 1", ranges)
	}

	// Recreated with another fileID: replaced whole.
	id2 := h.cdn.RecreateIDList(idKey, "list_1", []byte("+AAAAAAAA\n"))
	h.sync()
	h.wantList("list_1", id2, "+AAAAAAAA\n")

	// A bad chunk writes nothing; after MaxBadChunks in a row the whole file
	// is fetched again.
	h.cdn.SetIDListFault(idKey, fakecdn.IDListFault{FileBadSeek: true})
	h.cdn.AppendIDList(idKey, "list_1", []byte("+BBBBBBBB\n"))
	for i := 0; i < idlists.MaxBadChunks; i++ {
		if st := h.sync(); st.LastOutcome != "download_error" || st.Current {
			t.Fatalf("bad chunk %d: %+v", i, st)
		}
		h.wantList("list_1", id2, "+AAAAAAAA\n")
	}
	if st := h.sync(); st.LastOutcome != "updated" || !st.Current {
		t.Fatalf("after bad chunks, the whole file: %+v", st)
	}
	h.wantList("list_1", id2, "+AAAAAAAA\n+BBBBBBBB\n")
	h.cdn.ClearIDListFaults()

	// FLUSHALL heals at the next sync.
	h.redis.FlushAll()
	h.sync()
	h.wantList("list_1", id2, "+AAAAAAAA\n+BBBBBBBB\n")

	// A list that leaves the manifest is kept for one manifest, then removed.
	h.cdn.RemoveIDList(idKey, "list_1")
	h.sync()
	h.wantList("list_1", id2, "+AAAAAAAA\n+BBBBBBBB\n")
	h.sync()
	if mans, _ := h.held(); len(mans[0]) != 0 || len(mans[1]) != 0 {
		t.Fatalf("removed list still announced: %+v", mans)
	}
	for _, tg := range keys.IDListTargets("", idKey, h.s.opt.Schemas, "list_1") {
		if n, _ := h.redis.Client().Exists(ctx, tg.Key, tg.FileIDKey).Result(); n != 0 {
			t.Fatalf("removed list's keys remain (%d)", n)
		}
	}
}

func TestIDListsManifestFailureKeepsLists(t *testing.T) {
	h := newIDHarness(t, IDListOptions{})
	h.cdn.PutIDList(idKey, "list_1", "123", 0, []byte("+ungWv48B\n"))
	h.sync()
	for _, f := range []fakecdn.IDListFault{{ManifestStatus: 503}, {ManifestBody: []byte("<html>")}, {FileStatus: 500}} {
		h.cdn.SetIDListFault(idKey, f)
		h.cdn.AppendIDList(idKey, "list_1", []byte("+Ngi8oeRO\n"))
		if st := h.sync(); st.Current || st.LastOutcome == "updated" || st.LastOutcome == "unchanged" {
			t.Fatalf("fault %+v: %+v", f, st)
		}
		h.wantList("list_1", "123", "+ungWv48B\n")
		h.cdn.PutIDList(idKey, "list_1", "123", 0, []byte("+ungWv48B\n"))
	}
	h.cdn.ClearIDListFaults()
	h.cdn.Revoke(idKey, 401)
	if st := h.sync(); st.LastOutcome != "unauthorized" || !st.Unauthorized {
		t.Fatalf("revoked: %+v", st)
	}
	h.wantList("list_1", "123", "+ungWv48B\n")
}

func TestIDListsShrunkSizeReplaces(t *testing.T) {
	h := newIDHarness(t, IDListOptions{})
	h.cdn.PutIDList(idKey, "list_1", "123", 0, []byte("+ungWv48B\n+Ngi8oeRO\n"))
	h.sync()
	// The manifest announces fewer bytes than stored, same fileID: the list
	// is downloaded again, as much as announced.
	h.cdn.SetIDListFault(idKey, fakecdn.IDListFault{ShrinkSize: 10})
	h.sync()
	h.wantList("list_1", "123", "+ungWv48B\n")
}

func TestIDListsTTL(t *testing.T) {
	h := newIDHarness(t, IDListOptions{TTL: time.Hour})
	h.cdn.PutIDList(idKey, "list_1", "123", 0, []byte("+ungWv48B\n"))
	h.sync()
	ctx := context.Background()
	tg := keys.NewIDListTarget("", idKey, keys.Hashed, "list_1")
	mt := keys.NewManifestTarget("", idKey, keys.Hashed)
	for _, k := range []string{tg.Key, tg.FileIDKey, mt.Key} {
		h.redis.Client().Persist(ctx, k)
	}
	h.sync() // unchanged, but the TTL is renewed
	for _, k := range []string{tg.Key, tg.FileIDKey, mt.Key} {
		if d, _ := h.redis.Client().PTTL(ctx, k).Result(); d <= 0 {
			t.Errorf("%s has no TTL after a sync", k)
		}
	}
}

// The string format: the manifest is a STRING of JSON with its marker in a
// companion in the same slot; lists are the same STRINGs as with sfp.
func TestIDListsStringFormat(t *testing.T) {
	h := newIDHarness(t, IDListOptions{Format: keys.String})
	ctx := context.Background()
	h.cdn.PutIDList(idKey, "list_1", "123", 0, []byte("+ungWv48B\n"))
	if st := h.sync(); st.LastOutcome != "updated" || !st.Current {
		t.Fatalf("first sync: %+v", st)
	}
	h.wantList("list_1", "123", "+ungWv48B\n")
	mt := keys.NewManifestTarget("", idKey, keys.Hashed).InFormat(keys.String)
	if typ, _ := h.redis.Client().Type(ctx, mt.Key).Result(); typ != "string" {
		t.Fatalf("string-format manifest is a %s", typ)
	}
	marker, _ := h.redis.Client().Get(ctx, mt.MarkerKey).Int64()
	if marker <= 0 {
		t.Fatalf("no marker beside the manifest")
	}
	h.cdn.AppendIDList(idKey, "list_1", []byte("-ungWv48B\n"))
	h.sync()
	h.wantList("list_1", "123", "+ungWv48B\n-ungWv48B\n")
	if m2, _ := h.redis.Client().Get(ctx, mt.MarkerKey).Int64(); m2 <= marker {
		t.Fatalf("marker %d → %d after a change", marker, m2)
	}
	// A HASH where the STRING belongs (an sfp writer of the same names) is
	// never overwritten.
	h.redis.Client().Del(ctx, mt.Key)
	h.redis.Client().HSet(ctx, mt.Key, "config", "{}")
	h.cdn.AppendIDList(idKey, "list_1", []byte("+AAAAAAAA\n"))
	if st := h.sync(); st.LastOutcome != "redis_error" || !strings.Contains(st.LastError, "another type") {
		t.Fatalf("manifest of another type: %+v", st)
	}
	if typ, _ := h.redis.Client().Type(ctx, mt.Key).Result(); typ != "hash" {
		t.Fatalf("the HASH was replaced by a %s", typ)
	}
}

// DELETE_ON_UNAUTHORIZED covers ID lists as it covers config specs: only
// after UnauthorizedDeleteAfter and more than MinUnauthorizedRechecks
// refusals, and only while another key is accepted; DELETE_REMOVED_KEYS
// deletes the ID lists of a key that left the configuration.
func TestIDListsDeleteOnUnauthorizedAndRemoved(t *testing.T) {
	other := keys.MustParse("secret-idListsPollerOtherKey000000000")
	h := newIDHarness(t, IDListOptions{DeleteOnUnauthorized: true, UnauthorizedDeleteAfter: time.Millisecond, DeleteRemovedKeys: true})
	h.cdn.SetProject(other, fakecdn.Project{Lcut: 1000})
	h.s.SetKeys([]keys.SDKKey{idKey, other})
	h.cdn.PutIDList(idKey, "list_1", "123", 0, []byte("+ungWv48B\n"))
	h.cdn.PutIDList(other, "list_2", "456", 0, []byte("+Ngi8oeRO\n"))
	ctx := context.Background()
	h.s.Once(ctx)
	exists := func(k keys.SDKKey, name string) bool {
		n, _ := h.redis.Client().Exists(ctx, keys.NewIDListTarget("", k, keys.Hashed, name).Key,
			keys.NewManifestTarget("", k, keys.Hashed).Key).Result()
		return n == 2
	}
	if !exists(idKey, "list_1") || !exists(other, "list_2") {
		t.Fatal("initial sync did not store both keys' lists")
	}
	h.cdn.Revoke(idKey, 403)
	for i := 0; i <= MinUnauthorizedRechecks; i++ {
		if !exists(idKey, "list_1") {
			t.Fatalf("deleted after %d refusals", i)
		}
		st := h.s.Once(ctx)[0]
		if i < MinUnauthorizedRechecks && st.LastOutcome != "unauthorized" {
			t.Fatalf("refusal %d: %+v", i, st)
		}
	}
	if st := h.s.Statuses()[0]; st.LastOutcome != "deleted" || exists(idKey, "list_1") {
		t.Fatalf("after %d refusals: %+v, still stored %v", MinUnauthorizedRechecks+1, st, exists(idKey, "list_1"))
	}
	if !exists(other, "list_2") {
		t.Fatal("the accepted key's lists were deleted")
	}

	// The other key leaves the configuration: its ID lists go.
	h.s.SetKeys([]keys.SDKKey{idKey})
	h.s.startDue(ctx) // the loop retires the removed key's job
	h.s.wg.Wait()
	if exists(other, "list_2") {
		t.Fatal("a removed key's ID lists stayed with DeleteRemovedKeys")
	}
}

// The loop honours an interval shorter than its one-second heartbeat: it
// sleeps until the earliest key is due.
func TestIDListsShortInterval(t *testing.T) {
	h := newIDHarness(t, IDListOptions{Interval: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.s.Run(ctx) }()
	time.Sleep(2100 * time.Millisecond)
	cancel()
	<-done
	n := 0
	for _, r := range h.cdn.Requests() {
		if strings.HasPrefix(r.Path, fakecdn.IDListManifestPath) {
			n++
		}
	}
	// About 10 in 2.1 s at 200 ms; a one-second tick would give 3.
	if n < 7 {
		t.Fatalf("%d manifest fetches in 2.1 s at a 200 ms interval", n)
	}
}

// Review findings: an accepted manifest ends a refusal streak however the
// sync ends; a key removed while its sync is in flight does not get its
// lists back; a list whose DEL failed is deleted by a later sync; a TTL an
// earlier setting left is removed.
func TestIDListsReviewFindings(t *testing.T) {
	ctx := context.Background()
	other := keys.MustParse("secret-idListsPollerOtherKey000000000")

	t.Run("refusal streak reset by an accepted manifest", func(t *testing.T) {
		h := newIDHarness(t, IDListOptions{DeleteOnUnauthorized: true, UnauthorizedDeleteAfter: time.Millisecond})
		h.cdn.SetProject(other, fakecdn.Project{Lcut: 1000})
		h.s.SetKeys([]keys.SDKKey{idKey, other})
		h.cdn.PutIDList(idKey, "list_1", "123", 0, []byte("+ungWv48B\n"))
		h.s.Once(ctx)
		h.cdn.Revoke(idKey, 403)
		for i := 0; i < MinUnauthorizedRechecks; i++ {
			h.s.Once(ctx)
		}
		// Accepted again, but the sync fails (the list file is gone).
		h.cdn.Restore(idKey)
		h.cdn.SetIDListFault(idKey, fakecdn.IDListFault{FileStatus: 404})
		h.cdn.AppendIDList(idKey, "list_1", []byte("+Ngi8oeRO\n"))
		if st := h.s.Once(ctx)[0]; st.LastOutcome != "download_error" {
			t.Fatalf("accepted sync: %+v", st)
		}
		h.cdn.Revoke(idKey, 403)
		if st := h.s.Once(ctx)[0]; st.LastOutcome != "unauthorized" {
			t.Fatalf("the first refusal of a new streak: %+v", st)
		}
		if n, _ := h.redis.Client().Exists(ctx, keys.NewIDListTarget("", idKey, keys.Hashed, "list_1").Key).Result(); n != 1 {
			t.Fatal("deleted on the first refusal of a new streak")
		}
	})

	t.Run("removed while in flight", func(t *testing.T) {
		h := newIDHarness(t, IDListOptions{DeleteRemovedKeys: true})
		h.cdn.SetProject(other, fakecdn.Project{Lcut: 1000})
		h.s.SetKeys([]keys.SDKKey{idKey, other})
		h.cdn.PutIDList(other, "list_2", "456", 0, []byte("+Ngi8oeRO\n"))
		// The key leaves the configuration while a sync of it is in flight
		// (out), which then finishes.
		var j *idJob
		for _, x := range h.s.jobs {
			if x.key.Reveal() == other.Reveal() {
				j = x
			}
		}
		j.out = true
		done := make(chan struct{})
		go func() { defer close(done); h.s.SetKeys([]keys.SDKKey{idKey}) }()
		<-done
		h.s.syncJob(ctx, j) // the in-flight sync finishes after the removal
		h.s.mu.Lock()
		j.out = false
		h.s.mu.Unlock()
		h.s.startDue(ctx)
		h.s.wg.Wait()
		keysLeft, _ := h.redis.Client().Keys(ctx, "*"+keys.Hashed.ID(other)+"*").Result()
		if len(keysLeft) != 0 {
			t.Fatalf("a removed key's ID-list keys remain: %q", keysLeft)
		}
	})

	t.Run("a failed DEL is retried", func(t *testing.T) {
		h := newIDHarness(t, IDListOptions{})
		h.cdn.PutIDList(idKey, "list_1", "123", 0, []byte("+ungWv48B\n"))
		h.sync()
		h.cdn.RemoveIDList(idKey, "list_1")
		h.sync() // kept once
		j := h.s.jobs[0]
		// As a DEL that failed after the manifest dropped the list leaves
		// it: out of every stored manifest, remembered as an orphan.
		mt := keys.NewManifestTarget("", idKey, keys.Hashed)
		h.store.WriteIDListManifest(ctx, mt, []byte("{}"), time.Now().UnixMilli()+10)
		h.store.WriteIDListManifest(ctx, keys.NewManifestTarget("", idKey, keys.Prefix), []byte("{}"), time.Now().UnixMilli()+10)
		j.orphans["list_1"] = true
		h.sync()
		for _, tg := range keys.IDListTargets("", idKey, h.s.opt.Schemas, "list_1") {
			if n, _ := h.redis.Client().Exists(ctx, tg.Key).Result(); n != 0 {
				t.Fatal("an orphaned list stayed")
			}
		}
		if len(j.orphans) != 0 {
			t.Fatalf("orphans left: %v", j.orphans)
		}
	})

	t.Run("a TTL left by an earlier setting is removed", func(t *testing.T) {
		h := newIDHarness(t, IDListOptions{})
		h.cdn.PutIDList(idKey, "list_1", "123", 0, []byte("+ungWv48B\n"))
		h.sync()
		tg := keys.NewIDListTarget("", idKey, keys.Hashed, "list_1")
		h.redis.Client().Expire(ctx, tg.Key, time.Hour)
		h.sync()
		if d, _ := h.redis.Client().TTL(ctx, tg.Key).Result(); d != -1 {
			t.Fatalf("TTL %v after a sync without REDIS_KEY_TTL", d)
		}
	})
}
