package writer

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// leakKey is long enough that its prefix-schema id (its first 20 characters)
// is only part of it.
var leakKey = keys.MustParse("secret-abc123XYZ0123456789example")

// assertNoSecret fails when text holds the key's prefix-schema id or any 12
// characters in a row of the secret.
func assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	secret := leakKey.Reveal()
	if strings.Contains(text, secret[:20]) {
		t.Errorf("%s quotes the key's first 20 characters: %q", what, text)
		return
	}
	for i := 0; i+12 <= len(secret); i++ {
		if strings.Contains(text, secret[i:i+12]) {
			t.Errorf("%s holds %q, 12 characters of the secret: %q", what, secret[i:i+12], text)
			return
		}
	}
}

func prefixTarget(f keys.Format) keys.Target {
	return keys.Layout{Formats: []keys.Format{f}, Schemas: []keys.Schema{keys.Prefix}}.Targets(leakKey, keys.V2)[0]
}

// Issue 11, item 7: the string script's WRONGTYPE reply quoted KEYS[1], whose
// prefix-schema name holds 20 characters of the secret; the error reached
// logs, /status and once's output.
func TestStringWrongTypeErrorHoldsNoKey(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	tg := prefixTarget(keys.String)
	srv.Client().HSet(ctx, tg.Key, "config", "an sfp payload")
	_, err := w.Write(ctx, tg, payload(5, "{}"))
	if err == nil {
		t.Fatal("string write over a hash succeeded")
	}
	assertNoSecret(t, "Write error", err.Error())
	if want := "v2 string/prefix target holds a hash, not a string"; err.Error() != want || !errors.Is(err, ErrWrongType) {
		t.Errorf("Write error = %q, want %q (ErrWrongType)", err, want)
	}
}

// Every way a target can be of the wrong type, through every operation that
// reports it, gives an error naming the target by version, format and schema
// only.
func TestWrongTypeErrorsHoldNoKey(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		tg    keys.Target
		setup func(rdb *redis.Client, tg keys.Target)
		want  string
	}{
		{"sfp over a string", prefixTarget(keys.SFP),
			func(rdb *redis.Client, tg keys.Target) { rdb.Set(ctx, tg.Key, "x", 0) },
			"v2 sfp/prefix target holds a string, not a hash"},
		{"node-redis over a list", prefixTarget(keys.NodeRedis),
			func(rdb *redis.Client, tg keys.Target) { rdb.RPush(ctx, tg.Key, "x") },
			"v2 node-redis/prefix target holds a list, not a hash"},
		{"string over a hash", prefixTarget(keys.String),
			func(rdb *redis.Client, tg keys.Target) { rdb.HSet(ctx, tg.Key, "f", "x") },
			"v2 string/prefix target holds a hash, not a string"},
		{"string whose lcut key is a hash", prefixTarget(keys.String),
			func(rdb *redis.Client, tg keys.Target) { rdb.HSet(ctx, tg.LcutRef, "f", "x") },
			"v2 string/prefix target's lcut key holds a hash, not a string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, srv := newWriter(t, 0)
			c.setup(srv.Client(), c.tg)
			_, err := w.Write(ctx, c.tg, payload(5, "{}"))
			if err == nil || err.Error() != c.want || !errors.Is(err, ErrWrongType) {
				t.Errorf("Write = %v, want %q", err, c.want)
			}
			if err != nil {
				assertNoSecret(t, "Write error", err.Error())
			}
			// Inspect asks for the string payload's length first: with no
			// payload the target is simply missing, and the write that
			// follows reports the lcut key.
			if c.name != "string whose lcut key is a hash" {
				st, err := w.Inspect(ctx, []keys.Target{c.tg})
				if err != nil || st[0].Err == nil || !errors.Is(st[0].Err, ErrWrongType) {
					t.Errorf("Inspect = %+v, %v; want a per-target ErrWrongType", st, err)
				} else {
					assertNoSecret(t, "Inspect error", st[0].Err.Error())
				}
			}
			_, err = w.Read(ctx, c.tg)
			if !errors.Is(err, ErrWrongType) {
				t.Errorf("Read = %v, want ErrWrongType", err)
			} else {
				assertNoSecret(t, "Read error", err.Error())
			}
		})
	}
}

