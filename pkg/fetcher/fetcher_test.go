package fetcher

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func newClient(t *testing.T, max int64) (*Client, *fakecdn.Server, *httptest.Server) {
	t.Helper()
	cdn := fakecdn.New()
	srv := httptest.NewServer(cdn)
	t.Cleanup(srv.Close)
	c := New(Options{BaseURL: srv.URL + "/", Timeout: 2 * time.Second, MaxPayloadBytes: max, UserAgent: "statsig-populator/test"})
	return c, cdn, srv
}

func TestConditionalFetch(t *testing.T) {
	ctx := context.Background()
	c, cdn, _ := newClient(t, 1<<20)
	cdn.SetProject(testKey, fakecdn.Project{Lcut: 1000, Value: 1})

	for _, v := range []keys.Version{keys.V1, keys.V2} {
		r := c.Fetch(ctx, testKey, v, 0)
		if r.Outcome != Updated || r.Meta.Time != 1000 || r.Cursor != 1000 || r.HeaderMismatch {
			t.Fatalf("%s first fetch = %+v", v, r)
		}
		want := fakecdn.V1Body(testKey, cdn.Project(testKey))
		if v == keys.V2 {
			want = fakecdn.V2Body(testKey, cdn.Project(testKey))
		}
		if !bytes.Equal(r.Body, want) {
			t.Fatalf("%s body is not byte-exact (gzip decoded): %d bytes vs %d", v, len(r.Body), len(want))
		}
		if r := c.Fetch(ctx, testKey, v, 1000); r.Outcome != NoUpdate || r.Cursor != 1000 || r.Body != nil {
			t.Fatalf("%s conditional fetch = %+v, want no_update", v, r)
		}
	}
	cdn.Change(testKey, 500)
	if r := c.Fetch(ctx, testKey, keys.V2, 1000); r.Outcome != Updated || r.Meta.Time != 1500 {
		t.Fatalf("fetch after change = %+v", r)
	}

	reqs := cdn.RequestsFor(testKey, keys.V2)
	if len(reqs) != 3 {
		t.Fatalf("got %d v2 requests, want 3", len(reqs))
	}
	for i, want := range []int64{-1, 1000, 1000} {
		r := reqs[i]
		if r.SinceTime != want {
			t.Errorf("request %d sinceTime = %d, want %d (query %q)", i, r.SinceTime, want, r.RawQuery)
		}
		if want == -1 && r.RawQuery != "" {
			t.Errorf("first request has a query %q, want none", r.RawQuery)
		}
		for _, forbidden := range []string{"supports_proto", "accept_deltas", "checksum"} {
			if strings.Contains(r.RawQuery, forbidden) {
				t.Errorf("request %d asks for %s: %q", i, forbidden, r.RawQuery)
			}
		}
		if r.Header.Get("Statsig-Supports-Proto") != "" || r.Header.Get("Statsig-Api-Key") != "" {
			t.Errorf("request %d sends Statsig headers: %v", i, r.Header)
		}
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") || strings.Contains(r.Header.Get("Accept-Encoding"), "br") {
			t.Errorf("request %d Accept-Encoding = %q, want gzip only", i, r.Header.Get("Accept-Encoding"))
		}
		if r.Header.Get("User-Agent") != "statsig-populator/test" {
			t.Errorf("User-Agent = %q", r.Header.Get("User-Agent"))
		}
	}
}

