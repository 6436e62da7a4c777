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
	keyD = "secret-dddddddddddddddddddddddddddd"
	keyE = "secret-eeeeeeeeeeeeeeeeeeeeeeeeeeee"
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
// key set applied is the last good one, and a key leaves only after two
// usable reads lack it.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	big := strings.Repeat(keyC+"\n", keys.MaxFileSize/len(keyC)+1)
	steps := []struct {
		name    string
		content string   // written to the file unless path is set
		path    string   // read this instead (e.g. /dev/zero)
		applied []string // the set applied by this check; nil: none, the current set stays
		log     []string // in the log; none: nothing logged
	}{
		{"first change", keyB + "\n", "", []string{keyA, keyB}, []string{"SDK keys file changed"}},
		{"unchanged content is not applied again", keyB + "\n", "", nil, nil},
		{"invalid key keeps the set", keyB + "\nclient-abcdefghijklmnop\n", "", nil, []string{"invalid keys"}},
		{"invalid content is logged once", keyB + "\nclient-abcdefghijklmnop\n", "", nil, nil},
		// The read before was not usable: B is missing once, so it stays.
		{"byte order mark is dropped; C added, B kept", "\uFEFF" + keyC + "\r\n", "", []string{keyA, keyC, keyB}, []string{"SDK keys file changed", "missing from the SDK keys file"}},
		{"B missing twice: removed", "\uFEFF" + keyC + "\r\n", "", []string{keyA, keyC}, []string{"SDK keys file changed"}},
		{"prefix collision keeps the set", "secret-shared-prefix-one\nsecret-shared-prefix-two\n", "", nil, []string{"collide"}},
		{"too large keeps the set", big, "", nil, []string{"larger than the 4 MiB limit"}},
		{"endless source keeps the set", "", "/dev/zero", nil, []string{"larger than the 4 MiB limit"}},
		{"missing file keeps the set", "", filepath.Join(dir, "missing"), nil, []string{"cannot read"}},
		{"empty file keeps the set", "", "", nil, []string{"is empty"}},
		{"white space only keeps the set", " \r\n\t\n", "", nil, []string{"is empty"}},
		{"byte order mark only keeps the set", "\uFEFF\n", "", nil, []string{"is empty"}},
		{"only comments: C missing once, kept", "# nothing yet\n", "", nil, []string{"missing from the SDK keys file"}},
		{"only comments again: C removed", "# nothing yet\n", "", []string{keyA}, []string{"SDK keys file changed"}},
		{"valid again", keyB + " # back\n", "", []string{keyA, keyB}, []string{"SDK keys file changed"}},
		{"truncated to a key of the file and the fixed one", keyA + "\n", "", nil, []string{"missing from the SDK keys file"}},
		{"whole again: nothing removed", keyB + " # back\n", "", nil, nil},
	}
	var applied []string
	var logs syncBuffer
	w := &watcher{
		path: path, fixed: []keys.SDKKey{keys.MustParse(keyA)}, schemas: []keys.Schema{keys.Hashed, keys.Prefix},
		apply: func(ks []keys.SDKKey) { applied = reveal(ks) }, log: zerolog.New(&logs),
	}
	w.applied = w.fixed // as Watch starts when the file is unusable
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
		for _, l := range s.log {
			if !strings.Contains(out, l) {
				t.Errorf("%s: log lacks %q: %s", s.name, l, out)
			}
		}
		if len(s.log) == 0 && out != "" {
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
// it stops with its context. The file is replaced whole, as a Secret volume
// does; the key it lost goes one read after the one it came in.
func TestWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(path, []byte(keyB+"\n"), 0o600)
	got := make(chan []string, 10)
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, path, []keys.SDKKey{keys.MustParse(keyA)}, []keys.Schema{keys.Prefix}, 10*time.Millisecond,
			func(ks []keys.SDKKey) { got <- reveal(ks) }, zerolog.New(&logs))
	}()
	waitLog(t, &logs, "watching the SDK keys file", 1)
	time.Sleep(50 * time.Millisecond) // several reads of the start-up content
	select {
	case ks := <-got:
		t.Fatalf("applied the start-up content again: %v", ks)
	default:
	}
	os.WriteFile(path+".new", []byte(keyC+"\n"), 0o600)
	os.Rename(path+".new", path)
	for _, want := range [][]string{{keyA, keyC, keyB}, {keyA, keyC}} {
		select {
		case ks := <-got:
			if !reflect.DeepEqual(ks, want) {
				t.Fatalf("applied %v, want %v", ks, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%v not applied", want)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not stop")
	}
}

// watchFile runs Watch on a keys file holding content, with keyA from the
// environment, until the test ends; applied sets arrive on the channel and
// the log in the buffer.
func watchFile(t *testing.T, content string, period time.Duration) (path string, got chan []string, logs *syncBuffer) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	got = make(chan []string, 10)
	logs = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, path, []keys.SDKKey{keys.MustParse(keyA)}, []keys.Schema{keys.Hashed, keys.Prefix}, period,
			func(ks []keys.SDKKey) { got <- reveal(ks) }, zerolog.New(logs))
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitLog(t, logs, "watching the SDK keys file", 1) // the start-up content is read
	return path, got, logs
}

