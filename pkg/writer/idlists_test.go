package writer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func idTarget(name string) keys.IDListTarget {
	return keys.NewIDListTarget("", leakKey, keys.Prefix, name)
}

func mustIDList(t *testing.T, res IDListWrite, err error, want IDListWrite) {
	t.Helper()
	if err != nil {
		t.Fatalf("error %v, want %+v", err, want)
	}
	if res != want {
		t.Fatalf("got %+v, want %+v", res, want)
	}
}

// written fails the test unless the call wrote.
func written(t *testing.T) func(IDListWrite, error) {
	return func(res IDListWrite, err error) {
		t.Helper()
		if err != nil || !res.Written {
			t.Fatalf("not written: %+v, %v", res, err)
		}
	}
}

func readOne(t *testing.T, w *Writer, tg keys.IDListTarget) IDListState {
	t.Helper()
	st, err := w.ReadIDLists(context.Background(), []keys.IDListTarget{tg})
	if err != nil {
		t.Fatal(err)
	}
	return st[0]
}

func TestIDListAppendSequence(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	tg := idTarget("list_1")
	rdb := srv.Client()

	// An offset past an absent list is refused.
	res, err := w.AppendIDList(ctx, tg, "F1", 10, []byte("+b\n"))
	mustIDList(t, res, err, IDListWrite{Written: false, Length: 0, FileID: ""})
	res, err = w.AppendIDList(ctx, tg, "F1", 0, []byte("+ungWv48B\n"))
	mustIDList(t, res, err, IDListWrite{Written: true, Length: 10, FileID: "F1"})
	// The same chunk again (a retry, a racing replica): refused.
	res, err = w.AppendIDList(ctx, tg, "F1", 0, []byte("+ungWv48B\n"))
	mustIDList(t, res, err, IDListWrite{Written: false, Length: 10, FileID: "F1"})
	res, err = w.AppendIDList(ctx, tg, "F1", 10, []byte("+Ngi8oeRO\n"))
	mustIDList(t, res, err, IDListWrite{Written: true, Length: 20, FileID: "F1"})
	res, err = w.AppendIDList(ctx, tg, "F1", 10, []byte("+Ngi8oeRO\n"))
	mustIDList(t, res, err, IDListWrite{Written: false, Length: 20, FileID: "F1"})
	// A stale fileID, at the right offset or at 0: refused (a new file goes
	// through Stage/Commit).
	res, err = w.AppendIDList(ctx, tg, "F0", 20, []byte("-ungWv48B\n"))
	mustIDList(t, res, err, IDListWrite{Written: false, Length: 20, FileID: "F1"})
	res, err = w.AppendIDList(ctx, tg, "F2", 0, []byte("+zzz\n"))
	mustIDList(t, res, err, IDListWrite{Written: false, Length: 20, FileID: "F1"})
	// An offset short of or past the stored length: refused.
	for _, off := range []int64{19, 21, 5} {
		res, err = w.AppendIDList(ctx, tg, "F1", off, []byte("-ungWv48B\n"))
		mustIDList(t, res, err, IDListWrite{Written: false, Length: 20, FileID: "F1"})
	}
	res, err = w.AppendIDList(ctx, tg, "F1", 20, []byte("-ungWv48B\n"))
	mustIDList(t, res, err, IDListWrite{Written: true, Length: 30, FileID: "F1"})

	if got := rdb.Get(ctx, tg.Key).Val(); got != "+ungWv48B\n+Ngi8oeRO\n-ungWv48B\n" {
		t.Errorf("list = %q", got)
	}
	if st := readOne(t, w, tg); st != (IDListState{Length: 30, FileID: "F1", First: '+'}) {
		t.Errorf("ReadIDLists = %+v", st)
	}
	if pttl := rdb.PTTL(ctx, tg.Key).Val(); pttl >= 0 {
		t.Errorf("list has a TTL %v with ttl 0", pttl)
	}

	// Nothing is ever written empty; negative offsets are refused.
	if _, err := w.AppendIDList(ctx, idTarget("empty"), "F1", 0, nil); !errors.Is(err, ErrEmptyChunk) {
		t.Errorf("empty append: %v", err)
	}
	if _, err := w.AppendIDList(ctx, tg, "F1", -1, []byte("+x\n")); !errors.Is(err, ErrBadOffset) {
		t.Errorf("negative offset: %v", err)
	}
	if n := rdb.Exists(ctx, idTarget("empty").Key).Val(); n != 0 {
		t.Errorf("an empty list was created")
	}

	// A list whose fileID companion was lost (evicted) is refused rather
	// than extended: the caller replaces it.
	rdb.Del(ctx, tg.FileIDKey)
	res, err = w.AppendIDList(ctx, tg, "F1", 30, []byte("+x\n"))
	mustIDList(t, res, err, IDListWrite{Written: false, Length: 30, FileID: ""})

	// A list missing while its fileID stayed (evicted): offset 0 starts it.
	rdb.Set(ctx, tg.FileIDKey, "F1", 0)
	rdb.Del(ctx, tg.Key)
	res, err = w.AppendIDList(ctx, tg, "F1", 0, []byte("+x\n"))
	mustIDList(t, res, err, IDListWrite{Written: true, Length: 3, FileID: "F1"})
}

