package idlists

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
)

func TestFetchManifestFixture(t *testing.T) {
	var body []byte
	api := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	body = bytes.Replace(fixture(t, "core_get_id_lists.json"), []byte("URL_REPLACE"), []byte(api.URL+"/v1/download_id_list_file"), 1)
	c := newTestClient(api.URL+"/", Options{})
	r := c.FetchManifest(ctxBG, testKey)
	if r.Outcome != fetcher.Updated || r.Label != "updated" || r.Status != 200 || r.Err != nil {
		t.Fatalf("FetchManifest = %+v", r)
	}
	want := Entry{Name: "company_id_list", Size: 270, URL: api.URL + "/v1/download_id_list_file/company_id_list", CreationTime: 1721417546000, FileID: "4t0BEqak3w1UcidsPcpQXN"}
	if len(r.Manifest.Entries) != 1 || r.Manifest.Entries["company_id_list"] != want || len(r.Manifest.Refused) != 0 {
		t.Fatalf("manifest = %+v", r.Manifest)
	}
	reqs := api.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	q := reqs[0]
	if q.Method != "GET" || q.URI != "/v1/get_id_lists/"+testKey.Reveal()+".json" {
		t.Errorf("request %s %s", q.Method, q.URI)
	}
	if q.Header.Get("User-Agent") != "statsig-populator/test" || q.Header.Get("Accept-Encoding") != "gzip" {
		t.Errorf("headers %v", q.Header)
	}
	for name := range q.Header {
		if strings.HasPrefix(strings.ToLower(name), "statsig") {
			t.Errorf("manifest request sends %s: the key is in the path only", name)
		}
	}
}