// Redis 7.0 does not quote key names in its replies, but other versions and
// forks may (a verbose ACL refusal names "the '<key>' key"): a reply is
// scrubbed of the target's names and id, and stays a redis.Error.
func TestReplyIsScrubbed(t *testing.T) {
	tg := prefixTarget(keys.String)
	reply := replyError("NOPERM User populator has no permissions to access the '" + tg.Key + "' key; see '" + tg.LcutRef + "'")
	err := targetErr(tg, reply)
	assertNoSecret(t, "scrubbed reply", err.Error())
	var re redis.Error
	if !errors.As(err, &re) || !strings.HasPrefix(err.Error(), "v2 string/prefix target: NOPERM User populator") {
		t.Errorf("scrubbed = %q, want the target's description and a redis.Error", err)
	}
	// A bare id, e.g. in a module's reply, goes too.
	assertNoSecret(t, "scrubbed id", targetErr(tg, replyError("ERR bad id "+keys.Prefix.ID(leakKey))).Error())
	// Errors that quote nothing are left as they are, for errors.Is.
	if got := scrub(context.DeadlineExceeded, tg); got != context.DeadlineExceeded {
		t.Errorf("scrub changed an error without names: %v", got)
	}
}

// Issue 11: DecodeNodeRedis inflated without a bound, so a small value in the
// node-redis HASH made populator check allocate without limit.
func TestDecodeNodeRedisBomb(t *testing.T) {
	const n = 16 // MiB inflated
	bomb := fakecdn.ZlibBomb(n)
	if ratio := (n << 20) / len(bomb); ratio < 1000 {
		t.Fatalf("bomb ratio %d:1, want at least 1000:1", ratio)
	}
	// The bomb is a valid stream: it is refused for its size, not its form.
	zr, err := zlib.NewReader(bytes.NewReader(bomb))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.Copy(io.Discard, zr); err != nil || got != n<<20 {
		t.Fatalf("bomb inflates to %d bytes, %v; want %d", got, err, n<<20)
	}
	value := []byte(base64.StdEncoding.EncodeToString(bomb))

	const max = 1 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	out, err := DecodeNodeRedis(value, max)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrPayloadTooLarge) || out != nil || !strings.Contains(err.Error(), "more than 1048576 bytes") {
		t.Fatalf("DecodeNodeRedis(bomb) = %d bytes, %v; want ErrPayloadTooLarge", len(out), err)
	}
	// The buffer grows only as bytes arrive, up to the limit: a few MiB at
	// most (growth by doubling, the base64 copy), never the 16 MiB claimed.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 6<<20 {
		t.Errorf("decoding a bomb allocated %d bytes with a limit of %d", alloc, max)
	}

	// Exactly at the limit is accepted; one byte more is not.
	exact := EncodeNodeRedis(bytes.Repeat([]byte("x"), 4096))
	if got, err := DecodeNodeRedis(exact, 4096); err != nil || len(got) != 4096 {
		t.Errorf("payload of exactly the limit: %d bytes, %v", len(got), err)
	}
	if _, err := DecodeNodeRedis(exact, 4095); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("payload one byte over the limit: %v", err)
	}
}

// Read and ReadMany apply the writer's limit to node-redis values.
func TestReadBombInNodeRedisHash(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	w.SetMaxPayload(1 << 20)
	tg := prefixTarget(keys.NodeRedis)
	value := base64.StdEncoding.EncodeToString(fakecdn.ZlibBomb(16))
	srv.Client().HSet(ctx, tg.Key, tg.Field, value, tg.LcutRef, "1700000000000")
	e, err := w.Read(ctx, tg)
	if !errors.Is(err, ErrPayloadTooLarge) || e.Payload != nil || e.Size != len(value) || e.Lcut != 1700000000000 {
		t.Fatalf("Read of a bomb = payload %d bytes, size %d, lcut %d, %v; want ErrPayloadTooLarge", len(e.Payload), e.Size, e.Lcut, err)
	}
	assertNoSecret(t, "Read error", err.Error())
}

