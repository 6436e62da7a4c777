package keyfile

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

const (
	keyA = "secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	keyB = "secret-bbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	keyC = "secret-cccccccccccccccccccccccccccc"
)

func reveal(ks []keys.SDKKey) []string {
	var out []string
	for _, k := range ks {
		out = append(out, k.Reveal())
	}
	return out
}

// syncBuffer is a log sink safe for the watcher goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Each step writes the file (or replaces it with a path) and checks once; the
// key set applied must be the last good one throughout.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	big := strings.Repeat(keyC+"\n", keys.MaxFileSize/len(keyC)+1)
	steps := []struct {
		name    string
		content string   // written to the file unless path is set
		path    string   // read this instead (e.g. /dev/zero)
		applied []string // the set applied by this check; nil: none, the current set stays
		log     string   // in the log
	}{
		{"first change", keyB + "\n", "", []string{keyA, keyB}, "SDK keys file changed"},
		{"unchanged content is not applied again", keyB + "\n", "", nil, ""},
		{"invalid key keeps the set", keyB + "\nclient-abcdefghijklmnop\n", "", nil, "invalid keys"},
		{"byte order mark is dropped", "\uFEFF" + keyC + "\r\n", "", []string{keyA, keyC}, "SDK keys file changed"},
		{"prefix collision keeps the set", "secret-shared-prefix-one\nsecret-shared-prefix-two\n", "", nil, "collide"},
		{"too large keeps the set", big, "", nil, "larger than the 4 MiB limit"},
		{"endless source keeps the set", "", "/dev/zero", nil, "larger than the 4 MiB limit"},
		{"missing file keeps the set", "", filepath.Join(dir, "missing"), nil, "cannot read"},
		{"only comments keeps the set", "# nothing yet\n", "", []string{keyA}, "SDK keys file changed"},
		{"valid again", keyB + " # back\n", "", []string{keyA, keyB}, "SDK keys file changed"},
	}
	var applied []string
	var logs syncBuffer
	w := &watcher{
		path: path, fixed: []keys.SDKKey{keys.MustParse(keyA)}, schemas: []keys.Schema{keys.Hashed, keys.Prefix},
		apply: func(ks []keys.SDKKey) { applied = reveal(ks) }, log: zerolog.New(&logs),
	}
	for _, s := range steps {
		before := len(logs.String())
		w.path = path
		if s.path != "" {
			w.path = s.path
		} else if err := os.WriteFile(path, []byte(s.content), 0o600); err != nil {
			t.Fatal(err)
		}
		applied = nil
		w.check()
		if !reflect.DeepEqual(applied, s.applied) {
			t.Errorf("%s: applied %v, want %v", s.name, applied, s.applied)
		}
		out := logs.String()[before:]
		if s.log != "" && !strings.Contains(out, s.log) {
			t.Errorf("%s: log lacks %q: %s", s.name, s.log, out)
		}
		if s.log == "" && out != "" {
			t.Errorf("%s: unexpected log %s", s.name, out)
		}
		for _, secret := range []string{"abcdefghijklmnop", "secret-shared-prefix", keyB, keyC} {
			if strings.Contains(out, secret) {
				t.Errorf("%s: log shows a secret: %s", s.name, out)
			}
		}
	}
}

// Without the prefix schema, keys sharing 20 characters are fine.
func TestCheckCollisionWithoutPrefixSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(path, []byte("secret-shared-prefix-one\nsecret-shared-prefix-two\n"), 0o600)
	var applied []string
	w := &watcher{path: path, schemas: []keys.Schema{keys.Hashed}, apply: func(ks []keys.SDKKey) { applied = reveal(ks) }, log: zerolog.Nop()}
	w.check()
	if len(applied) != 2 {
		t.Fatalf("applied %v", applied)
	}
}

// Watch: the content it starts with is not applied again, a change is, and
// it stops with its context.
func TestWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(path, []byte(keyB+"\n"), 0o600)
	got := make(chan []string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, path, []keys.SDKKey{keys.MustParse(keyA)}, []keys.Schema{keys.Prefix}, 10*time.Millisecond,
			func(ks []keys.SDKKey) { got <- reveal(ks) }, zerolog.Nop())
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case ks := <-got:
		t.Fatalf("applied the start-up content again: %v", ks)
	default:
	}
	// Replace the file whole, as a Secret volume does: a plain write
	// truncates first, and the watcher could read the empty file between.
	os.WriteFile(path+".new", []byte(keyC+"\n"), 0o600)
	os.Rename(path+".new", path)
	select {
	case ks := <-got:
		if !reflect.DeepEqual(ks, []string{keyA, keyC}) {
			t.Fatalf("applied %v", ks)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("change not applied")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not stop")
	}
}
