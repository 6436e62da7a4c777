package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

var (
	keyA = keys.MustParse("secret-abc123XYZ0123456789example")
	keyB = keys.MustParse("secret-harness-00001")
)

func lookup(ks ...keys.SDKKey) func(string) (keys.SDKKey, bool) {
	m := map[string]keys.SDKKey{}
	for _, k := range ks {
		m[KeyID(k)] = k
	}
	return func(id string) (keys.SDKKey, bool) { k, ok := m[id]; return k, ok }
}

var list1 = fakecdn.SampleIDList(1, 50)

// sample is an archive of two keys, both versions, and one ID list for keyA.
func sample(t *testing.T) []byte {
	t.Helper()
	var out bytes.Buffer
	w := NewWriter(&out, WriterOptions{WorkerVersion: "v0-test", Source: "redis", CreatedAt: time.Unix(1700000000, 0)})
	for _, k := range []keys.SDKKey{keyA, keyB} {
		p := fakecdn.Project{Lcut: 1700000000000, Value: 3}
		id := KeyID(k)
		if err := w.AddPayload(id, keys.V1, fakecdn.V1Body(k, p), p.Lcut); err != nil {
			t.Fatal(err)
		}
		if err := w.AddPayload(id, keys.V2, fakecdn.V2Body(k, p), p.Lcut); err != nil {
			t.Fatal(err)
		}
	}
	id := KeyID(keyA)
	if err := w.AddIDList(id, "list_1", "file-1", int64(len(list1)), bytes.NewReader(list1)); err != nil {
		t.Fatal(err)
	}
	mj := idlists.MarshalManifest([]idlists.Entry{{Name: "list_1", Size: int64(len(list1)), URL: "https://idlists.example/file-1", CreationTime: 1, FileID: "file-1"}})
	if err := w.AddIDListManifest(id, mj, 1700000001000); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func limits() Limits {
	return Limits{MaxMemberBytes: 1 << 20, Now: time.UnixMilli(1700000000000), MaxClockSkew: time.Hour, Key: lookup(keyA, keyB)}
}

func TestSnapshotRoundTrip(t *testing.T) {
	b := sample(t)
	v, err := Verify(bytes.NewReader(b), limits())
	if err != nil {
		t.Fatal(err)
	}
	if len(v.IDs) != 2 || v.Manifest.WorkerVersion != "v0-test" || v.Manifest.Source != "redis" {
		t.Fatalf("%+v", v.Manifest)
	}
	ka := v.Keys[KeyID(keyA)]
	if ka.Payloads[keys.V1].Lcut != 1700000000000 || ka.IDListManifest == nil || ka.Lists["list_1"].FileID != "file-1" {
		t.Fatalf("%+v", ka)
	}
	var got []string
	err = Walk(bytes.NewReader(b), v, func(it Item) error {
		got = append(got, it.Path)
		switch it.Kind {
		case KindPayload:
			want := fakecdn.V1Body(keyA, fakecdn.Project{Lcut: 1700000000000, Value: 3})
			if it.KeyID == KeyID(keyA) && it.Version == keys.V1 && !bytes.Equal(it.Body, want) {
				t.Errorf("payload changed in the round trip")
			}
		case KindIDList:
			b, err := io.ReadAll(it.List)
			if err != nil || !bytes.Equal(b, list1) {
				t.Errorf("list: %v", err)
			}
		}
		return nil
	})
	if err != nil || len(got) != 6 {
		t.Fatalf("%v %v", err, got)
	}
	// Without the keys, the payloads still verify (their own djb2).
	l := limits()
	l.Key = nil
	if _, err := Verify(bytes.NewReader(b), l); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotNeverHoldsTheKey(t *testing.T) {
	b := sample(t)
	raw := gunzip(t, b)
	for _, k := range []keys.SDKKey{keyA, keyB} {
		for _, s := range []string{k.Reveal(), k.Reveal()[:20], keys.Prefix.ID(k)} {
			if bytes.Contains(b, []byte(s)) || bytes.Contains(raw, []byte(s)) {
				t.Fatalf("the archive holds %q", keys.Redact(s))
			}
		}
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// rebuild rewrites the archive's tar through edit, which may change, drop or
// add members (nil drops).
func rebuild(t *testing.T, b []byte, edit func(h *tar.Header, body []byte) (*tar.Header, []byte), extra ...func(tw *tar.Writer)) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(gunzip(t, b)))
	var out bytes.Buffer
	gz := gzip.NewWriter(&out)
	tw := tar.NewWriter(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if h.Name == ManifestPath {
			for _, f := range extra {
				f(tw)
			}
		}
		h2, body2 := edit(h, body)
		if h2 == nil {
			continue
		}
		h2.Size = int64(len(body2))
		if err := tw.WriteHeader(h2); err != nil {
			t.Fatal(err)
		}
		tw.Write(body2)
	}
	tw.Close()
	gz.Close()
	return out.Bytes()
}

func wantFail(t *testing.T, b []byte, member, text string) {
	t.Helper()
	_, err := Verify(bytes.NewReader(b), limits())
	var me *MemberError
	if !errors.As(err, &me) {
		t.Fatalf("err %v, want a MemberError", err)
	}
	if !strings.Contains(err.Error(), member) || !strings.Contains(err.Error(), text) {
		t.Fatalf("err %q, want %q naming %q", err, text, member)
	}
}

func TestSnapshotRefuses(t *testing.T) {
	b := sample(t)
	v1 := PayloadPath(KeyID(keyA), keys.V1)
	list := IDListPath(KeyID(keyA), "list_1")
	same := func(h *tar.Header, body []byte) (*tar.Header, []byte) { return h, body }

	t.Run("tampered payload", func(t *testing.T) {
		wantFail(t, rebuild(t, b, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == v1 {
				body = bytes.Replace(body, []byte(`"value":3`), []byte(`"value":5`), 1)
			}
			return h, body
		}), v1, "SHA-256")
	})
	t.Run("tampered list", func(t *testing.T) {
		wantFail(t, rebuild(t, b, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == list {
				body = append([]byte(nil), body...)
				body[1] = 'Z'
			}
			return h, body
		}), list, "SHA-256")
	})
	t.Run("invalid payload with matching digest", func(t *testing.T) {
		// Valid JSON but has_updates false: refused by the worker's rules
		// whatever the manifest says.
		wantFail(t, rebuild(t, b, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == v1 {
				body = bytes.Replace(body, []byte(`"has_updates":true`), []byte(`"has_updates":false`), 1)
			}
			return h, body
		}), v1, "no_update")
	})
	t.Run("payload of another key", func(t *testing.T) {
		other := fakecdn.V1Body(keyB, fakecdn.Project{Lcut: 1700000000000, Value: 3})
		wantFail(t, rebuild(t, b, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == v1 {
				body = other
			}
			return h, body
		}), v1, "wrong_sdk_key")
	})
	t.Run("bad list line", func(t *testing.T) {
		wantFail(t, rebuild(t, b, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == list {
				body = append([]byte(nil), body...)
				body[10] = 'x'
			}
			return h, body
		}), list, "does not start with + or -")
	})
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int{len(b) / 3, len(b) / 2, len(b) - 40, len(b) - 4} {
			if _, err := Verify(bytes.NewReader(b[:n]), limits()); err == nil {
				t.Fatalf("truncated at %d of %d: verified", n, len(b))
			}
		}
	})
	t.Run("corrupted gzip", func(t *testing.T) {
		c := append([]byte(nil), b...)
		c[len(c)/2] ^= 0xff
		if _, err := Verify(bytes.NewReader(c), limits()); err == nil {
			t.Fatal("verified")
		}
		if _, err := Verify(strings.NewReader("not gzip at all"), limits()); err == nil || !strings.Contains(err.Error(), "gzip") {
			t.Fatal(err)
		}
	})
	t.Run("traversal", func(t *testing.T) {
		wantFail(t, rebuild(t, b, same, func(tw *tar.Writer) {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "keys/../../etc/passwd", Size: 1, Mode: 0o644})
			tw.Write([]byte("x"))
		}), "../", "traversal")
		wantFail(t, rebuild(t, b, same, func(tw *tar.Writer) {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "keys/x", Linkname: "/etc"})
		}), "keys/x", "not a regular file")
	})
	t.Run("duplicate", func(t *testing.T) {
		wantFail(t, rebuild(t, b, same, func(tw *tar.Writer) {
			body := fakecdn.V1Body(keyA, fakecdn.Project{Lcut: 1700000000000, Value: 3})
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: v1, Size: int64(len(body)), Mode: 0o644})
			tw.Write(body)
		}), v1, "duplicate")
	})
	t.Run("unknown", func(t *testing.T) {
		wantFail(t, rebuild(t, b, same, func(tw *tar.Writer) {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "README", Size: 1, Mode: 0o644})
			tw.Write([]byte("x"))
		}), "README", "unknown member")
	})
	t.Run("unlisted", func(t *testing.T) {
		// A well-formed member the manifest does not list.
		other := PayloadPath(KeyID(keys.MustParse("secret-unlisted-key-000000")), keys.V1)
		body := fakecdn.V1Body(keys.MustParse("secret-unlisted-key-000000"), fakecdn.Project{Lcut: 1700000000000})
		wantFail(t, rebuild(t, b, same, func(tw *tar.Writer) {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: other, Size: int64(len(body)), Mode: 0o644})
			tw.Write(body)
		}), other, "not listed")
	})
	t.Run("missing member", func(t *testing.T) {
		wantFail(t, rebuild(t, b, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == PayloadPath(KeyID(keyB), keys.V2) {
				return nil, nil
			}
			return h, body
		}), PayloadPath(KeyID(keyB), keys.V2), "not in the archive")
	})
	t.Run("no manifest", func(t *testing.T) {
		wantFail(t, rebuild(t, b, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == ManifestPath {
				return nil, nil
			}
			return h, body
		}), ManifestPath, "missing")
	})
	t.Run("oversize", func(t *testing.T) {
		l := limits()
		l.MaxMemberBytes = 1000
		_, err := Verify(bytes.NewReader(b), l)
		if err == nil || !strings.Contains(err.Error(), "MAX_PAYLOAD_BYTES") {
			t.Fatal(err)
		}
		l = limits()
		l.MaxManifestBytes = 100
		if _, err := Verify(bytes.NewReader(b), l); err == nil || !strings.Contains(err.Error(), ManifestPath) {
			t.Fatal(err)
		}
	})
	t.Run("future lcut", func(t *testing.T) {
		l := limits()
		l.Now = time.UnixMilli(1700000000000).Add(-2 * time.Hour)
		if _, err := Verify(bytes.NewReader(b), l); err == nil {
			t.Fatal("a payload 2h ahead of the clock verified")
		}
	})
	t.Run("changed between passes", func(t *testing.T) {
		v, err := Verify(bytes.NewReader(b), limits())
		if err != nil {
			t.Fatal(err)
		}
		other := rebuild(t, b, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == list {
				body = append([]byte(nil), body...)
				body[1] = 'Z'
			}
			return h, body
		})
		var committed bool
		err = Walk(bytes.NewReader(other), v, func(it Item) error {
			if it.List != nil {
				if _, err := io.ReadAll(it.List); err != nil {
					return err
				}
				committed = true
			}
			return nil
		})
		if err == nil || committed {
			t.Fatalf("err %v, committed %v", err, committed)
		}
	})
}

func TestSnapshotWriterRefusesBadNames(t *testing.T) {
	w := NewWriter(io.Discard, WriterOptions{})
	if err := w.AddIDList(KeyID(keyA), "../x", "f", 1, strings.NewReader("+")); err == nil {
		t.Fatal("accepted ../x")
	}
	if err := w.AddPayload("not-an-id", keys.V1, []byte("{}"), 1); err == nil {
		t.Fatal("accepted a bad id")
	}
}