func TestFetchOutcomes(t *testing.T) {
	ctx := context.Background()
	c, cdn, _ := newClient(t, 64<<10)
	cdn.SetProject(testKey, fakecdn.Project{Lcut: 5000, Value: 1})
	unknown := keys.MustParse("secret-unknown-key-1234")

	cases := []struct {
		name      string
		fault     fakecdn.Fault
		key       keys.SDKKey
		since     int64
		outcome   Outcome
		class     string
		setup     func()
		checkMore func(t *testing.T, r Result)
	}{
		{name: "unknown key", key: unknown, outcome: Unauthorized, class: "http_401"},
		{name: "revoked 403", setup: func() { cdn.Revoke(testKey, 403) }, outcome: Unauthorized, class: "http_403"},
		{name: "429", fault: fakecdn.Fault{Status: 429, RetryAfter: "7"}, outcome: RateLimited, class: "http_429",
			checkMore: func(t *testing.T, r Result) {
				if r.RetryAfter != 7*time.Second {
					t.Errorf("RetryAfter = %v", r.RetryAfter)
				}
			}},
		{name: "500", fault: fakecdn.Fault{Status: 500}, outcome: Transient, class: "http_500"},
		{name: "502", fault: fakecdn.Fault{Status: 502}, outcome: Transient, class: "http_502"},
		{name: "503", fault: fakecdn.Fault{Status: 503}, outcome: Transient, class: "http_503"},
		{name: "504", fault: fakecdn.Fault{Status: 504}, outcome: Transient, class: "http_504"},
		{name: "408", fault: fakecdn.Fault{Status: 408}, outcome: Transient, class: "http_408"},
		{name: "522", fault: fakecdn.Fault{Status: 522}, outcome: Transient, class: "http_522"},
		{name: "524", fault: fakecdn.Fault{Status: 524}, outcome: Transient, class: "http_524"},
		{name: "599", fault: fakecdn.Fault{Status: 599}, outcome: Transient, class: "http_599"},
		{name: "400", fault: fakecdn.Fault{Status: 400}, outcome: Rejected, class: "http_400"},
		{name: "404", fault: fakecdn.Fault{Status: 404}, outcome: Rejected, class: "http_404"},
		{name: "501", fault: fakecdn.Fault{Status: 501}, outcome: Rejected, class: "http_501"},
		{name: "304", fault: fakecdn.Fault{Status: 304}, outcome: Rejected, class: "http_304"},
		{name: "connection reset", fault: fakecdn.Fault{Reset: true}, outcome: Transient, class: "network"},
		{name: "slower than the timeout", fault: fakecdn.Fault{Delay: 5 * time.Second}, outcome: Transient, class: "timeout"},
		{name: "truncated body", fault: fakecdn.Fault{Truncate: true}, outcome: Transient, class: "network"},
		{name: "invalid JSON", fault: fakecdn.Fault{InvalidJSON: true}, outcome: Rejected, class: "invalid_payload:not_json"},
		{name: "wrong hashed key", fault: fakecdn.Fault{WrongHashedKey: true}, outcome: Rejected, class: "invalid_payload:wrong_sdk_key"},
		{name: "wrong version", fault: fakecdn.Fault{WrongVersion: true}, outcome: Rejected, class: "invalid_payload:wrong_version"},
		{name: "protobuf", fault: fakecdn.Fault{Protobuf: true}, outcome: Rejected, class: "unsupported_format"},
		{name: "delta", fault: fakecdn.Fault{Delta: true}, outcome: Rejected, class: "unsupported_format"},
		{name: "too large", fault: fakecdn.Fault{Pad: 70 << 10}, outcome: Rejected, class: "too_large"},
		{name: "no x-since-time: cursor from body", fault: fakecdn.Fault{NoSinceTimeHeader: true}, outcome: Updated,
			checkMore: func(t *testing.T, r Result) {
				if r.Cursor != 5000 || r.HeaderMismatch {
					t.Errorf("cursor = %d mismatch=%v, want 5000 from the body", r.Cursor, r.HeaderMismatch)
				}
			}},
		{name: "older time than header", fault: fakecdn.Fault{OlderTime: true}, outcome: Updated,
			checkMore: func(t *testing.T, r Result) {
				if r.Meta.Time != 4000 || r.Cursor != 5000 || !r.HeaderMismatch {
					t.Errorf("got time %d cursor %d mismatch %v, want 4000/5000/true", r.Meta.Time, r.Cursor, r.HeaderMismatch)
				}
			}},
		{name: "no-update without x-cache-hit", fault: fakecdn.Fault{NoCacheHitHeader: true}, since: 5000, outcome: NoUpdate},
		{name: "full body although sinceTime is current", fault: fakecdn.Fault{IgnoreSinceTime: true}, since: 5000, outcome: Updated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cdn.ClearFaults()
			cdn.Restore(testKey)
			cdn.SetFault(keys.SDKKey{}, tc.fault)
			if tc.setup != nil {
				tc.setup()
			}
			k := tc.key
			if k.IsZero() {
				k = testKey
			}
			r := c.Fetch(ctx, k, keys.V1, tc.since)
			if r.Outcome != tc.outcome || r.Class != tc.class {
				t.Fatalf("got %s/%s (%v), want %s/%s", r.Outcome, r.Class, r.Err, tc.outcome, tc.class)
			}
			if tc.outcome != Updated && r.Body != nil {
				t.Errorf("a %s result carries a body", r.Outcome)
			}
			if r.Err != nil && strings.Contains(r.Err.Error(), k.Reveal()) {
				t.Errorf("error leaks the key: %v", r.Err)
			}
			if tc.checkMore != nil {
				tc.checkMore(t, r)
			}
		})
	}
}