// waitLog waits until the log holds msg n times: proof that the watcher has
// read the file in the state the test put it in.
func waitLog(t *testing.T, logs *syncBuffer, msg string, n int) time.Time {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if strings.Count(logs.String(), msg) >= n {
			return time.Now()
		}
	}
	t.Fatalf("the log does not hold %q %d times:\n%s", msg, n, logs.String())
	return time.Time{}
}

func noApply(t *testing.T, got chan []string, what string) {
	t.Helper()
	select {
	case ks := <-got:
		t.Fatalf("%s: applied %v", what, ks)
	default:
	}
}

const (
	msgEmpty   = "the SDK keys file is empty"
	msgMissing = "missing from the SDK keys file"
	msgChanged = "SDK keys file changed"
)

// Issue 15, item 4: the file is rewritten in place in two steps, truncated
// and then written, with the watcher reading it between the steps: once
// empty, once holding only its first key. No key is removed, nothing is
// applied at all (the content ends as it began).
func TestWatchTwoStepWrite(t *testing.T) {
	const period = 500 * time.Millisecond // the test must write the rest within one period of a read
	whole := keyB + "\n" + keyC + "\n" + keyD + "\n"
	path, got, logs := watchFile(t, whole, period)

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitLog(t, logs, msgEmpty, 1) // a read of the truncated, empty file
	noApply(t, got, "empty file")
	if _, err := f.WriteString(keyB + "\n"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, msgMissing, 1) // a read of the file holding its first key
	if _, err := f.WriteString(keyC + "\n" + keyD + "\n"); err != nil {
		t.Fatal(err)
	}
	noApply(t, got, "half-written file")
	// Several more reads of the whole file: still nothing to apply.
	time.Sleep(3 * period)
	noApply(t, got, "whole file again")
	if out := logs.String(); strings.Contains(out, msgChanged) || strings.Count(out, msgMissing) != 1 {
		t.Errorf("log:\n%s", out)
	}
}

// A real removal is applied at the second read that lacks the key, at least
// one period after the first; an addition at the first read.
func TestWatchRemovalAfterTwoReads(t *testing.T) {
	const period = 200 * time.Millisecond
	path, got, logs := watchFile(t, keyB+"\n"+keyC+"\n"+keyD+"\n", period)

	// D removed, in two steps (os.WriteFile truncates, then writes).
	if err := os.WriteFile(path, []byte(keyB+"\n"+keyC+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	first := waitLog(t, logs, msgMissing, 1)
	noApply(t, got, "first read without the key")
	select {
	case ks := <-got:
		if want := []string{keyA, keyB, keyC}; !reflect.DeepEqual(ks, want) {
			t.Fatalf("applied %v, want %v", ks, want)
		}
		if took := time.Since(first); took < period*9/10 {
			t.Errorf("removal applied %v after the first read that lacked the key; want at least a period (%v)", took, period)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("removal not applied")
	}
	if n := strings.Count(logs.String(), msgMissing); n != 1 {
		t.Errorf("%d reads saw the key missing before it was removed, want 1:\n%s", n, logs.String())
	}

	// An addition goes at the first read.
	if err := os.WriteFile(path, []byte(keyB+"\n"+keyC+"\n"+keyE+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case ks := <-got:
		if want := []string{keyA, keyB, keyC, keyE}; !reflect.DeepEqual(ks, want) {
			t.Fatalf("applied %v, want %v", ks, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("addition not applied")
	}
	if n := strings.Count(logs.String(), msgMissing); n != 1 {
		t.Errorf("an addition logged a missing key:\n%s", logs.String())
	}
	time.Sleep(2 * period)
	noApply(t, got, "unchanged file")
}