// Replicas racing to append the same file, chunk by chunk, from whatever
// length they last saw: the stored list is the file, exactly once.
func TestIDListAppendRacingReplicas(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	tg := idTarget("race")
	var file strings.Builder
	var chunks [][]byte
	for i := 0; i < 50; i++ {
		c := fmt.Sprintf("+id%04d\n-old%04d\n", i, i)
		chunks = append(chunks, []byte(c))
		file.WriteString(c)
	}
	var wg sync.WaitGroup
	var written atomic.Int64
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var off int64
			for i := 0; i < len(chunks); {
				res, err := w.AppendIDList(ctx, tg, "F1", off, chunks[i])
				if err != nil {
					t.Error(err)
					return
				}
				if res.Written {
					written.Add(1)
				}
				// Either way, the stored length says where to go on.
				off = res.Length
				i = 0
				for n := int64(0); i < len(chunks) && n < off; i++ {
					n += int64(len(chunks[i]))
				}
			}
		}()
	}
	wg.Wait()
	if got := srv.Client().Get(ctx, tg.Key).Val(); got != file.String() {
		t.Errorf("list after racing appends is not the file (%d bytes, want %d)", len(got), file.Len())
	}
	if written.Load() != int64(len(chunks)) {
		t.Errorf("%d appends written, want %d", written.Load(), len(chunks))
	}
}

