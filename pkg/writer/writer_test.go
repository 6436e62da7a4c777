package writer

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

const key = "statsig|/v2/download_config_specs|plain_text|abc"

var target = keys.Target{Format: keys.SFP, Key: key}

func payload(lcut int64, body string) *Payload { return &Payload{Body: []byte(body), Lcut: lcut} }

func newWriter(t *testing.T, ttl time.Duration) (*Writer, *redistest.Server) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return New(rdb, ttl), srv
}

func TestWriteIsMonotonic(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	rdb := srv.Client()

	steps := []struct {
		lcut        int64
		payload     string
		wantWritten bool
		wantStored  int64
		wantConfig  string
	}{
		{1000, `{"time":1000}`, true, 1000, `{"time":1000}`},
		{1000, `{"time":1000,"same":1}`, false, 1000, `{"time":1000}`}, // equal lcut never replaces
		{999, `{"time":999}`, false, 1000, `{"time":1000}`},            // older never replaces
		{2000, `{"time":2000}`, true, 2000, `{"time":2000}`},
	}
	for i, s := range steps {
		res, err := w.Write(ctx, target, payload(s.lcut, s.payload))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if res.Written != s.wantWritten || res.Stored != s.wantStored {
			t.Errorf("step %d: got %+v, want written=%v stored=%d", i, res, s.wantWritten, s.wantStored)
		}
		got := rdb.HGetAll(ctx, key).Val()
		want := map[string]string{"config": s.wantConfig, "lcut": strconv.FormatInt(s.wantStored, 10), "encoding": "plain_text"}
		if len(got) != 3 || got["config"] != want["config"] || got["lcut"] != want["lcut"] || got["encoding"] != "plain_text" {
			t.Errorf("step %d: hash = %v, want %v", i, got, want)
		}
	}
	if ttl := rdb.TTL(ctx, key).Val(); ttl != -1 {
		t.Errorf("TTL with ttl 0 = %v, want none (-1)", ttl)
	}
}

func TestWriteReplacesHashWithoutConfig(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	// A hash with an lcut but no payload is not a payload: it must not block writes.
	srv.Client().HSet(ctx, key, "lcut", "9999999999999")
	res, err := w.Write(ctx, target, payload(10, "{}"))
	if err != nil || !res.Written {
		t.Fatalf("Write over a hash without config = %+v, %v; want written", res, err)
	}
}

func TestWriteRefusesOtherTypes(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	srv.Client().Set(ctx, key, "someone else's string", 0)
	_, err := w.Write(ctx, target, payload(10, "{}"))
	if !errors.Is(err, ErrWrongType) || err.Error() != "sfp target holds a string, not a hash" {
		t.Fatalf("Write over a string = %v, want ErrWrongType", err)
	}
	if v := srv.Client().Get(ctx, key).Val(); v != "someone else's string" {
		t.Fatalf("string was changed to %q", v)
	}
}

func TestWriteSetsAndRefreshesTTL(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, time.Hour)
	rdb := srv.Client()
	if _, err := w.Write(ctx, target, payload(1, "{}")); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl < 59*time.Minute || ttl > time.Hour {
		t.Fatalf("TTL after write = %v, want about 1h", ttl)
	}
	rdb.PExpire(ctx, key, time.Minute)
	if err := w.Touch(ctx, []keys.Target{target, {Key: "missing"}}); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl < 59*time.Minute {
		t.Fatalf("TTL after Touch = %v, want refreshed to about 1h", ttl)
	}
	if rdb.Exists(ctx, "missing").Val() != 0 {
		t.Fatal("Touch created a key")
	}
	// Switching to "never expire" clears the TTL on the next touch.
	if err := New(w.rdb, 0).Touch(ctx, []keys.Target{target}); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.TTL(ctx, key).Val(); ttl != -1 {
		t.Fatalf("TTL after Touch with ttl 0 = %v, want none", ttl)
	}
}

func TestInspect(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	rdb := srv.Client()
	if _, err := w.Write(ctx, keys.Target{Key: "a"}, payload(1234, `{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	rdb.Set(ctx, "str", "x", 0)
	rdb.HSet(ctx, "nolcut", "config", "{}")
	got, err := w.Inspect(ctx, []keys.Target{{Key: "a"}, {Key: "missing"}, {Key: "str"}, {Key: "nolcut"}})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != (Stored{Lcut: 1234}) || !got[0].Present() {
		t.Errorf("a = %+v", got[0])
	}
	if got[1] != (Stored{}) || got[1].Present() {
		t.Errorf("missing = %+v", got[1])
	}
	if got[2].Err == nil || got[2].Present() {
		t.Errorf("string key = %+v, want a per-key error", got[2])
	}
	if got[3].Present() {
		t.Errorf("hash without lcut = %+v, want not present", got[3])
	}

	srv.Kill()
	if _, err := w.Inspect(ctx, []keys.Target{{Key: "a"}}); err == nil {
		t.Error("Inspect with Redis down returned no error")
	}
}

func TestWriteSurvivesScriptCacheLoss(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	if _, err := w.Write(ctx, target, payload(1, "{}")); err != nil {
		t.Fatal(err)
	}
	srv.Restart() // a new server has an empty script cache: EVALSHA answers NOSCRIPT
	res, err := w.Write(ctx, target, payload(2, "{}"))
	if err != nil || !res.Written {
		t.Fatalf("Write after restart = %+v, %v", res, err)
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	rdb := srv.Client()
	y := keys.Targets("", keys.MustParse("secret-aaaaaaaaaaaaaaaa"), keys.V2, []keys.Schema{keys.Hashed})[0]
	rdb.HSet(ctx, y.Key, "config", "1")
	rdb.Set(ctx, y.BRSibling(), "1", 0)
	rdb.Set(ctx, "s", "1", 0)
	rdb.Set(ctx, "s-lcut", "1", 0)
	rdb.HSet(ctx, "shared", "f", "1", "f|lcut", "1", "other", "kept")
	targets := []keys.Target{
		y,
		{Format: keys.String, Key: "s", LcutRef: "s-lcut"},
		{Format: keys.NodeRedis, Key: "shared", Field: "f", LcutRef: "f|lcut"},
		{Format: keys.SFP, Key: "z"},
	}
	if err := w.Delete(ctx, targets); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, y.Key, y.BRSibling(), "s", "s-lcut").Val(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
	if got := rdb.HGetAll(ctx, "shared").Val(); len(got) != 1 || got["other"] != "kept" {
		t.Fatalf("shared hash = %v, want only the other field", got)
	}
}