// ReadMany reads every target as Read does, in one round trip, with the
// statsig-br siblings; per-target problems stay in their entries.
func TestReadMany(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	rdb := srv.Client()
	other := keys.MustParse("secret-bbbbbbbbbbbbbbbbbbbbbbbb")
	layout := keys.Layout{Formats: []keys.Format{keys.SFP, keys.NodeRedis}, Schemas: []keys.Schema{keys.Hashed, keys.Prefix}}
	var targets []keys.Target
	for _, v := range []keys.Version{keys.V1, keys.V2} {
		targets = append(targets, layout.Targets(leakKey, v)...)
	}
	strTarget := keys.Layout{Prefix: "s:", Formats: []keys.Format{keys.String}, Schemas: []keys.Schema{keys.Prefix}}.Targets(leakKey, keys.V2)[0]
	missing := keys.Targets("", other, keys.V2, []keys.Schema{keys.Hashed})[0]
	wrong := keys.Targets("", other, keys.V1, []keys.Schema{keys.Prefix})[0]
	targets = append(targets, strTarget, missing, wrong)
	for i, tg := range targets[:len(targets)-2] {
		if _, err := w.Write(ctx, tg, payload(int64(1000+i), `{"i":`+string(rune('a'+i))+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	rdb.Set(ctx, wrong.Key, "x", 0)
	sfpV2 := targets[4] // v2 sfp/hashed
	rdb.Set(ctx, sfpV2.BRSibling(), "protobuf", 0)
	rdb.Set(ctx, missing.BRSibling(), "protobuf", 0)

	counted := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer counted.Close()
	hook := &pipelines{}
	counted.AddHook(hook)
	got, err := New(counted, 0).ReadMany(ctx, targets)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(targets) || hook.n != 1 {
		t.Fatalf("%d entries for %d targets in %d pipelines, want one", len(got), len(targets), hook.n)
	}
	for i, tg := range targets[:len(targets)-2] {
		e := got[i]
		want := `{"i":` + string(rune('a'+i)) + `}`
		if e.Err != nil || string(e.Payload) != want || e.Lcut != int64(1000+i) || e.Sibling != (tg == sfpV2) {
			t.Errorf("%s %s/%s: %+v, want %s lcut %d", tg.Version, tg.Format, tg.Schema, e, want, 1000+i)
		}
		one, err := w.Read(ctx, tg)
		if err != nil || string(one.Payload) != string(e.Payload) || one.Lcut != e.Lcut || one.Size != e.Size {
			t.Errorf("Read differs from ReadMany: %+v vs %+v (%v)", one, e, err)
		}
	}
	if e := got[len(got)-2]; e.Err != nil || e.Payload != nil || e.Lcut != 0 || !e.Sibling {
		t.Errorf("missing target with a sibling: %+v", e)
	}
	if e := got[len(got)-1]; !errors.Is(e.Err, ErrWrongType) || e.Payload != nil {
		t.Errorf("target of another type: %+v", e)
	}

	srv.Kill()
	if _, err := w.ReadMany(ctx, targets); err == nil {
		t.Error("ReadMany with Redis down returned no error")
	}
}

// pipelines counts the pipelines of commands a client sends (one round trip
// each on a single server).
type pipelines struct{ n int }

func (*pipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*pipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		// go-redis pipelines its connection set-up (CLIENT SETINFO) too.
		if cmds[0].Name() != "client" {
			h.n++
		}
		return next(ctx, cmds)
	}
}

// A Redis that refuses the client's credentials fails the whole batch: no
// entry may read as merely missing. (go-redis fails such a pipeline before
// any command is queued on a connection.)
func TestReadManyRefusedCredentials(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, "--requirepass", "the-right-one")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "a-wrong-one", MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	es, err := New(rdb, 0).ReadMany(ctx, []keys.Target{prefixTarget(keys.SFP), prefixTarget(keys.String)})
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("ReadMany with a wrong password = %+v, %v; want a WRONGPASS error", es, err)
	}
	assertNoSecret(t, "ReadMany error", err.Error())
}