func TestIDListReplaceVisibleWhole(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	rdb := srv.Client()
	tg := idTarget("list_1")
	old := "+a\n+b\n+c\n"
	written(t)(w.AppendIDList(ctx, tg, "F1", 0, []byte(old)))

	var parts []string
	var whole strings.Builder
	for i := 0; i < 200; i++ {
		p := fmt.Sprintf("+new%05d\n", i)
		parts = append(parts, p)
		whole.WriteString(p)
	}

	// A reader polls the list throughout: it sees the old list or the new
	// one, never part of the stage.
	stop := make(chan struct{})
	var bad atomic.Value
	var reads atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer r.Close()
		for {
			select {
			case <-stop:
				return
			default:
			}
			v, err := r.Get(ctx, tg.Key).Result()
			reads.Add(1)
			if err != nil || (v != old && v != whole.String()) {
				bad.Store(fmt.Sprintf("reader saw %d bytes (err %v)", len(v), err))
				return
			}
		}
	}()

	var off int64
	for i, p := range parts {
		res, err := w.StageIDList(ctx, tg, "tokA", off, []byte(p))
		mustIDList(t, res, err, IDListWrite{Written: true, Length: off + int64(len(p)), Token: "tokA"})
		off = res.Length
		if i == 0 {
			// A retried chunk is refused.
			res, err = w.StageIDList(ctx, tg, "tokA", 0+1, []byte(p))
			mustIDList(t, res, err, IDListWrite{Written: false, Length: off, Token: "tokA"})
			// Another writer's token, at the right offset: refused.
			res, err = w.StageIDList(ctx, tg, "tokB", off, []byte(p))
			mustIDList(t, res, err, IDListWrite{Written: false, Length: off, Token: "tokA"})
		}
		if i == 100 {
			if st := readOne(t, w, tg); st != (IDListState{Length: int64(len(old)), FileID: "F1", First: '+', Staged: off}) {
				t.Errorf("mid-stage ReadIDLists = %+v", st)
			}
			if pttl := rdb.PTTL(ctx, tg.StagingKey).Val(); pttl <= 0 || pttl > IDListStageTTL {
				t.Errorf("staging PTTL %v", pttl)
			}
		}
	}
	// Wrong length, wrong token, another writer's abort: refused, nothing
	// changes.
	res, err := w.CommitIDList(ctx, tg, "tokA", "F2", off-1)
	mustIDList(t, res, err, IDListWrite{Written: false, Length: off, Token: "tokA"})
	res, err = w.CommitIDList(ctx, tg, "tokB", "F2", off)
	mustIDList(t, res, err, IDListWrite{Written: false, Length: off, Token: "tokA"})
	res, err = w.AbortIDList(ctx, tg, "tokB")
	mustIDList(t, res, err, IDListWrite{Written: false, Length: off, Token: "tokA"})
	if _, err := w.CommitIDList(ctx, tg, "tokA", "F2", 0); !errors.Is(err, ErrEmptyChunk) {
		t.Errorf("commit of length 0: %v", err)
	}
	time.Sleep(20 * time.Millisecond) // let the reader look at the old list a while
	res, err = w.CommitIDList(ctx, tg, "tokA", "F2", off)
	mustIDList(t, res, err, IDListWrite{Written: true, Length: off, FileID: "F2"})
	time.Sleep(20 * time.Millisecond)
	close(stop)
	<-done
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	t.Logf("%d reads during the stage and commit", reads.Load())

	if got := rdb.Get(ctx, tg.Key).Val(); got != whole.String() {
		t.Errorf("list after commit: %d bytes, want %d", len(got), whole.Len())
	}
	if st := readOne(t, w, tg); st != (IDListState{Length: off, FileID: "F2", First: '+'}) {
		t.Errorf("ReadIDLists after commit = %+v", st)
	}
	// The stage's TTL did not follow it onto the list; the token is gone.
	if pttl := rdb.PTTL(ctx, tg.Key).Val(); pttl >= 0 {
		t.Errorf("list PTTL %v after commit, want none", pttl)
	}
	if n := rdb.Exists(ctx, tg.StagingKey, tg.StagingTokenKey).Val(); n != 0 {
		t.Errorf("%d staging keys left after commit", n)
	}
	// Committing again (a retry) is refused and changes nothing.
	res, err = w.CommitIDList(ctx, tg, "tokA", "F2", off)
	mustIDList(t, res, err, IDListWrite{Written: false, Length: 0, Token: ""})
	// Appends continue under the new fileID.
	res, err = w.AppendIDList(ctx, tg, "F2", off, []byte("-new00000\n"))
	mustIDList(t, res, err, IDListWrite{Written: true, Length: off + 10, FileID: "F2"})
}

