package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// The hostile-upstream scenarios (issue 11): an upstream that answers, but
// with headers, bodies or refusals meant (or able) to park a key, pin it,
// exhaust the worker's memory, delete what Redis holds or leak a key. Each
// scenario first proves that the fault reached the worker (the fake CDN
// logged the request, a metric counted the refusal, the status shows it) and
// only then asserts what did not happen.

const metricPrefix = "statsig_populator_"

// hostileEnv is the environment of these scenarios: the suite's interval, no
// leader election (one writer from the start), a 1 MiB payload limit and a
// known admin address.
func hostileEnv(s *e2e.Stack, addr string, extra ...string) []string {
	return s.BaseEnv(append([]string{"POLL_INTERVAL=" + interval.String(), "LEADER_ELECTION=false",
		"MAX_PAYLOAD_BYTES=1048576", "ADMIN_ADDR=" + addr}, extra...)...)
}

// startHostile starts a stack and a worker and waits for the initial sync.
func startHostile(t *testing.T, extra ...string) (*e2e.Stack, *e2e.Proc, string) {
	t.Helper()
	s := e2e.NewStack(t)
	addr := e2e.FreeAddr(t)
	p := e2e.Start(t, hostileEnv(s, addr, extra...))
	e2e.WaitFor(t, "initial sync", 15*time.Second, s.AllCurrent)
	return s, p, addr
}

// sample is one sample of the worker's /metrics, by its name without the
// namespace and its labels as exposed (sorted by name), e.g.
// sample(m, "fetches_total", `outcome="too_large",version="v1"`).
func sample(m map[string]float64, name, labels string) float64 {
	if labels == "" {
		return m[metricPrefix+name]
	}
	return m[metricPrefix+name+"{"+labels+"}"]
}

