package fetcher

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// testNow is the fixed clock of the tests that depend on one.
var testNow = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

// serve starts h and returns a client of it with o's settings; BaseURL,
// Timeout, MaxPayloadBytes and Now default to the server, 10 s (generous,
// for loaded machines), 1 MiB and testNow.
func serve(t *testing.T, o Options, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	o.BaseURL = srv.URL
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxPayloadBytes == 0 {
		o.MaxPayloadBytes = 1 << 20
	}
	if o.Now == nil {
		o.Now = func() time.Time { return testNow }
	}
	return New(o)
}

// v1Body is a minimal valid v1 payload with the given time.
func v1Body(ms int64) string {
	return fmt.Sprintf(`{"has_updates":true,"time":%d,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, ms)
}

func ms(d time.Duration) int64 { return testNow.Add(d).UnixMilli() }

func TestRetryAfter(t *testing.T) {
	cases := []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"1", time.Second},
		{"120", 120 * time.Second},
		{" 120 ", 120 * time.Second},
		{"\t120", 120 * time.Second},
		{"86400", MaxRetryAfterHint},
		{"86401", MaxRetryAfterHint},
		{"31536000", MaxRetryAfterHint}, // a year
		{"9223372036", MaxRetryAfterHint},
		{"9223372036854775807", MaxRetryAfterHint},
		{"99999999999999999999", MaxRetryAfterHint},
		{"-1", 0},
		{"-9223372036854775808", 0},
		{"+5", 0},
		{"1.5", 0},
		{"1e3", 0},
		{"0x10", 0},
		{"120s", 0},
		{"1 2", 0},
		{"soon", 0},
		{"Fri, 31 Dec 9999 23:59:59 GMT", MaxRetryAfterHint},
		{"Thu, 15 Jan 2026 12:01:30 GMT", 90 * time.Second},
		{"Thu, 15 Jan 2026 12:00:00 GMT", 0}, // now
		{"Thu, 15 Jan 2026 11:59:59 GMT", 0}, // the past
		{"Fri, 16 Jan 2026 12:00:00 GMT", MaxRetryAfterHint},
		{"Sat, 17 Jan 2026 12:00:00 GMT", MaxRetryAfterHint},
		{"Thursday, 15-Jan-26 12:01:00 GMT", time.Minute}, // RFC 850
		{"Sunday, 06-Nov-94 08:49:37 GMT", 0},
		{"Saturday, 31-Dec-67 23:59:59 GMT", MaxRetryAfterHint},
		{"Thu Jan 15 12:02:00 2026", 2 * time.Minute}, // asctime
		{"Sun Nov  6 08:49:37 1994", 0},
		{"Thu, 15 Jan 2026 12:01:30", 0}, // no zone: not an HTTP-date
	}
	for _, c := range cases {
		got := retryAfter(c.header, testNow)
		if got != c.want {
			t.Errorf("retryAfter(%q) = %v, want %v", c.header, got, c.want)
		}
		if got < 0 || got > MaxRetryAfterHint {
			t.Errorf("retryAfter(%q) = %v, outside [0, %v]", c.header, got, MaxRetryAfterHint)
		}
	}
}

// Every answer other than 200 passes its Retry-After on, bounded.
func TestRetryAfterOverHTTP(t *testing.T) {
	cases := []struct {
		status int
		header string
		want   time.Duration
	}{
		{503, "Fri, 31 Dec 9999 23:59:59 GMT", MaxRetryAfterHint},
		{503, "Thu, 15 Jan 2026 12:01:30 GMT", 90 * time.Second},
		{429, "31536000", MaxRetryAfterHint},
		{429, "99999999999999999999", MaxRetryAfterHint},
		{429, "-1", 0},
		{500, "120", 120 * time.Second},
		{502, "7", 7 * time.Second},
		{408, "5", 5 * time.Second},
		{404, "30", 30 * time.Second},
		{401, "60", time.Minute},
		{301, "3", 3 * time.Second},
		{204, "4", 4 * time.Second},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d %s", c.status, c.header), func(t *testing.T) {
			cl := serve(t, Options{}, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", c.header)
				w.WriteHeader(c.status)
			})
			r := cl.Fetch(context.Background(), testKey, keys.V1, 0)
			if r.Status != c.status || r.RetryAfter != c.want {
				t.Fatalf("status %d, RetryAfter %v; want %d, %v", r.Status, r.RetryAfter, c.status, c.want)
			}
		})
	}
}

func TestCheckTime(t *testing.T) {
	now := testNow.UnixMilli()
	cases := []struct {
		name string
		lcut int64
		now  time.Time
		skew time.Duration
		ok   bool
	}{
		{"past", now - 1, testNow, time.Hour, true},
		{"now", now, testNow, time.Hour, true},
		{"at the skew", now + time.Hour.Milliseconds(), testNow, time.Hour, true},
		{"a millisecond past the skew", now + time.Hour.Milliseconds() + 1, testNow, time.Hour, false},
		{"no skew, now", now, testNow, 0, true},
		{"no skew, a millisecond ahead", now + 1, testNow, 0, false},
		{"negative skew counts as none", now, testNow, -time.Hour, true},
		{"negative skew, ahead", now + 1, testNow, -time.Hour, false},
		{"int64 max", math.MaxInt64, testNow, time.Hour, false},
		{"int64 max, largest skew", math.MaxInt64, testNow, math.MaxInt64, false},
		{"largest skew", now + 1<<40, testNow, math.MaxInt64, true},
		// now + skew overflows int64 milliseconds: saturates, does not wrap.
		{"clock at the end of int64", 5, time.UnixMilli(math.MaxInt64 - 10), time.Second, true},
		{"clock at the end of int64, int64 max", math.MaxInt64, time.UnixMilli(math.MaxInt64 - 10), time.Second, true},
		{"clock before 1970", 5, time.UnixMilli(-1000), time.Second, false},
		{"clock before 1970, int64 max", math.MaxInt64, time.UnixMilli(math.MinInt64), time.Hour, false},
	}
	for _, c := range cases {
		err := CheckTime(c.lcut, c.now, c.skew)
		if c.ok {
			if err != nil {
				t.Errorf("%s: %v, want nil", c.name, err)
			}
			continue
		}
		var ip *InvalidPayloadError
		if !errors.As(err, &ip) || ip.Reason != "future_time" {
			t.Errorf("%s: %v, want reason future_time", c.name, err)
		}
	}
}

func TestFutureTime(t *testing.T) {
	cases := []struct {
		name    string
		skew    time.Duration
		time    int64
		since   int64
		header  string // x-since-time
		body    string // overrides v1Body(time)
		outcome Outcome
		class   string
		cursor  int64
		mismat  bool
	}{
		{name: "within the default skew", time: ms(59 * time.Minute), outcome: Updated, cursor: ms(59 * time.Minute)},
		{name: "beyond the default skew", time: ms(61 * time.Minute), outcome: Rejected, class: "invalid_payload:future_time"},
		{name: "years ahead", time: ms(10 * 365 * 24 * time.Hour), outcome: Rejected, class: "invalid_payload:future_time"},
		{name: "int64 max", time: math.MaxInt64, outcome: Rejected, class: "invalid_payload:future_time"},
		{name: "within a set skew", skew: 5 * time.Minute, time: ms(4 * time.Minute), outcome: Updated, cursor: ms(4 * time.Minute)},
		{name: "beyond a set skew", skew: 5 * time.Minute, time: ms(6 * time.Minute), outcome: Rejected, class: "invalid_payload:future_time"},
		{name: "future header ignored", time: ms(-time.Second), header: strconv.FormatInt(ms(2*time.Hour), 10),
			outcome: Updated, cursor: ms(-time.Second), mismat: true},
		{name: "int64 max header ignored", time: ms(-time.Second), header: strconv.FormatInt(math.MaxInt64, 10),
			outcome: Updated, cursor: ms(-time.Second), mismat: true},
		{name: "header within the skew is the cursor", time: ms(-time.Second), header: strconv.FormatInt(ms(30*time.Minute), 10),
			outcome: Updated, cursor: ms(30 * time.Minute), mismat: true},
		{name: "header equal to the body", time: ms(-time.Second), header: strconv.FormatInt(ms(-time.Second), 10),
			outcome: Updated, cursor: ms(-time.Second)},
		{name: "no update, future header ignored", since: 1000, body: fakecdn.NoUpdateBody, header: strconv.FormatInt(ms(2*time.Hour), 10),
			outcome: NoUpdate, cursor: 0, mismat: true},
		{name: "no update, header is the cursor", since: 1000, body: fakecdn.NoUpdateBody, header: strconv.FormatInt(ms(-time.Minute), 10),
			outcome: NoUpdate, cursor: ms(-time.Minute)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := c.body
			if body == "" {
				body = v1Body(c.time)
			}
			cl := serve(t, Options{MaxClockSkew: c.skew}, func(w http.ResponseWriter, r *http.Request) {
				if c.header != "" {
					w.Header().Set("X-Since-Time", c.header)
				}
				_, _ = w.Write([]byte(body))
			})
			r := cl.Fetch(context.Background(), testKey, keys.V1, c.since)
			if r.Outcome != c.outcome || r.Class != c.class || r.Cursor != c.cursor || r.HeaderMismatch != c.mismat {
				t.Fatalf("got %s/%s cursor %d mismatch %v (%v); want %s/%s cursor %d mismatch %v",
					r.Outcome, r.Class, r.Cursor, r.HeaderMismatch, r.Err, c.outcome, c.class, c.cursor, c.mismat)
			}
			if c.header != "" && strconv.FormatInt(r.HeaderLcut, 10) != c.header {
				t.Errorf("HeaderLcut = %d, want the header %s", r.HeaderLcut, c.header)
			}
			if c.outcome == Rejected {
				var ip *InvalidPayloadError
				if !errors.As(r.Err, &ip) || ip.Reason != "future_time" || r.Body != nil || r.Label != "invalid_payload" {
					t.Fatalf("err %v, body %d bytes, label %s; want an InvalidPayloadError future_time, no body, invalid_payload", r.Err, len(r.Body), r.Label)
				}
			}
		})
	}
}

// The real clock is the default: a payload a day ahead of it is refused.
func TestFutureTimeDefaultClock(t *testing.T) {
	future := time.Now().Add(24 * time.Hour).UnixMilli()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(v1Body(future)))
	}))
	t.Cleanup(srv.Close)
	c := New(Options{BaseURL: srv.URL, Timeout: 10 * time.Second, MaxPayloadBytes: 1 << 20})
	if r := c.Fetch(context.Background(), testKey, keys.V1, 0); r.Class != "invalid_payload:future_time" {
		t.Fatalf("got %s/%s (%v), want rejected/invalid_payload:future_time", r.Outcome, r.Class, r.Err)
	}
}

// x-cache-hit is only a hint: a proxy that tags cached full answers with it
// must not stop every write.
func TestCacheHitDoesNotOverrideBody(t *testing.T) {
	p := fakecdn.Project{Lcut: 5000, Value: 1}
	cases := []struct {
		name    string
		body    []byte
		since   int64
		outcome Outcome
	}{
		{"full body tagged as a hit", fakecdn.V1Body(testKey, p), 0, Updated},
		{"full body tagged as a hit, conditional", fakecdn.V1Body(testKey, p), 4000, Updated},
		{"no-update body tagged as a hit", []byte(fakecdn.NoUpdateBody), 5000, NoUpdate},
		{"invalid body tagged as a hit", []byte(`{"has_updates":true}`), 4000, Rejected},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := serve(t, Options{}, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Cache-Hit", "true")
				w.Header().Set("X-Since-Time", "5000")
				_, _ = w.Write(c.body)
			})
			r := cl.Fetch(context.Background(), testKey, keys.V1, c.since)
			if r.Outcome != c.outcome || !r.CacheHit {
				t.Fatalf("got %s (%v), CacheHit %v; want %s, CacheHit true", r.Outcome, r.Err, r.CacheHit, c.outcome)
			}
			if c.outcome == Updated && (r.Meta.Time != 5000 || string(r.Body) != string(c.body)) {
				t.Fatalf("meta %+v, %d bytes", r.Meta, len(r.Body))
			}
		})
	}
}

// "No updates" to a request that asked for everything confirms nothing.
func TestNoUpdateUnconditional(t *testing.T) {
	cl := serve(t, Options{}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Since-Time", "5000")
		_, _ = w.Write([]byte(fakecdn.NoUpdateBody))
	})
	r := cl.Fetch(context.Background(), testKey, keys.V2, 0)
	var ip *InvalidPayloadError
	if r.Outcome != Rejected || r.Class != "invalid_payload:no_update_unconditional" || r.Label != "no_update_unconditional" ||
		!errors.As(r.Err, &ip) || ip.Reason != "no_update_unconditional" || r.Cursor != 0 {
		t.Fatalf("got %s/%s label %s cursor %d (%v)", r.Outcome, r.Class, r.Label, r.Cursor, r.Err)
	}
	if r := cl.Fetch(context.Background(), testKey, keys.V2, 5000); r.Outcome != NoUpdate || r.Label != "no_update" || r.Cursor != 5000 {
		t.Fatalf("conditional: got %s label %s cursor %d (%v)", r.Outcome, r.Label, r.Cursor, r.Err)
	}
}

// The key never reaches an error, whatever type the error keeps.
func TestFailureRedactsInvalidPayloadDetail(t *testing.T) {
	c := New(Options{BaseURL: "http://127.0.0.1:1"})
	r := c.failure(testKey, Rejected, "invalid_payload:not_json", 200,
		&InvalidPayloadError{Reason: "not_json", Detail: "near " + testKey.Reveal()})
	var ip *InvalidPayloadError
	if !errors.As(r.Err, &ip) || ip.Reason != "not_json" {
		t.Fatalf("err %v lost its type", r.Err)
	}
	if strings.Contains(r.Err.Error(), testKey.Reveal()) || !strings.Contains(r.Err.Error(), testKey.Redacted()) {
		t.Fatalf("err %q is not redacted", r.Err)
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", " 120 ", "-1", "1.5", "99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT",
		"Thursday, 15-Jan-26 12:01:00 GMT", "Thu Jan 15 12:02:00 2026"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := retryAfter(s, testNow)
		if d < 0 || d > MaxRetryAfterHint {
			t.Fatalf("retryAfter(%q) = %v, outside [0, %v]", s, d, MaxRetryAfterHint)
		}
		trimmed := strings.Trim(s, " \t")
		if n, err := strconv.ParseUint(trimmed, 10, 64); err == nil && trimmed[0] != '+' && n <= 86400 && d != time.Duration(n)*time.Second {
			t.Fatalf("retryAfter(%q) = %v, want %ds", s, d, n)
		}
	})
}

// A conditional poll whose answer does not start within ConditionalTimeout is
// a hang: it times out then, not after the whole Timeout, and holds a poller
// no longer. A full download (no sinceTime) keeps the whole Timeout, and so
// does the body of a conditional answer once its headers came.
func TestConditionalTimeout(t *testing.T) {
	const cond = 100 * time.Millisecond
	body := v1Body(5000)
	var stall atomic.Int64 // how long to wait before the headers, in ms
	var trickle atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Duration(stall.Load()) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		if !trickle.Load() {
			_, _ = w.Write([]byte(body))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		for i := 0; i < len(body); i += len(body) / 4 {
			_, _ = w.Write([]byte(body[i:min(i+len(body)/4, len(body))]))
			w.(http.Flusher).Flush()
			time.Sleep(cond)
		}
	}))
	t.Cleanup(srv.Close)
	c := New(Options{BaseURL: srv.URL, Timeout: 5 * time.Second, ConditionalTimeout: cond, MaxPayloadBytes: 1 << 20})

	stall.Store(3000)
	begin := time.Now()
	r := c.Fetch(context.Background(), testKey, keys.V1, 1000)
	if r.Label != "timeout" || time.Since(begin) > 2*time.Second {
		t.Fatalf("hanging conditional poll: %s (%v) after %v, want timeout after about %v", r.Label, r.Err, time.Since(begin), cond)
	}
	stall.Store(3 * cond.Milliseconds())
	if r := c.Fetch(context.Background(), testKey, keys.V1, 0); r.Label != "updated" {
		t.Fatalf("slow full download: %s (%v), want updated: only conditional polls have the short timeout", r.Label, r.Err)
	}
	stall.Store(0)
	trickle.Store(true)
	if r := c.Fetch(context.Background(), testKey, keys.V1, 1000); r.Label != "updated" {
		t.Fatalf("conditional poll with a slow body: %s (%v), want updated: the body has the whole timeout", r.Label, r.Err)
	}
}