// Two writers replacing the same list: the later start takes the stage
// over, the earlier one is refused at its next chunk and at its commit, and
// the list never mixes their bytes.
func TestIDListStageTakeoverAndAbort(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	rdb := srv.Client()
	tg := idTarget("list_1")

	written(t)(w.StageIDList(ctx, tg, "A", 0, []byte("+a1\n")))
	written(t)(w.StageIDList(ctx, tg, "B", 0, []byte("+b1\n")))
	res, err := w.StageIDList(ctx, tg, "A", 4, []byte("+a2\n"))
	mustIDList(t, res, err, IDListWrite{Written: false, Length: 4, Token: "B"})
	res, err = w.CommitIDList(ctx, tg, "A", "FA", 4)
	mustIDList(t, res, err, IDListWrite{Written: false, Length: 4, Token: "B"})
	res, err = w.StageIDList(ctx, tg, "B", 4, []byte("+b2\n"))
	mustIDList(t, res, err, IDListWrite{Written: true, Length: 8, Token: "B"})
	res, err = w.CommitIDList(ctx, tg, "B", "FB", 8)
	mustIDList(t, res, err, IDListWrite{Written: true, Length: 8, FileID: "FB"})
	if got := rdb.Get(ctx, tg.Key).Val(); got != "+b1\n+b2\n" {
		t.Errorf("list = %q", got)
	}

	// Abort: own stage goes, the list stays.
	written(t)(w.StageIDList(ctx, tg, "C", 0, []byte("+c\n")))
	res, err = w.AbortIDList(ctx, tg, "C")
	mustIDList(t, res, err, IDListWrite{Written: true, Length: 3, Token: "C"})
	if n := rdb.Exists(ctx, tg.StagingKey, tg.StagingTokenKey).Val(); n != 0 {
		t.Errorf("%d staging keys left after abort", n)
	}
	// "" aborts whatever stage there is.
	written(t)(w.StageIDList(ctx, tg, "D", 0, []byte("+d\n")))
	res, err = w.AbortIDList(ctx, tg, "")
	mustIDList(t, res, err, IDListWrite{Written: true, Length: 3, Token: "D"})
	if st := readOne(t, w, tg); st != (IDListState{Length: 8, FileID: "FB", First: '+'}) {
		t.Errorf("ReadIDLists = %+v", st)
	}

	// Delete removes the list, its fileID and any stage.
	written(t)(w.StageIDList(ctx, tg, "E", 0, []byte("+e\n")))
	if err := w.DeleteIDList(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, tg.Key, tg.FileIDKey, tg.StagingKey, tg.StagingTokenKey).Val(); n != 0 {
		t.Errorf("%d keys left after DeleteIDList", n)
	}
	if st := readOne(t, w, tg); st != (IDListState{}) {
		t.Errorf("ReadIDLists after delete = %+v", st)
	}
}

func TestIDListTTL(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, time.Hour)
	rdb := srv.Client()
	tg := idTarget("ttl")
	written(t)(w.AppendIDList(ctx, tg, "F1", 0, []byte("+a\n")))
	for _, k := range []string{tg.Key, tg.FileIDKey} {
		if pttl := rdb.PTTL(ctx, k).Val(); pttl <= 59*time.Minute || pttl > time.Hour {
			t.Errorf("PTTL after append %v", pttl)
		}
	}
	written(t)(w.StageIDList(ctx, tg, "A", 0, []byte("+b\n")))
	written(t)(w.CommitIDList(ctx, tg, "A", "F2", 3))
	for _, k := range []string{tg.Key, tg.FileIDKey} {
		if pttl := rdb.PTTL(ctx, k).Val(); pttl <= 59*time.Minute || pttl > time.Hour {
			t.Errorf("PTTL after commit %v (the writer's TTL, not the stage's)", pttl)
		}
	}
}

func TestIDListManifestOrderGuard(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	mt := keys.NewManifestTarget("", leakKey, keys.Prefix)
	steps := []struct {
		json   string
		marker int64
		want   ManifestWrite
		stored string
	}{
		{`{"a":{}}`, 5, ManifestWrite{Written: true, Stored: 5}, `{"a":{}}`},
		{`{"old":{}}`, 4, ManifestWrite{Written: false, Stored: 5}, `{"a":{}}`},
		{`{"same":{}}`, 5, ManifestWrite{Written: false, Stored: 5}, `{"a":{}}`},
		{`{"a":{},"b":{}}`, 6, ManifestWrite{Written: true, Stored: 6}, `{"a":{},"b":{}}`},
	}
	for i, s := range steps {
		got, err := w.WriteIDListManifest(ctx, mt, []byte(s.json), s.marker)
		if err != nil || got != s.want {
			t.Fatalf("step %d: %+v, %v; want %+v", i, got, err, s.want)
		}
		config, marker, err := w.ReadIDListManifest(ctx, mt)
		if err != nil || string(config) != s.stored || marker != s.want.Stored {
			t.Fatalf("step %d: read %q %d %v", i, config, marker, err)
		}
	}
	if enc := srv.Client().HGet(ctx, mt.Key, "encoding").Val(); enc != "plain_text" {
		t.Errorf("encoding = %q", enc)
	}
	// A HASH whose config was deleted by hand is rewritten whatever its marker.
	srv.Client().HDel(ctx, mt.Key, "config")
	got, err := w.WriteIDListManifest(ctx, mt, []byte(`{}`), 1)
	if err != nil || !got.Written {
		t.Errorf("rewrite of a HASH without config: %+v %v", got, err)
	}
	if err := w.DeleteIDListManifest(ctx, mt); err != nil {
		t.Fatal(err)
	}
	if config, marker, err := w.ReadIDListManifest(ctx, mt); config != nil || marker != 0 || err != nil {
		t.Errorf("after delete: %q %d %v", config, marker, err)
	}
}