func TestFetchUncompressed(t *testing.T) {
	c, cdn, _ := newClient(t, 1<<20)
	cdn.DisableGzip(true)
	cdn.SetProject(testKey, fakecdn.Project{Lcut: 1, Value: 1, Filler: 10})
	r := c.Fetch(context.Background(), testKey, keys.V2, 0)
	if r.Outcome != Updated || !bytes.Equal(r.Body, fakecdn.V2Body(testKey, cdn.Project(testKey))) {
		t.Fatalf("uncompressed fetch = %s %v", r.Outcome, r.Err)
	}
}

func TestNetworkErrorDoesNotLeakKey(t *testing.T) {
	// Nothing listens on this address: the dial error names the URL in net/http.
	c := New(Options{BaseURL: "http://127.0.0.1:1", Timeout: time.Second, MaxPayloadBytes: 1 << 20})
	r := c.Fetch(context.Background(), testKey, keys.V1, 0)
	if r.Outcome != Transient || r.Class != "network" {
		t.Fatalf("got %s/%s", r.Outcome, r.Class)
	}
	if strings.Contains(r.Err.Error(), testKey.Reveal()) || strings.Contains(r.Err.Error(), "0123456789") {
		t.Fatalf("error leaks the key: %v", r.Err)
	}
}

func TestRequestShape(t *testing.T) {
	// A base URL with a path (a proxy in front of the CDN) keeps its path;
	// every request carries the same two headers and nothing that names the
	// key outside the path.
	var got []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r)
		w.Header().Set("X-Since-Time", "1000")
		_, _ = w.Write([]byte(fakecdn.NoUpdateBody))
	}))
	t.Cleanup(srv.Close)
	c := New(Options{BaseURL: srv.URL + "/statsig/", Timeout: time.Second, MaxPayloadBytes: 1 << 20, UserAgent: "statsig-populator/test"})
	for _, since := range []int64{1000, 0} {
		c.Fetch(context.Background(), testKey, keys.V2, since)
	}
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	for i, want := range []string{"/statsig/v2/download_config_specs/" + testKey.Reveal() + ".json?sinceTime=1000",
		"/statsig/v2/download_config_specs/" + testKey.Reveal() + ".json"} {
		r := got[i]
		if r.Method != http.MethodGet || r.RequestURI != want {
			t.Errorf("request %d: %s %s, want GET %s", i, r.Method, r.RequestURI, want)
		}
		if ua, ae := r.Header.Get("User-Agent"), r.Header.Get("Accept-Encoding"); ua != "statsig-populator/test" || ae != "gzip" {
			t.Errorf("request %d: User-Agent %q, Accept-Encoding %q", i, ua, ae)
		}
	}

	bad := New(Options{BaseURL: "not a url", Timeout: time.Second, MaxPayloadBytes: 1 << 20})
	if r := bad.Fetch(context.Background(), testKey, keys.V1, 0); r.Outcome != Rejected || r.Class != "bad_request" {
		t.Fatalf("fetch with a base URL without scheme and host = %s/%s, want rejected/bad_request", r.Outcome, r.Class)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	// Following a redirect could hand the key (in the path) to another host.
	var elsewhere int
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere++ }))
	t.Cleanup(other.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	c := New(Options{BaseURL: srv.URL, Timeout: time.Second, MaxPayloadBytes: 1 << 20})
	r := c.Fetch(context.Background(), testKey, keys.V1, 0)
	if r.Outcome != Rejected || r.Class != "http_302" {
		t.Fatalf("redirect = %s/%s, want rejected/http_302", r.Outcome, r.Class)
	}
	if elsewhere != 0 {
		t.Fatalf("the redirect was followed (%d requests elsewhere)", elsewhere)
	}
}
