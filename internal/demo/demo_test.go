package demo

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// The embedded sample data is what a first-time user sees: three projects,
// one that changes, ID lists whose lines are the hashes of the users they
// name, as statsig-node hashes an ID for a list (base64 of SHA-256, first 8
// characters).
func TestSampleData(t *testing.T) {
	ps, err := Projects()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 {
		t.Fatalf("%d sample projects, want 3", len(ps))
	}
	changing := 0
	for _, p := range ps {
		if !strings.HasPrefix(p.Key.Reveal(), "secret-demo-") || !strings.Contains(p.Key.Reveal(), "not-a-real-key") {
			t.Errorf("sample key %s does not look fake at a glance", p.Key.Reveal())
		}
		if p.Changes {
			changing++
		}
		for _, l := range p.IDLists {
			lines := strings.SplitAfter(string(l.Content), "\n")
			if last := lines[len(lines)-1]; last != "" {
				t.Errorf("%s/%s: the file does not end in a newline", p.Name, l.Name)
			}
			lines = lines[:len(lines)-1]
			if len(lines) != len(l.Users) {
				t.Fatalf("%s/%s: %d lines for %d users", p.Name, l.Name, len(lines), len(l.Users))
			}
			for i, u := range l.Users {
				sum := sha256.Sum256([]byte(u))
				if want := "+" + base64.StdEncoding.EncodeToString(sum[:])[:8] + "\n"; lines[i] != want {
					t.Errorf("%s/%s line %d is %q, want %q (the hash of %s)", p.Name, l.Name, i+1, lines[i], want, u)
				}
			}
		}
	}
	if changing != 1 {
		t.Errorf("%d projects change, want 1", changing)
	}
}

// The embedded CDN serves every sample project in both versions, valid for
// the worker, answers a conditional poll with "no updates", and a change
// moves the lcut to now and flips the gate.
func TestCDN(t *testing.T) {
	var changes []fakecdn.Project
	c, err := StartCDN(Options{ChangeEvery: 200 * time.Millisecond, OnChange: func(p Project, now fakecdn.Project) {
		changes = append(changes, now)
	}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			c.Close()
		}
	}()
	get := func(k keys.SDKKey, v keys.Version, since int64) (int, []byte) {
		url := c.URL + v.DCSPath() + "/" + k.Reveal() + ".json"
		if since > 0 {
			url += "?sinceTime=" + strconv.FormatInt(since, 10)
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	start := time.Now()
	var changing Project
	for _, p := range c.Projects {
		if p.Changes {
			changing = p
		}
		for _, v := range []keys.Version{keys.V1, keys.V2} {
			code, body := get(p.Key, v, 0)
			meta, err := fetcher.Validate(body, v, p.Key.HashedSDKKeyUsed())
			if code != 200 || err != nil {
				t.Fatalf("%s %s: %d %v", p.Name, v, code, err)
			}
			if age := start.Sub(time.UnixMilli(meta.Time)); age < p.LcutAge-time.Minute || age > p.LcutAge+time.Minute {
				t.Errorf("%s %s: lcut is %v old, want about %v", p.Name, v, age, p.LcutAge)
			}
			if _, body := get(p.Key, v, meta.Time); string(body) != fakecdn.NoUpdateBody {
				t.Errorf("%s %s: a conditional poll got %q", p.Name, v, body)
			}
		}
		for _, l := range p.IDLists {
			if _, content, ok := c.fake.IDList(p.Key, l.Name); !ok || string(content) != string(l.Content) {
				t.Errorf("%s: ID list %s not served as embedded", p.Name, l.Name)
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	closed = true
	if len(changes) < 2 {
		t.Fatalf("%d changes in 500ms at one per 200ms", len(changes))
	}
	for i, ch := range changes {
		if ch.Value != changing.Value+i+1 {
			t.Errorf("change %d: value %d, want %d", i+1, ch.Value, changing.Value+i+1)
		}
		if age := time.Since(time.UnixMilli(ch.Lcut)); age < 0 || age > 2*time.Second {
			t.Errorf("change %d: lcut %v from now, want about now", i+1, age)
		}
	}
	if changes[0].Value%2 == changes[1].Value%2 {
		t.Errorf("two changes in a row left %s as it was", FlipGate)
	}
}

func TestJSString(t *testing.T) {
	for in, want := range map[string]string{
		"secret-demo-checkout-not-a-real-key": "'secret-demo-checkout-not-a-real-key'",
		"it's":                                `"it's"`,
		`a\b`:                                 `"a\\b"`,
		"line\nbreak":                         `"line\nbreak"`,
	} {
		if got := JSString(in); got != want {
			t.Errorf("JSString(%q) = %s, want %s", in, got, want)
		}
	}
}