// Every ID-list operation reaching a key of another type reports it by list
// name and schema, never by key name (a prefix-schema name holds 20
// characters of the secret SDK key).
func TestIDListErrorsHoldNoKey(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	rdb := srv.Client()
	tg := idTarget("list_1")
	mt := keys.NewManifestTarget("", leakKey, keys.Prefix)
	cases := []struct {
		name  string
		setup func()
		run   func() error
		want  string
	}{
		{"append over a hash list", func() { rdb.HSet(ctx, tg.Key, "x", "y") },
			func() error { _, err := w.AppendIDList(ctx, tg, "F", 0, []byte("+a\n")); return err },
			`id list "list_1" (prefix): list holds a hash, not a string`},
		{"append with a hash fileid", func() { rdb.HSet(ctx, tg.FileIDKey, "x", "y") },
			func() error { _, err := w.AppendIDList(ctx, tg, "F", 0, []byte("+a\n")); return err },
			`id list "list_1" (prefix): fileid holds a hash, not a string`},
		{"stage over a set", func() { rdb.SAdd(ctx, tg.StagingKey, "x") },
			func() error { _, err := w.StageIDList(ctx, tg, "T", 0, []byte("+a\n")); return err },
			`id list "list_1" (prefix): staging holds a set, not a string`},
		{"stage with a list token", func() { rdb.LPush(ctx, tg.StagingTokenKey, "x") },
			func() error { _, err := w.StageIDList(ctx, tg, "T", 0, []byte("+a\n")); return err },
			`id list "list_1" (prefix): token holds a list, not a string`},
		{"commit over a hash list", func() {
			rdb.Set(ctx, tg.StagingKey, "+a\n", 0)
			rdb.Set(ctx, tg.StagingTokenKey, "T", 0)
			rdb.HSet(ctx, tg.Key, "x", "y")
		},
			func() error { _, err := w.CommitIDList(ctx, tg, "T", "F", 3); return err },
			`id list "list_1" (prefix): list holds a hash, not a string`},
		{"abort with a hash staging", func() { rdb.HSet(ctx, tg.StagingKey, "x", "y") },
			func() error { _, err := w.AbortIDList(ctx, tg, ""); return err },
			`id list "list_1" (prefix): staging holds a hash, not a string`},
		{"read a hash list", func() { rdb.HSet(ctx, tg.Key, "x", "y") },
			func() error {
				st, err := w.ReadIDLists(ctx, []keys.IDListTarget{tg})
				if err != nil {
					return fmt.Errorf("batch failed: %w", err)
				}
				return st[0].Err
			},
			`id list "list_1" (prefix): list holds a key of another type, not a string`},
		{"read a hash fileid", func() { rdb.HSet(ctx, tg.FileIDKey, "x", "y") },
			func() error {
				st, err := w.ReadIDLists(ctx, []keys.IDListTarget{tg})
				if err != nil {
					return fmt.Errorf("batch failed: %w", err)
				}
				return st[0].Err
			},
			`id list "list_1" (prefix): fileid holds a key of another type, not a string`},
		{"manifest over a string", func() { rdb.Set(ctx, mt.Key, "x", 0) },
			func() error { _, err := w.WriteIDListManifest(ctx, mt, []byte("{}"), 1); return err },
			`id lists manifest (prefix): manifest holds a string, not a hash`},
		{"read a string manifest", func() { rdb.Set(ctx, mt.Key, "x", 0) },
			func() error { _, _, err := w.ReadIDListManifest(ctx, mt); return err },
			`id lists manifest (prefix) holds a key of another type`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv.FlushAll()
			c.setup()
			err := c.run()
			if err == nil {
				t.Fatal("no error")
			}
			assertNoSecret(t, c.name, err.Error())
			var te *TargetError
			if err.Error() != c.want || !errors.Is(err, ErrWrongType) || !errors.As(err, &te) || te.Schema != keys.Prefix {
				t.Errorf("error %q, want %q (ErrWrongType, a *TargetError)", err, c.want)
			}
		})
	}

	// A reply that quotes a key is scrubbed.
	e := scrubNames(replyError("NOPERM no permissions to access the '"+tg.FileIDKey+"' key"), tg.Key, tg.FileIDKey)
	assertNoSecret(t, "scrubbed reply", idListErr(keys.Prefix, "list_1", e).Error())
	var re redis.Error
	if !errors.As(e, &re) {
		t.Errorf("a scrubbed reply is no longer a redis.Error")
	}
	// A failure to reach Redis: no key either.
	srv.Kill()
	_, err := w.AppendIDList(ctx, tg, "F", 0, []byte("+a\n"))
	if err == nil {
		t.Fatal("append with Redis down succeeded")
	}
	assertNoSecret(t, "unreachable", err.Error())
	if !IsUnreachable(err) {
		t.Errorf("append with Redis down: %v is not IsUnreachable", err)
	}
}