// A base URL with a path keeps it.
func TestFetchManifestBasePath(t *testing.T) {
	api := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	c := newTestClient(api.URL+"/statsig/", Options{})
	if r := c.FetchManifest(ctxBG, testKey); r.Outcome != fetcher.Updated {
		t.Fatal(r)
	}
	if got := api.requests()[0].Path; got != "/statsig/v1/get_id_lists/"+testKey.Reveal()+".json" {
		t.Errorf("path %s", got)
	}
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestFetchManifestOutcomes(t *testing.T) {
	good := []byte(`{"l":` + entry(nil) + `}`)
	bomb := gz(t, bytes.Repeat([]byte(" "), 4<<20)) // 4 KiB compressed
	smallBomb := gz(t, bytes.Repeat([]byte(" "), 64<<10))
	cases := []struct {
		name     string
		h        http.HandlerFunc
		ctx      func() (context.Context, context.CancelFunc)
		outcome  fetcher.Outcome
		label    string
		status   int
		retry    time.Duration
		entries  int
		contains string // in the error
	}{
		{name: "ok", h: body(200, nil, good), outcome: fetcher.Updated, label: "updated", status: 200, entries: 1},
		{name: "gzip", h: body(200, http.Header{"Content-Encoding": {"gzip"}}, gz(t, good)), outcome: fetcher.Updated, label: "updated", status: 200, entries: 1},
		{name: "empty object", h: body(200, nil, []byte("{}")), outcome: fetcher.Updated, label: "updated", status: 200},
		{name: "401", h: body(401, nil, []byte(`{"message":"Unauthorized","status":401}`)), outcome: fetcher.Unauthorized, label: "unauthorized", status: 401},
		{name: "403", h: body(403, nil, []byte("<html>forbidden</html>")), outcome: fetcher.Unauthorized, label: "unauthorized", status: 403},
		{name: "429", h: body(429, http.Header{"Retry-After": {"120"}}, nil), outcome: fetcher.RateLimited, label: "http_429", status: 429, retry: 2 * time.Minute},
		{name: "429 absurd retry", h: body(429, http.Header{"Retry-After": {"99999999999999999999"}}, nil), outcome: fetcher.RateLimited, label: "http_429", status: 429, retry: fetcher.MaxRetryAfterHint},
		{name: "408", h: body(408, nil, nil), outcome: fetcher.Transient, label: "http_408", status: 408},
		{name: "500", h: body(500, nil, nil), outcome: fetcher.Transient, label: "http_5xx", status: 500},
		{name: "503", h: body(503, http.Header{"Retry-After": {"Thu, 15 Jan 2026 12:01:30 GMT"}}, nil), outcome: fetcher.Transient, label: "http_5xx", status: 503, retry: 90 * time.Second},
		{name: "501", h: body(501, nil, nil), outcome: fetcher.Rejected, label: "http_5xx", status: 501},
		{name: "404", h: body(404, nil, nil), outcome: fetcher.Rejected, label: "http_4xx", status: 404},
		{name: "302 not followed", h: body(302, http.Header{"Location": {"https://evil.example/steal"}}, nil), outcome: fetcher.Rejected, label: "http_3xx", status: 302},
		{name: "204", h: body(204, nil, nil), outcome: fetcher.Rejected, label: "http_other", status: 204},
		{name: "206", h: body(206, nil, good), outcome: fetcher.Rejected, label: "http_other", status: 206},
		{name: "garbage", h: body(200, nil, []byte("\x00\x01garbage")), outcome: fetcher.Rejected, label: "invalid_manifest", status: 200, contains: "not_json"},
		{name: "html", h: body(200, http.Header{"Content-Type": {"text/html"}}, []byte("<html>oops</html>")), outcome: fetcher.Rejected, label: "invalid_manifest", status: 200, contains: "not_json"},
		{name: "empty body", h: body(200, nil, nil), outcome: fetcher.Rejected, label: "invalid_manifest", status: 200, contains: "not_json"},
		{name: "array", h: body(200, nil, []byte(`["l"]`)), outcome: fetcher.Rejected, label: "invalid_manifest", status: 200, contains: "not_object"},
		{name: "too large announced", h: body(200, nil, bytes.Repeat([]byte(" "), 2048)), outcome: fetcher.Rejected, label: "too_large", status: 200},
		{name: "too large unannounced", h: chunked(bytes.Repeat([]byte(" "), 2048)), outcome: fetcher.Rejected, label: "too_large", status: 200},
		{name: "gzip bomb", h: body(200, http.Header{"Content-Encoding": {"gzip"}}, bomb), outcome: fetcher.Rejected, label: "too_large", status: 200},
		{name: "small gzip bomb", h: body(200, http.Header{"Content-Encoding": {"gzip"}}, smallBomb), outcome: fetcher.Rejected, label: "too_large", status: 200, contains: "decompressed"},
		{name: "corrupt gzip", h: body(200, http.Header{"Content-Encoding": {"gzip"}}, []byte("not gzip at all")), outcome: fetcher.Rejected, label: "invalid_manifest", status: 200, contains: "bad_encoding"},
		{name: "brotli", h: body(200, http.Header{"Content-Encoding": {"br"}}, good), outcome: fetcher.Rejected, label: "unsupported_format", status: 200},
		{name: "short body", h: lying(200, 500, good), outcome: fetcher.Transient, label: "network"},
		{name: "hang", h: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, outcome: fetcher.Transient, label: "timeout"},
		{name: "hang in body", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("{"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, outcome: fetcher.Transient, label: "timeout"},
		{name: "canceled", h: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctxBG)
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, outcome: fetcher.Transient, label: "canceled"},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			api := newRecorder(t, c.h)
			cl := newTestClient(api.URL, Options{MaxManifestBytes: 1024, Timeout: 500 * time.Millisecond})
			ctx, cancel := context.WithCancel(ctxBG)
			if c.ctx != nil {
				ctx, cancel = c.ctx()
			}
			defer cancel()
			r := cl.FetchManifest(ctx, testKey)
			seen[r.Label] = true
			if r.Outcome != c.outcome || r.Label != c.label || r.Status != c.status || r.RetryAfter != c.retry || len(r.Manifest.Entries) != c.entries {
				t.Errorf("got outcome %v label %s status %d retry %v entries %d (err %v); want %v %s %d %v %d",
					r.Outcome, r.Label, r.Status, r.RetryAfter, len(r.Manifest.Entries), r.Err, c.outcome, c.label, c.status, c.retry, c.entries)
			}
			if (r.Err == nil) != (c.outcome == fetcher.Updated) {
				t.Errorf("err = %v", r.Err)
			}
			if r.Err != nil && strings.Contains(r.Err.Error(), testKey.Reveal()) {
				t.Errorf("error carries the key: %v", r.Err)
			}
			if c.contains != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), c.contains)) {
				t.Errorf("err = %v, want it to mention %s", r.Err, c.contains)
			}
			if _, ok := errorsAs[*ManifestError](r.Err); ok != (c.label == "invalid_manifest" || c.label == "too_large") {
				t.Errorf("err %T %v: ManifestError = %v", r.Err, r.Err, ok)
			}
			if !slices.Contains(ManifestLabels, r.Label) {
				t.Errorf("label %s not in ManifestLabels", r.Label)
			}
			if len(api.requests()) > 1 {
				t.Errorf("%d requests: FetchManifest never retries or follows", len(api.requests()))
			}
		})
	}

	// No usable base URL.
	for _, base := range []string{"", "api.statsigcdn.com", "ftp://x", "https://"} {
		r := newTestClient(base, Options{}).FetchManifest(ctxBG, testKey)
		if r.Outcome != fetcher.Transient || r.Label != "network" || r.Err == nil {
			t.Errorf("base %q: %+v", base, r)
		}
		seen[r.Label] = true
	}
	for _, l := range ManifestLabels {
		if !seen[l] {
			t.Errorf("label %s never produced", l)
		}
	}
}

