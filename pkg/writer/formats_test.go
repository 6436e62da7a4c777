package writer

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Every format keeps the same guarantees: monotonic, atomic, refuses other
// types, reads back exactly what was written.
func TestFormatsAreMonotonic(t *testing.T) {
	k := keys.MustParse("secret-abc123XYZ0123456789example")
	layout := keys.Layout{Prefix: "p:", Formats: []keys.Format{keys.SFP, keys.NodeRedis}, Schemas: []keys.Schema{keys.Hashed, keys.Prefix}}
	targets := layout.Targets(k, keys.V1)
	targets = append(targets, keys.Layout{Prefix: "q:", Formats: []keys.Format{keys.String}, Schemas: []keys.Schema{keys.Hashed}}.Targets(k, keys.V1)...)
	for _, tg := range targets {
		t.Run(string(tg.Format)+"/"+string(tg.Schema), func(t *testing.T) {
			ctx := context.Background()
			w, _ := newWriter(t, 0)
			steps := []struct {
				lcut        int64
				body        string
				wantWritten bool
				wantBody    string
			}{
				{1000, `{"time":1000}`, true, `{"time":1000}`},
				{1000, `{"time":1000,"b":1}`, false, `{"time":1000}`},
				{999, `{"time":999}`, false, `{"time":1000}`},
				{2000, `{"time":2000}`, true, `{"time":2000}`},
			}
			for i, s := range steps {
				res, err := w.Write(ctx, tg, payload(s.lcut, s.body))
				if err != nil || res.Written != s.wantWritten {
					t.Fatalf("step %d: %+v %v", i, res, err)
				}
				e, err := w.Read(ctx, tg)
				if err != nil || string(e.Payload) != s.wantBody || e.Lcut != max(s.lcut, 1000) && s.wantWritten {
					t.Fatalf("step %d: read %q lcut %d %v", i, e.Payload, e.Lcut, err)
				}
				st, err := w.Inspect(ctx, []keys.Target{tg})
				if err != nil || !st[0].Present() || st[0].Lcut != e.Lcut {
					t.Fatalf("step %d: inspect %+v vs read %+v", i, st, e)
				}
			}
			if err := w.Delete(ctx, []keys.Target{tg}); err != nil {
				t.Fatal(err)
			}
			if st, _ := w.Inspect(ctx, []keys.Target{tg}); st[0].Present() {
				t.Fatal("present after Delete")
			}
		})
	}
}

// Two node-redis targets share one HASH without disturbing each other.
func TestNodeRedisSharedHash(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, time.Hour)
	a := keys.Layout{Formats: []keys.Format{keys.NodeRedis}, Schemas: []keys.Schema{keys.Hashed}}.Targets(keys.MustParse("secret-aaaaaaaaaaaaaaaa"), keys.V1)[0]
	b := keys.Layout{Formats: []keys.Format{keys.NodeRedis}, Schemas: []keys.Schema{keys.Hashed}}.Targets(keys.MustParse("secret-bbbbbbbbbbbbbbbb"), keys.V1)[0]
	if _, err := w.Write(ctx, a, payload(5, `{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(ctx, b, payload(3, `{"b":1}`)); err != nil {
		t.Fatal(err)
	}
	fields := srv.Client().HKeys(ctx, "statsig-redis").Val()
	if len(fields) != 4 {
		t.Fatalf("hash fields = %v, want two payloads and two lcuts", fields)
	}
	// The stored value is what statsig-node-redis reads: base64 of a zlib stream.
	raw := srv.Client().HGet(ctx, "statsig-redis", a.Field).Val()
	z, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(z) < 2 || z[0] != 0x78 || (int(z[0])<<8|int(z[1]))%31 != 0 {
		t.Errorf("value %q is not a zlib stream (RFC 1950 header 0x78..) in standard base64", raw)
	}
	dec, err := DecodeNodeRedis([]byte(raw), 0)
	if err != nil || string(dec) != `{"a":1}` {
		t.Fatalf("decoded %q, %v", dec, err)
	}
	if ttl := srv.Client().PTTL(ctx, "statsig-redis").Val(); ttl < 59*time.Minute {
		t.Errorf("hash TTL = %v", ttl)
	}
}

// A value written by Node's zlib.deflateSync (level 6) decodes too.
func TestDecodeNodeRedisFromNode(t *testing.T) {
	got, err := DecodeNodeRedis([]byte("eJyrVspILI4vLUhJLEktVrIqKSpN1VEqycxNVbIyrAUAoX0KUg=="), 0)
	if err != nil || string(got) != `{"has_updates":true,"time":1}` {
		t.Fatalf("decoded %q, %v", got, err)
	}
}

func TestStringRefusesHash(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	tg := keys.Layout{Formats: []keys.Format{keys.String}, Schemas: []keys.Schema{keys.Hashed}}.Targets(keys.MustParse("secret-aaaaaaaaaaaaaaaa"), keys.V1)[0]
	srv.Client().HSet(ctx, tg.Key, "config", "an sfp payload")
	_, err := w.Write(ctx, tg, payload(5, "{}"))
	if !errors.Is(err, ErrWrongType) || err.Error() != "v1 string/hashed target holds a hash, not a string" {
		t.Fatalf("string write over a hash: %v", err)
	}
	if srv.Client().HGet(ctx, tg.Key, "config").Val() != "an sfp payload" {
		t.Fatal("hash was replaced")
	}
}

// Eviction can drop a string payload and keep its lcut key: Inspect must see
// the payload missing, so the worker rewrites it.
func TestStringPayloadEvicted(t *testing.T) {
	ctx := context.Background()
	w, srv := newWriter(t, 0)
	tg := keys.Layout{Formats: []keys.Format{keys.String}, Schemas: []keys.Schema{keys.Hashed}}.Targets(keys.MustParse("secret-aaaaaaaaaaaaaaaa"), keys.V1)[0]
	if _, err := w.Write(ctx, tg, payload(5, "{}")); err != nil {
		t.Fatal(err)
	}
	srv.Client().Del(ctx, tg.Key)
	st, err := w.Inspect(ctx, []keys.Target{tg})
	if err != nil || st[0].Present() {
		t.Fatalf("evicted string payload: %+v %v, want not present", st, err)
	}
	if res, err := w.Write(ctx, tg, payload(5, "{}")); err != nil || !res.Written {
		t.Fatalf("rewrite of an evicted payload at the same lcut: %+v %v", res, err)
	}
}