// On a real cluster every script runs (no CROSSSLOT): the list and its
// companions share a slot, for many names, both schemas and several prefixes.
func TestIDListCluster(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	w := New(clusterClient(t, c, nil), 0)
	var all []keys.IDListTarget
	slots := map[int]bool{}
	for _, prefix := range []string{"", "team-a:", "{tenant}:"} {
		for i := 0; i < 12; i++ {
			for _, s := range []keys.Schema{keys.Hashed, keys.Prefix} {
				k := keys.MustParse(fmt.Sprintf("secret-cluster%04dabcdefghijklmn", i))
				tg := keys.NewIDListTarget(prefix, k, s, fmt.Sprintf("list_%d", i))
				all = append(all, tg)
				slot := c.Slot(t, tg.Key)
				slots[slot] = true
				for _, comp := range []string{tg.FileIDKey, tg.StagingKey, tg.StagingTokenKey} {
					if got := c.Slot(t, comp); got != slot {
						t.Fatalf("CLUSTER KEYSLOT of a companion %d, of its list %d", got, slot)
					}
				}
				written(t)(w.AppendIDList(ctx, tg, "F1", 0, []byte("+a\n")))
				written(t)(w.AppendIDList(ctx, tg, "F1", 3, []byte("+b\n")))
				written(t)(w.StageIDList(ctx, tg, "T", 0, []byte("+c\n")))
				written(t)(w.StageIDList(ctx, tg, "T", 3, []byte("+d\n")))
				written(t)(w.CommitIDList(ctx, tg, "T", "F2", 6))
				written(t)(w.StageIDList(ctx, tg, "U", 0, []byte("+e\n")))
				written(t)(w.AbortIDList(ctx, tg, "U"))
				mt := keys.NewManifestTarget(prefix, k, s)
				if res, err := w.WriteIDListManifest(ctx, mt, []byte(`{}`), 7); err != nil || !res.Written {
					t.Fatalf("manifest: %+v %v", res, err)
				}
			}
		}
	}
	if len(slots) < 10 {
		t.Errorf("targets only in %d slots", len(slots))
	}
	st, err := w.ReadIDLists(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if s != (IDListState{Length: 6, FileID: "F2", First: '+'}) {
			t.Errorf("target %d: %+v", i, s)
		}
	}
	for _, tg := range all {
		if err := w.DeleteIDList(ctx, tg); err != nil {
			t.Fatal(err)
		}
	}
	st, err = w.ReadIDLists(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if s != (IDListState{}) {
			t.Errorf("target %d after delete: %+v", i, s)
		}
	}
}