func body(status int, h http.Header, b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		w.Write(b)
	}
}

// chunked answers without a Content-Length.
func chunked(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		w.Write(b)
	}
}

// lying announces cl bytes and sends b, then closes the connection.
func lying(status int, cl int, b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", itoa(int64(cl)))
		w.WriteHeader(status)
		w.Write(b)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}
}

func TestFetchManifestScreens(t *testing.T) {
	var manifest string
	api := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(manifest)) })
	other := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {})
	k := testKey.Reveal()
	e := func(name, url string, size, ct int64) string {
		return `"` + name + `":{"name":"` + name + `","size":` + itoa(size) + `,"url":"` + url + `","creationTime":` + itoa(ct) + `,"fileID":"F"}`
	}
	now := testNow.UnixMilli()
	manifest = "{" + strings.Join([]string{
		e("ok", other.URL+"/v1/download_id_list_file/ok", 10, now),
		e("same_origin_key", api.URL+"/v1/download_id_list_file/x?k="+k, 10, now),
		e("other_origin_key", other.URL+"/v1/download_id_list_file/x?sv=1&k="+k, 10, now),
		e("other_origin_key_in_path", other.URL+"/"+k+"/x", 10, now),
		e("other_origin_escaped_key", other.URL+"/x?k=%73"+k[1:], 10, now),
		e("http_same_host_key", strings.Replace(api.URL, "http://", "https://", 1)+"/x?k="+k, 10, now),
		e("big", other.URL+"/big", 1001, now),
		e("future", other.URL+"/f", 10, now+2*time.Hour.Milliseconds()),
		e(k, other.URL+"/x", 10, now), // a name holding the key
	}, ",") + "}"
	c := newTestClient(api.URL, Options{MaxListBytes: 1000})
	r := c.FetchManifest(ctxBG, testKey)
	if r.Outcome != fetcher.Updated {
		t.Fatal(r)
	}
	if got := r.Manifest.Names(); !slices.Equal(got, []string{"ok", "same_origin_key"}) {
		t.Errorf("entries %v", got)
	}
	var got []string
	for _, rf := range r.Manifest.Refused {
		got = append(got, rf.Name+":"+rf.Reason)
		if strings.Contains(rf.Name+rf.Detail, k) {
			t.Errorf("refusal carries the key: %+v", rf)
		}
	}
	want := []string{
		"big:too_large", "future:future_creation_time", "http_same_host_key:key_in_url", "other_origin_escaped_key:key_in_url",
		"other_origin_key:key_in_url", "other_origin_key_in_path:key_in_url", testKey.Redacted() + ":bad_name",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("refused\n%v\nwant\n%v", got, want)
	}
	if len(other.requests()) != 0 {
		t.Error("FetchManifest fetched a list")
	}
}

func TestRetryAfter(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"": 0, "0": 0, "5": 5 * time.Second, " 7 ": 7 * time.Second, "-1": 0, "+5": 0, "1.5": 0, "soon": 0,
		"86401": fetcher.MaxRetryAfterHint, "99999999999999999999999": fetcher.MaxRetryAfterHint,
		"Fri, 31 Dec 9999 23:59:59 GMT": fetcher.MaxRetryAfterHint, "Thu, 15 Jan 2026 11:00:00 GMT": 0,
	} {
		if got := retryAfter(s, testNow); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	parse := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"https://api.statsigcdn.com", "https://api.statsigcdn.com/v1/x?k=1", true},
		{"https://api.statsigcdn.com", "https://API.StatsigCDN.com:443/x", true},
		{"http://127.0.0.1", "http://127.0.0.1:80/x", true},
		{"http://[::1]:8080", "http://[::1]:8080/x", true},
		{"https://api.statsigcdn.com", "http://api.statsigcdn.com/x", false},
		{"https://api.statsigcdn.com", "https://api.statsigcdn.com:8443/x", false},
		{"https://api.statsigcdn.com", "https://api.statsigcdn.com.evil.example/x", false},
		{"https://api.statsigcdn.com", "https://statsigcdn.com/x", false},
		{"http://127.0.0.1:80", "http://localhost/x", false},
	} {
		if got := sameOrigin(parse(c.a), parse(c.b)); got != c.same {
			t.Errorf("sameOrigin(%s, %s) = %v", c.a, c.b, got)
		}
	}
}