// sampleFamily lists the samples of one metric, for failure messages.
func sampleFamily(m map[string]float64, name string) string {
	var out []string
	for k, v := range m {
		if strings.HasPrefix(k, metricPrefix+name) {
			out = append(out, fmt.Sprintf("%s %v", strings.TrimPrefix(k, metricPrefix), v))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// keyStatusEntry is one keys[] entry of GET /status.
type keyStatusEntry struct {
	Key                 string    `json:"key"`
	Version             string    `json:"version"`
	Lcut                int64     `json:"lcut"`
	Cursor              int64     `json:"cursor"`
	LastOutcome         string    `json:"last_outcome"`
	LastError           string    `json:"last_error"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	NextPoll            time.Time `json:"next_poll"`
	Unauthorized        bool      `json:"unauthorized"`
}

// keyStatus returns the /status entries of k (by its redacted name), and the
// raw JSON.
func keyStatus(t *testing.T, addr string, k keys.SDKKey) ([]keyStatusEntry, string) {
	t.Helper()
	code, body := e2e.AdminGet(addr, "/status")
	if code != 200 {
		return nil, body
	}
	var st struct {
		Keys []keyStatusEntry `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status is not JSON: %v\n%s", err, body)
	}
	var out []keyStatusEntry
	for _, e := range st.Keys {
		if e.Key == k.Redacted() {
			out = append(out, e)
		}
	}
	return out, body
}

// requestsAfter is the fake CDN's log of k's requests for v received after t0.
func requestsAfter(s *e2e.Stack, k keys.SDKKey, v keys.Version, t0 time.Time) []fakecdn.Request {
	var out []fakecdn.Request
	for _, r := range s.CDN.RequestsFor(k, v) {
		if r.At.After(t0) {
			out = append(out, r)
		}
	}
	return out
}

// largestPollGap is the longest time between two consecutive requests of k for
// v in [from, to], counting from the last request before from and up to to,
// so that a schedule that stalls at either end shows.
func largestPollGap(s *e2e.Stack, k keys.SDKKey, v keys.Version, from, to time.Time) time.Duration {
	var at []time.Time
	var before time.Time
	for _, r := range s.CDN.RequestsFor(k, v) {
		switch {
		case r.At.Before(from):
			before = r.At
		case !r.At.After(to):
			at = append(at, r.At)
		}
	}
	if !before.IsZero() {
		at = append([]time.Time{before}, at...)
	} else {
		at = append([]time.Time{from}, at...)
	}
	at = append(at, to)
	var gap time.Duration
	for i := 1; i < len(at); i++ {
		gap = max(gap, at[i].Sub(at[i-1]))
	}
	return gap
}

// vmHWM is a process's peak resident set size (VmHWM) in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the worker's peak RSS: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}

var bothVersions = []keys.Version{keys.V1, keys.V2}

// waitDetail is e2e.WaitFor for a condition that says what it last saw, so
// that a timeout reports it.
func waitDetail(t *testing.T, what string, limit time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	begin := time.Now()
	for {
		ok, detail := cond()
		if ok {
			return time.Since(begin)
		}
		if time.Since(begin) > limit {
			t.Fatalf("%s: not true after %v; last seen: %s", what, limit, detail)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loopLag is how long ago the scheduling loop last went round, from /status.
func loopLag(t *testing.T, addr string) time.Duration {
	t.Helper()
	code, body := e2e.AdminGet(addr, "/status")
	if code != 200 {
		t.Fatalf("/status: %d %s", code, body)
	}
	var st struct {
		LoopAliveAt time.Time `json:"loop_alive_at"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status is not JSON: %v", err)
	}
	return time.Since(st.LoopAliveAt)
}

// TestHostileRetryAfter answers one key with a 503 or 429 whose Retry-After
// lies far in the future (the year 9999, a year in seconds, 2^63 ns in
// seconds): the other key keeps its schedule, /healthz stays 200, the faulty
// key is parked no later than the 10-minute cap and not hammered either, and
// Redis keeps its last good payload.
func TestHostileRetryAfter(t *testing.T) {
	const (
		window  = 6 * interval
		maxPark = 10 * time.Minute // max(10m, POLL_INTERVAL)
		slack   = 5 * time.Second
	)
	for _, status := range []int{503, 429} {
		for _, ra := range []string{"Fri, 31 Dec 9999 23:59:59 GMT", "31536000", "9223372036"} {
			t.Run(fmt.Sprintf("%d Retry-After %s", status, ra), func(t *testing.T) {
				t.Parallel()
				s, _, addr := startHostile(t)
				bad, good := e2e.KeyA, e2e.KeyB
				before := snapshot(s, bad)
				m0 := e2e.Metrics(addr)
				s.CDN.SetFault(bad, fakecdn.Fault{Status: status, RetryAfter: ra})
				t0 := time.Now()
				s.CDN.Change(bad, 100) // news the faulty key must not get
				s.CDN.Change(good, 100)

				// The fault ran: the CDN answered both versions of the faulty
				// key with it, and the worker recorded the failures.
				// (One version is enough to start watching; both must have
				// been answered by the end.)
				waitDetail(t, "the fault answered and recorded", 5*time.Second, func() (bool, string) {
					st, _ := keyStatus(t, addr, bad)
					for _, e := range st {
						if e.ConsecutiveFailures > 0 && len(requestsAfter(s, bad, keys.Version(e.Version), t0)) > 0 {
							return true, ""
						}
					}
					return false, fmt.Sprintf("status of the faulty key: %+v", st)
				})
				// Watch liveness for six intervals: /healthz, and how long ago
				// the scheduling loop last went round (at least every second).
				probes, failures := 0, 0
				var lag time.Duration
				for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
					probes++
					if code, _ := e2e.AdminGet(addr, "/healthz"); code != 200 {
						failures++
					}
					lag = max(lag, loopLag(t, addr))
				}
				t1 := time.Now()
				if failures > 0 {
					t.Errorf("/healthz failed %d of %d probes during the fault", failures, probes)
				}
				if lag > 1500*time.Millisecond {
					t.Errorf("the scheduling loop went %v without a round during the fault", lag)
				}
				var gap time.Duration
				for _, v := range bothVersions {
					gap = max(gap, largestPollGap(s, good, v, t0, t1))
				}
				if gap > 2*interval {
					t.Errorf("the healthy key's largest poll gap during the fault was %v (interval %v)", gap, interval)
				}
				if !s.Current(good) {
					e2e.WaitFor(t, "healthy key current", 2*interval, func() bool { return s.Current(good) })
				}
				// Not a hot loop either: the faulty key is not asked more often
				// than the interval would.
				var faultyPolls []int
				for _, v := range bothVersions {
					n := len(requestsAfter(s, bad, v, t0))
					faultyPolls = append(faultyPolls, n)
					if n == 0 {
						t.Errorf("%s of the faulty key was never asked during the fault", v)
					}
					if limit := int(t1.Sub(t0)/interval) + 4; n > limit {
						t.Errorf("%s: the faulty key was asked %d times in %v (at most %d expected)", v, n, t1.Sub(t0).Round(time.Millisecond), limit)
					}
				}
				st, _ := keyStatus(t, addr, bad)
				now := time.Now()
				var latest time.Duration
				for _, e := range st {
					ahead := e.NextPoll.Sub(now)
					latest = max(latest, ahead)
					if e.NextPoll.After(now.Add(maxPark + slack)) {
						t.Errorf("%s: next_poll %v is %v ahead, past the %v cap", e.Version, e.NextPoll.Format(time.RFC3339), ahead.Round(time.Second), maxPark)
					}
				}
				if len(st) != len(bothVersions) {
					t.Errorf("/status has %d entries for the faulty key, want %d", len(st), len(bothVersions))
				}
				if !sameSnapshot(before, snapshot(s, bad)) {
					t.Error("Redis changed for the faulty key during the fault")
				}
				m := e2e.Metrics(addr)
				failing := "http_5xx"
				if status == 429 {
					failing = "http_429"
				}
				kf := sample(m, "keys_failing", `outcome="`+failing+`"`)
				if kf < 1 {
					t.Errorf("keys_failing{outcome=%q} = %v during the fault", failing, kf)
				}
				age0, age := sample(m0, "oldest_success_age_seconds", ""), sample(m, "oldest_success_age_seconds", "")
				if age < t1.Sub(t0).Seconds()-0.5 {
					t.Errorf("oldest_success_age_seconds %.2f after %v of fault (%.2f before)", age, t1.Sub(t0).Round(time.Millisecond), age0)
				}
				record(t, fmt.Sprintf("hostile: %d with Retry-After: %s", status, ra),
					fmt.Sprintf("%d + Retry-After %q on one key for %v", status, ra, t1.Sub(t0).Round(100*time.Millisecond)),
					fmt.Sprintf("the last good payload; the other key's largest poll gap %v (interval %v); /healthz 200 in %d/%d probes, loop round at most %v ago; "+
						"faulty key asked %v times (v1, v2), next_poll %v ahead; keys_failing{outcome=%q}=%v; oldest_success_age %.1f → %.1f s",
						gap.Round(time.Millisecond), interval, probes-failures, probes, lag.Round(time.Millisecond), faultyPolls, latest.Round(time.Second), failing, kf, age0, age),
					0)
			})
		}
	}
}

// TestHostileFutureTime serves payloads dated a day ahead (body time and
// x-since-time), and normal bodies whose x-since-time is a day ahead.
func TestHostileFutureTime(t *testing.T) {
	t.Run("body time a day ahead", func(t *testing.T) {
		s, _, addr := startHostile(t)
		bad, good := e2e.KeyA, e2e.KeyB
		before := snapshot(s, bad)
		m0 := e2e.Metrics(addr)
		s.CDN.SetFault(bad, fakecdn.Fault{FutureTime: true})
		t0 := time.Now()
		// The refusal is counted, per version, and the fetch is labelled.
		series := func(m map[string]float64, v keys.Version) (float64, float64) {
			return sample(m, "invalid_payloads_total", `reason="future_time",version="`+string(v)+`"`),
				sample(m, "fetches_total", `outcome="invalid_payload",version="`+string(v)+`"`)
		}
		var refused []float64
		waitDetail(t, "future payloads refused", 5*time.Second, func() (bool, string) {
			m := e2e.Metrics(addr)
			refused = refused[:0]
			for _, v := range bothVersions {
				r, f := series(m, v)
				r0, f0 := series(m0, v)
				if r-r0 < 2 || f-f0 < 2 {
					return false, fmt.Sprintf("%s: invalid_payloads_total{future_time} +%v, fetches_total{invalid_payload} +%v; %s", v, r-r0, f-f0, sampleFamily(m, "invalid_payloads_total"))
				}
				refused = append(refused, r-r0)
			}
			return true, ""
		})
		for _, v := range bothVersions {
			if len(requestsAfter(s, bad, v, t0)) == 0 {
				t.Fatalf("%s: no request reached the fake during the fault", v)
			}
		}
		s.CDN.Change(good, 100)
		e2e.WaitFor(t, "healthy key current", 2*interval+500*time.Millisecond, func() bool { return s.Current(good) })
		if !sameSnapshot(before, snapshot(s, bad)) {
			t.Fatal("Redis changed under future-dated payloads")
		}
		kf := sample(e2e.Metrics(addr), "keys_failing", `outcome="invalid_payload"`)
		if kf < 1 {
			t.Errorf(`keys_failing{outcome="invalid_payload"} = %v during the fault`, kf)
		}
		// Not pinned: normal payloads flow again, twice.
		s.CDN.ClearFaults()
		s.CDN.Change(bad, 100)
		recovery := e2e.WaitFor(t, "updates flow after the fault", 2*interval+500*time.Millisecond, func() bool { return s.Current(bad) })
		s.CDN.Change(bad, 100)
		e2e.WaitFor(t, "and keep flowing", 2*interval+500*time.Millisecond, func() bool { return s.Current(bad) })
		checkLcutIsCDNs(t, s, bad)
		record(t, "hostile: payload time a day ahead (MAX_CLOCK_SKEW 1h)",
			"has_updates:true, time and x-since-time now+24h, on one key",
			fmt.Sprintf("the last good payload; invalid_payloads_total{reason=future_time} +%v (v1, v2), keys_failing{invalid_payload}=%v; the other key kept updating; not pinned: two later changes written", refused, kf),
			recovery)
	})

	t.Run("x-since-time a day ahead", func(t *testing.T) {
		s, _, addr := startHostile(t)
		k := e2e.KeyA
		future := time.Now().Add(24 * time.Hour).UnixMilli()
		s.CDN.SetFault(k, fakecdn.Fault{Header: map[string]string{"X-Since-Time": strconv.FormatInt(future, 10)}})
		t0 := time.Now()
		s.CDN.Change(k, 100)
		took := e2e.WaitFor(t, "the normal body written", 2*interval+500*time.Millisecond, func() bool { return s.Current(k) })
		written := time.Now()
		// Then several more polls, every one answered with the future header.
		e2e.WaitFor(t, "three polls after the write", 5*time.Second, func() bool {
			for _, v := range bothVersions {
				if len(requestsAfter(s, k, v, written)) < 3 {
					return false
				}
			}
			return true
		})
		var cursors []string
		for _, v := range bothVersions {
			reqs := requestsAfter(s, k, v, t0)
			for _, r := range reqs {
				if r.SinceTime >= future || r.SinceTime > time.Now().UnixMilli() {
					t.Errorf("%s: the worker asked with sinceTime=%d, the future x-since-time (%d)", v, r.SinceTime, future)
				}
			}
			cursors = append(cursors, fmt.Sprintf("%s sinceTime=%d", v, reqs[len(reqs)-1].SinceTime))
		}
		checkLcutIsCDNs(t, s, k)
		// Still not pinned while the header lies.
		s.CDN.Change(k, 100)
		next := e2e.WaitFor(t, "next change written", 2*interval+500*time.Millisecond, func() bool { return s.Current(k) })
		m := e2e.Metrics(addr)
		mismatch := sample(m, "lcut_header_mismatch_total", `version="v1"`) + sample(m, "lcut_header_mismatch_total", `version="v2"`)
		record(t, "hostile: x-since-time a day ahead on a normal body",
			"x-since-time now+24h on every answer for one key, normal bodies",
			fmt.Sprintf("the new payloads with their own lcut; later requests carried the body time (%s), never the future one; lcut_header_mismatch_total=%v; the next change written in %v",
				strings.Join(cursors, ", "), mismatch, next.Round(time.Millisecond)),
			took)
	})
}

// checkLcutIsCDNs fails unless every target of k holds the CDN's lcut.
func checkLcutIsCDNs(t *testing.T, s *e2e.Stack, k keys.SDKKey) {
	t.Helper()
	want := strconv.FormatInt(s.CDN.Project(k).Lcut, 10)
	for key, h := range snapshot(s, k) {
		if h["lcut"] != want {
			t.Errorf("%s holds lcut %s, want %s", key, h["lcut"], want)
		}
	}
}

// TestHostileGzip serves gzip streams made to hurt: a trailer claiming 4 GiB,
// a 256 MiB bomb (in 260 KB) and a corrupt stream. Each is refused, Redis
// keeps the last good payload, and the worker's peak RSS barely moves.
func TestHostileGzip(t *testing.T) {
	const rssLimit = 64 << 20
	s, p, addr := startHostile(t, "FETCH_TIMEOUT=5s")
	pid := p.Cmd.Process.Pid
	k := e2e.KeyA
	type refusal struct{ name, labels string }
	tooLarge := func(v keys.Version) refusal {
		return refusal{"fetches_total", `outcome="too_large",version="` + string(v) + `"`}
	}
	badEncoding := func(v keys.Version) refusal {
		return refusal{"invalid_payloads_total", `reason="bad_encoding",version="` + string(v) + `"`}
	}
	invalidPayload := func(v keys.Version) refusal {
		return refusal{"fetches_total", `outcome="invalid_payload",version="` + string(v) + `"`}
	}
	cases := []struct {
		name string
		body func() []byte
		// anyOf: the refusal may be counted under any of these; allOf: under
		// every one of these.
		anyOf, allOf []func(keys.Version) refusal
		failing      []string // keys_failing outcomes that may show it
	}{
		{"trailer (ISIZE) claims 4 GiB", func() []byte { return fakecdn.GzipLyingSize([]byte(s.Body(k, keys.V1)), 0xFFFFFFF0) },
			[]func(keys.Version) refusal{tooLarge, badEncoding}, nil, []string{"too_large", "invalid_payload"}},
		{"256 MiB of spaces in a JSON string", func() []byte { return fakecdn.GzipBomb(s.CDN.Project(k).Lcut, 256) },
			[]func(keys.Version) refusal{tooLarge}, nil, []string{"too_large"}},
		{"corrupt deflate data", func() []byte { return fakecdn.GzipCorrupt([]byte(s.Body(k, keys.V1))) },
			nil, []func(keys.Version) refusal{badEncoding, invalidPayload}, []string{"invalid_payload"}},
	}
	// Control: the peak's growth over a normal change and a few polls of
	// each version, for comparison (the first seconds of a race-enabled
	// process grow its peak whatever it does).
	_ = e2e.Metrics(addr)
	hwmStart := vmHWM(t, pid)
	s.CDN.Change(k, 100)
	e2e.WaitFor(t, "control change written", 2*interval+500*time.Millisecond, func() bool { return s.Current(k) })
	written := time.Now()
	e2e.WaitFor(t, "control polls", 5*time.Second, func() bool {
		return len(requestsAfter(s, k, keys.V1, written)) >= 2 && len(requestsAfter(s, k, keys.V2, written)) >= 2
	})
	control := vmHWM(t, pid) - hwmStart
	t.Logf("control: peak RSS %.1f → %.1f MiB (%+.1f MiB) over a normal change and two polls per version",
		float64(hwmStart)/(1<<20), float64(hwmStart+control)/(1<<20), float64(control)/(1<<20))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.CDN.Change(k, 100) // news, which the fault hides
			body := c.body()
			before := snapshot(s, k)
			m0 := e2e.Metrics(addr) // scraped before the peak is read: a first scrape costs memory of its own
			hwm0 := vmHWM(t, pid)
			s.CDN.SetFault(k, fakecdn.Fault{Body: body, ContentEncoding: "gzip"})
			t0 := time.Now()
			var seen []string
			waitDetail(t, "the stream refused twice per version", 10*time.Second, func() (bool, string) {
				m := e2e.Metrics(addr)
				detail := sampleFamily(m, "fetches_total") + "; " + sampleFamily(m, "invalid_payloads_total")
				seen = seen[:0]
				for _, v := range bothVersions {
					counted := len(c.anyOf) == 0
					for _, f := range c.anyOf {
						r := f(v)
						if d := sample(m, r.name, r.labels) - sample(m0, r.name, r.labels); d >= 2 {
							counted = true
							seen = append(seen, fmt.Sprintf("%s{%s} +%v", r.name, r.labels, d))
						}
					}
					if !counted {
						return false, detail
					}
					for _, f := range c.allOf {
						r := f(v)
						d := sample(m, r.name, r.labels) - sample(m0, r.name, r.labels)
						if d < 2 {
							return false, detail
						}
						seen = append(seen, fmt.Sprintf("%s{%s} +%v", r.name, r.labels, d))
					}
				}
				return true, ""
			})
			for _, v := range bothVersions {
				if len(requestsAfter(s, k, v, t0)) == 0 {
					t.Fatalf("%s: the fake logged no request during the fault", v)
				}
			}
			hwm1 := vmHWM(t, pid)
			if hwm1-hwm0 > rssLimit {
				t.Errorf("peak RSS grew by %.1f MiB (%.1f → %.1f MiB)", float64(hwm1-hwm0)/(1<<20), float64(hwm0)/(1<<20), float64(hwm1)/(1<<20))
			}
			if !sameSnapshot(before, snapshot(s, k)) {
				t.Fatal("Redis changed under the fault")
			}
			m := e2e.Metrics(addr)
			var failing []string
			for _, o := range c.failing {
				if n := sample(m, "keys_failing", `outcome="`+o+`"`); n > 0 {
					failing = append(failing, fmt.Sprintf("keys_failing{%s}=%v", o, n))
				}
			}
			if len(failing) == 0 {
				t.Errorf("keys_failing shows none of %v during the fault", c.failing)
			}
			s.CDN.ClearFaults()
			recovery := e2e.WaitFor(t, "recovery", 2*interval+500*time.Millisecond, func() bool { return s.Current(k) })
			record(t, "hostile: gzip, "+c.name,
				fmt.Sprintf("Content-Encoding: gzip, %d bytes on the wire, MAX_PAYLOAD_BYTES=1048576", len(body)),
				fmt.Sprintf("the last good payload; %s; %s; worker peak RSS (VmHWM, race build) %.1f → %.1f MiB (%+.1f MiB; a normal change before the faults: %+.1f MiB)",
					strings.Join(seen, ", "), strings.Join(failing, ", "), float64(hwm0)/(1<<20), float64(hwm1)/(1<<20), float64(hwm1-hwm0)/(1<<20), float64(control)/(1<<20)),
				recovery)
		})
	}
}

// TestHostileCacheHitFullBody tags a full, newer payload x-cache-hit: true:
// the worker decides from the body and writes it.
func TestHostileCacheHitFullBody(t *testing.T) {
	s, _, addr := startHostile(t)
	k := e2e.KeyA
	s.CDN.SetFault(k, fakecdn.Fault{Header: map[string]string{"X-Cache-Hit": "true"}})
	full0 := s.CDN.Count("full")
	m0 := e2e.Metrics(addr)
	s.CDN.Change(k, 100)
	took := e2e.WaitFor(t, "the tagged payload written", 2*interval+500*time.Millisecond, func() bool { return s.Current(k) })
	if s.CDN.Count("full") <= full0 {
		t.Fatal("the fake served no full body")
	}
	checkLcutIsCDNs(t, s, k)
	m := e2e.Metrics(addr)
	var updated []float64
	for _, v := range bothVersions {
		l := `outcome="updated",version="` + string(v) + `"`
		updated = append(updated, sample(m, "fetches_total", l)-sample(m0, "fetches_total", l))
	}
	record(t, "hostile: x-cache-hit: true on a full, newer payload", "x-cache-hit: true on every answer for one key, then a change",
		fmt.Sprintf("the new payload (decided from the body); fetches_total{updated} +%v (v1, v2)", updated), took)
}

// html403 is a proxy's or CDN's HTML error page, not the CDN's JSON.
var html403 = fakecdn.Fault{Status: 403, Body: []byte("<html>Forbidden</html>"), ContentType: "text/html"}

// TestHostileDeleteOnUnauthorized: with DELETE_ON_UNAUTHORIZED, an HTML 403
// for every key deletes nothing however long it lasts; a 403 for one key
// while the other is served deletes that key's entries, but only after
// UNAUTHORIZED_DELETE_AFTER and three re-checks.
func TestHostileDeleteOnUnauthorized(t *testing.T) {
	const (
		deleteAfter = time.Second
		recheck     = 200 * time.Millisecond
	)
	env := []string{"DELETE_ON_UNAUTHORIZED=true", "UNAUTHORIZED_DELETE_AFTER=" + deleteAfter.String(), "UNAUTHORIZED_RECHECK=" + recheck.String()}
	both := []keys.SDKKey{e2e.KeyA, e2e.KeyB}

	t.Run("every key refused", func(t *testing.T) {
		s, _, addr := startHostile(t, env...)
		before := map[keys.SDKKey]map[string]map[string]string{}
		for _, k := range both {
			before[k] = snapshot(s, k)
		}
		s.CDN.SetFault(keys.SDKKey{}, html403)
		t0 := time.Now()
		// Many re-checks, well past the delete-after time, for every key and
		// version.
		const span = 3 * deleteAfter
		minChecks := 0
		e2e.WaitFor(t, "re-checks past three times the delete-after time", 15*time.Second, func() bool {
			minChecks = 1 << 30
			for _, k := range both {
				for _, v := range bothVersions {
					reqs := requestsAfter(s, k, v, t0)
					if len(reqs) < 8 || reqs[len(reqs)-1].At.Sub(reqs[0].At) < span {
						return false
					}
					minChecks = min(minChecks, len(reqs)-1)
				}
			}
			return true
		})
		m := e2e.Metrics(addr)
		if n := sample(m, "keys_unauthorized", ""); n != 2 {
			t.Errorf("keys_unauthorized = %v, want 2", n)
		}
		for _, k := range both {
			if !sameSnapshot(before[k], snapshot(s, k)) {
				t.Errorf("%v: entries changed or deleted while every key was refused", k)
			}
		}
		s.CDN.ClearFaults()
		s.CDN.Change(e2e.KeyA, 100)
		s.CDN.Change(e2e.KeyB, 100)
		recovery := e2e.WaitFor(t, "both current after the refusals end", recheck+2*interval+2*time.Second, s.AllCurrent)
		record(t, "hostile: HTML 403 for every key, DELETE_ON_UNAUTHORIZED=true",
			fmt.Sprintf("403 text/html <html>Forbidden</html> for both keys for %v (UNAUTHORIZED_DELETE_AFTER=%v, UNAUTHORIZED_RECHECK=%v)", time.Since(t0).Round(100*time.Millisecond), deleteAfter, recheck),
			fmt.Sprintf("every entry, unchanged: nothing deleted after at least %d re-checks per key and version; keys_unauthorized=%v", minChecks, sample(m, "keys_unauthorized", "")),
			recovery)
	})

	t.Run("one key refused", func(t *testing.T) {
		s, _, addr := startHostile(t, env...)
		bad, good := e2e.KeyA, e2e.KeyB
		type target struct {
			key     string
			version keys.Version
		}
		var targets []target
		for _, v := range bothVersions {
			for _, tg := range keys.Targets("", bad, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
				targets = append(targets, target{tg.Key, v})
			}
		}
		rdb := s.Redis.Client()
		exists := func(key string) bool { return rdb.Exists(context.Background(), key).Val() == 1 }
		s.CDN.SetFault(bad, html403)
		t0 := time.Now()
		// The first refusal reached the worker: the CDN answered it and the
		// key counts as unauthorized.
		waitDetail(t, "first refusal recorded", 5*time.Second, func() (bool, string) {
			st, _ := keyStatus(t, addr, bad)
			for _, e := range st {
				if e.Unauthorized {
					return true, ""
				}
			}
			return false, fmt.Sprintf("status of the refused key: %+v", st)
		})
		for _, tg := range targets {
			if !exists(tg.key) {
				t.Fatalf("%s deleted right after the first refusal", tg.key)
			}
		}
		// Watch every target disappear.
		gone := map[string]time.Time{}
		e2e.WaitFor(t, "entries deleted", 10*time.Second, func() bool {
			for _, tg := range targets {
				if _, ok := gone[tg.key]; !ok && !exists(tg.key) {
					gone[tg.key] = time.Now()
				}
			}
			return len(gone) == len(targets)
		})
		// Each version's first refusal: its first request under the fault.
		first := map[keys.Version]time.Time{}
		for _, v := range bothVersions {
			if reqs := requestsAfter(s, bad, v, t0); len(reqs) > 0 {
				first[v] = reqs[0].At
			}
		}
		var after []string
		rechecks := map[keys.Version]int{}
		for _, tg := range targets {
			f, ok := first[tg.version]
			if !ok {
				t.Fatalf("%s: no refused request logged before the delete", tg.version)
			}
			took := gone[tg.key].Sub(f)
			if took < deleteAfter {
				t.Errorf("%s deleted %v after its first refusal, before UNAUTHORIZED_DELETE_AFTER=%v", tg.key, took, deleteAfter)
			}
			n := 0
			for _, r := range requestsAfter(s, bad, tg.version, f) {
				if r.At.Before(gone[tg.key]) {
					n++
				}
			}
			if n < 3 {
				t.Errorf("%s deleted after %d re-checks, want at least 3", tg.key, n)
			}
			rechecks[tg.version] = n
			after = append(after, took.Round(time.Millisecond).String())
		}
		slices.Sort(after)
		// The other key was untouched and kept updating.
		s.CDN.Change(good, 100)
		e2e.WaitFor(t, "healthy key current", 2*interval+500*time.Millisecond, func() bool { return s.Current(good) })
		m := e2e.Metrics(addr)
		if n := sample(m, "keys_unauthorized", ""); n != 1 {
			t.Errorf("keys_unauthorized = %v, want 1", n)
		}
		s.CDN.ClearFaults()
		s.CDN.Change(bad, 100)
		recovery := e2e.WaitFor(t, "refused key rewritten once accepted", recheck+2*interval+2*time.Second, func() bool { return s.Current(bad) })
		record(t, "hostile: HTML 403 for one key, DELETE_ON_UNAUTHORIZED=true",
			fmt.Sprintf("403 text/html for one key, the other served (UNAUTHORIZED_DELETE_AFTER=%v, UNAUTHORIZED_RECHECK=%v)", deleteAfter, recheck),
			fmt.Sprintf("the entries until the threshold (present after the first refusal), then deleted %s after the first refusal, after %d (v1) and %d (v2) re-checks; keys_unauthorized=%v; the other key kept updating",
				strings.Join(after, "/"), rechecks[keys.V1], rechecks[keys.V2], sample(m, "keys_unauthorized", "")),
			recovery)
	})
}

// TestHostileRevokedKeyReadiness starts with one key revoked (401) and the
// other fine: the replica becomes ready, and the gauges show the refused key.
func TestHostileRevokedKeyReadiness(t *testing.T) {
	s := e2e.NewStack(t)
	s.CDN.Revoke(e2e.KeyA, 401)
	addr := e2e.FreeAddr(t)
	start := time.Now()
	e2e.Start(t, hostileEnv(s, addr))
	e2e.WaitFor(t, "the healthy key current", 10*time.Second, func() bool { return s.Current(e2e.KeyB) })
	ready := e2e.WaitFor(t, "/readyz 200", 10*time.Second, func() bool {
		code, _ := e2e.AdminGet(addr, "/readyz")
		return code == 200
	})
	readyAfter := time.Since(start)
	for _, v := range bothVersions {
		if len(s.CDN.RequestsFor(e2e.KeyA, v)) == 0 {
			t.Fatalf("%s: the revoked key was never asked", v)
		}
	}
	if s.CDN.Count("unauthorized") < 2 {
		t.Fatalf("the fake refused %d requests, want both versions", s.CDN.Count("unauthorized"))
	}
	m := e2e.Metrics(addr)
	if n := sample(m, "keys_unauthorized", ""); n != 1 {
		t.Errorf("keys_unauthorized = %v, want 1", n)
	}
	st, _ := keyStatus(t, addr, e2e.KeyA)
	for _, e := range st {
		if !e.Unauthorized {
			t.Errorf("/status: %s of the revoked key not marked unauthorized: %+v", e.Version, e)
		}
	}
	for _, v := range bothVersions {
		for _, tg := range keys.Targets("", e2e.KeyA, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
			if s.Redis.Client().Exists(context.Background(), tg.Key).Val() != 0 {
				t.Errorf("%s written for the revoked key", tg.Key)
			}
		}
	}
	record(t, "hostile: one key revoked (401) from the start", "401 for one key from start-up, the other served",
		fmt.Sprintf("the healthy key's payloads, nothing for the revoked one; /readyz 200 %v after start (%v after the healthy key was current); keys_unauthorized=%v",
			readyAfter.Round(time.Millisecond), ready.Round(time.Millisecond), sample(m, "keys_unauthorized", "")),
		0)
}

// TestHostileWrongTypePrefix plants a HASH where the string format's
// prefix-schema key of KeyA goes: that key name holds the first 20
// characters of the secret, and nothing the worker prints (logs, /status,
// the output of once) may quote it. The hashed target is written all the
// same.
func TestHostileWrongTypePrefix(t *testing.T) {
	s := e2e.NewStack(t)
	k := e2e.KeyA
	secret, secret20 := k.Reveal(), k.Reveal()[:20]
	layout := keys.Layout{Formats: []keys.Format{keys.String}, Schemas: []keys.Schema{keys.Hashed, keys.Prefix}}
	ctx := context.Background()
	rdb := s.Redis.Client()
	var hashed []keys.Target
	for _, v := range bothVersions {
		for _, tg := range layout.Targets(k, v) {
			if tg.Schema == keys.Prefix {
				if err := rdb.HSet(ctx, tg.Key, "planted", "by the test").Err(); err != nil {
					t.Fatal(err)
				}
			} else {
				hashed = append(hashed, tg)
			}
		}
	}
	extra := []string{"REDIS_FORMATS=string", "REDIS_KEY_SCHEMAS=hashed,prefix", "LOG_LEVEL=debug"}
	addr := e2e.FreeAddr(t)
	p := e2e.Start(t, hostileEnv(s, addr, extra...))
	hashedCurrent := func() bool {
		for _, tg := range hashed {
			if rdb.Get(ctx, tg.Key).Val() != s.Body(k, tg.Version) {
				return false
			}
		}
		return true
	}
	took := e2e.WaitFor(t, "hashed string targets written", 10*time.Second, hashedCurrent)
	// The wrong type was met and reported: a write error or a last_error.
	var reported string
	e2e.WaitFor(t, "the wrong type reported", 5*time.Second, func() bool {
		st, _ := keyStatus(t, addr, k)
		for _, e := range st {
			if e.LastError != "" {
				reported = e.LastError
				return true
			}
		}
		return false
	})
	for _, v := range bothVersions {
		for _, tg := range layout.Targets(k, v) {
			if tg.Schema == keys.Prefix && rdb.HGet(ctx, tg.Key, "planted").Val() != "by the test" {
				t.Errorf("the planted HASH %s was touched", tg.Key)
			}
		}
	}
	_, statusJSON := e2e.AdminGet(addr, "/status")
	_, metricsText := e2e.AdminGet(addr, "/metrics")
	p.Stop(t)
	cmd := execCommand("once")
	cmd.Env = hostileEnv(s, e2e.FreeAddr(t), extra...)
	out, _ := cmd.CombinedOutput()
	onceCode := cmd.ProcessState.ExitCode()
	if onceCode == 0 {
		t.Errorf("once exited 0 with a target of the wrong type\n%s", out)
	}
	if len(out) == 0 {
		t.Error("once printed nothing")
	}
	for what, text := range map[string]string{"worker logs": p.Logs(), "/status": statusJSON, "/metrics": metricsText, "once output": string(out)} {
		for _, leak := range []string{secret, secret20} {
			if i := strings.Index(text, leak); i >= 0 {
				t.Errorf("%s contain %q (the key's first %d characters): …%s…", what, leak, len(leak), text[max(0, i-120):min(len(text), i+len(leak)+40)])
			}
		}
	}
	record(t, "hostile: WRONGTYPE at the prefix-schema key (REDIS_FORMATS=string)",
		"a HASH planted at the string format's prefix-schema key of one key (both versions)",
		fmt.Sprintf("the hashed targets written (%v after start), the planted HASH untouched; reported as %q; once exit %d; the key's first 20 characters in none of logs (debug), /status, /metrics, once output",
			took.Round(time.Millisecond), reported, onceCode),
		0)
}
