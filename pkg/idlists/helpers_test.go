package idlists

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

var (
	ctxBG   = context.Background()
	testKey = keys.MustParse("secret-idlistsTestKey0123456789abcdef")
	testNow = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorded is one request a test server saw.
type recorded struct {
	Method, Path, RawQuery, URI, Host string
	Header                            http.Header
}

// recorder is a test server that records every request and answers with h.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newRecorder(t testing.TB, h http.HandlerFunc) *recorder {
	t.Helper()
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, recorded{req.Method, req.URL.Path, req.URL.RawQuery, req.RequestURI, req.Host, req.Header.Clone()})
		r.mu.Unlock()
		h(w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

// mustNotSeeKey fails if any request r received carries the key anywhere:
// request line, query, Host or any header name or value.
func (r *recorder) mustNotSeeKey(t testing.TB, k keys.SDKKey) {
	t.Helper()
	for _, q := range r.requests() {
		all := q.Method + " " + q.URI + " " + q.Host
		for name, vs := range q.Header {
			all += "\n" + name + ": " + strings.Join(vs, ",")
			if strings.HasPrefix(strings.ToLower(name), "statsig") {
				t.Errorf("request %s carries a statsig header %s", q.URI, name)
			}
		}
		if strings.Contains(all, k.Reveal()) {
			t.Errorf("a request to %s carried the SDK key:\n%s", r.URL, all)
		}
	}
}

// newTestClient returns a Client of base with test defaults.
func newTestClient(base string, o Options) *Client {
	o.BaseURL = base
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = func() time.Time { return testNow }
	}
	if o.UserAgent == "" {
		o.UserAgent = "statsig-populator/test"
	}
	return New(o)
}

// serveFile answers with content honouring Range (206, as a CDN does), via
// http.ServeContent.
func serveFile(content []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
	}
}

// readChunk opens and reads a whole chunk, returning what Read delivered and
// the error that ended it (nil for io.EOF).
func readChunk(c *Client, url string, size, offset int64) ([]byte, *Chunk, error) {
	ch, err := c.OpenChunk(ctxBG, testKey, Entry{Name: "l", URL: url, Size: size, FileID: "F", CreationTime: 1}, offset)
	if err != nil {
		return nil, nil, err
	}
	defer ch.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, ch)
	return buf.Bytes(), ch, err
}

// errorsAs is errors.As returning the target.
func errorsAs[T error](err error) (T, bool) {
	var t T
	ok := errors.As(err, &t)
	return t, ok
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
