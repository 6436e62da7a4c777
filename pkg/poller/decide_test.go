package poller

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

func st(lcut int64) writer.Stored {
	if lcut == 0 {
		return writer.Stored{}
	}
	return writer.Stored{Lcut: lcut}
}

func TestSinceTime(t *testing.T) {
	bad := writer.Stored{Err: errors.New("WRONGTYPE")}
	cases := []struct {
		name              string
		cursor, confirmed int64
		stored            []writer.Stored
		want              int64
	}{
		{"first poll of an empty Redis", 0, 0, []writer.Stored{st(0), st(0)}, 0},
		{"first poll: continue from what Redis holds", 0, 0, []writer.Stored{st(500)}, 500},
		{"takeover: the lowest lcut held", 0, 0, []writer.Stored{st(700), st(500)}, 500},
		{"never confirmed", 1000, 0, []writer.Stored{st(1000)}, 1000},
		{"steady state", 1000, 1000, []writer.Stored{st(1000), st(1000)}, 1000},
		{"another writer went ahead", 1000, 1000, []writer.Stored{st(2000), st(1000)}, 1000},
		{"header cursor ahead of body time", 1200, 1000, []writer.Stored{st(1000)}, 1200},
		{"flushed", 1000, 1000, []writer.Stored{st(0), st(0)}, 0},
		{"one target evicted", 1000, 1000, []writer.Stored{st(1000), st(0)}, 0},
		{"failover to a stale replica: the CDN sends what it lacks", 1000, 1000, []writer.Stored{st(900), st(1000)}, 900},
		{"no targets", 1000, 1000, nil, 0},
		{"unreadable target", 1000, 1000, []writer.Stored{st(1000), bad}, 0},
	}
	for _, c := range cases {
		if got := sinceTime(c.cursor, c.confirmed, c.stored); got != c.want {
			t.Errorf("%s: sinceTime = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestNeedsWrite(t *testing.T) {
	got := needsWrite(1000, []writer.Stored{st(0), st(999), st(1000), st(5000), {Err: errors.New("x")}})
	want := []bool{true, true, false, false, true}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("target %d: needsWrite = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestNextDelay(t *testing.T) {
	const iv = 10 * time.Second
	const long = Patience + time.Second
	cases := []struct {
		name string
		in   delayInput
		want time.Duration
	}{
		{"success, earliest", delayInput{kind: kindSuccess, u: 0}, 9800 * time.Millisecond},
		{"success, middle: exactly the interval", delayInput{kind: kindSuccess, u: 0.5}, 10 * time.Second},
		{"success, latest: 2% late at most", delayInput{kind: kindSuccess, u: 0.999999}, 10200 * time.Millisecond},
		{"first success spreads over the interval (low)", delayInput{kind: kindSuccess, first: true, u: 0}, time.Second},
		{"first success spreads over the interval (high)", delayInput{kind: kindSuccess, first: true, u: 0.999999}, 10 * time.Second},
		{"follower keeps the cadence", delayInput{kind: kindFollower, u: 0.5}, 10 * time.Second},
		{"not polled keeps the cadence", delayInput{kind: kindNotPolled, u: 0.5}, 10 * time.Second},
		{"retry follows backoff", delayInput{kind: kindRetry, backoff: 2 * time.Second}, 2 * time.Second},
		{"young failure: retry within the interval", delayInput{kind: kindRetry, backoff: time.Minute, failingFor: time.Minute, u: 0.5}, 10 * time.Second},
		{"old failure: backoff beyond the interval", delayInput{kind: kindRetry, backoff: time.Minute, failingFor: long}, time.Minute},
		{"retry honours Retry-After", delayInput{kind: kindRetry, backoff: 2 * time.Second, retryAfter: 30 * time.Second}, 30 * time.Second},
		{"redis retry is short", delayInput{kind: kindRedisRetry, backoff: time.Second}, time.Second},
		{"redis retry never exceeds the interval", delayInput{kind: kindRedisRetry, backoff: 3 * time.Minute, failingFor: long, u: 0.5}, 10 * time.Second},
		{"429 waits about a whole interval", delayInput{kind: kindRateLimited, backoff: time.Second, u: 0.5}, 10 * time.Second},
		{"429 honours Retry-After", delayInput{kind: kindRateLimited, backoff: time.Second, retryAfter: 2 * time.Minute}, 2 * time.Minute},
		{"persistent 429 backs off 4x further than errors", delayInput{kind: kindRateLimited, backoff: 30 * time.Second, failingFor: long}, 2 * time.Minute},
		{"429 is capped", delayInput{kind: kindRateLimited, backoff: 3 * time.Minute, retryAfter: time.Hour, failingFor: long}, MaxRateLimitDelay},
		// Retry-After is a hint capped for every status: a 503 saying "in a
		// year" (or in the year 9999, which saturates) must not park a key.
		{"503 Retry-After of a year is capped", delayInput{kind: kindRetry, backoff: time.Second, retryAfter: 365 * 24 * time.Hour}, MaxRetryAfter},
		{"503 Retry-After at the duration limit is capped", delayInput{kind: kindRetry, backoff: time.Second, retryAfter: math.MaxInt64}, MaxRetryAfter},
		{"429 Retry-After at the duration limit is capped", delayInput{kind: kindRateLimited, backoff: time.Second, retryAfter: math.MaxInt64}, MaxRateLimitDelay},
		{"negative Retry-After is ignored", delayInput{kind: kindRetry, backoff: 2 * time.Second, retryAfter: -time.Hour}, 2 * time.Second},
		{"the cap grows with a long interval", delayInput{kind: kindRetry, interval: time.Hour, backoff: time.Second, retryAfter: 5 * time.Hour}, time.Hour},
		{"unauthorized rechecks every 5 minutes", delayInput{kind: kindUnauthorized, u: 0.5}, 5 * time.Minute},
		{"unauthorized never sooner than the interval", delayInput{kind: kindUnauthorized, interval: time.Hour, u: 0.5}, time.Hour},
	}
	for _, c := range cases {
		in := c.in
		if in.interval == 0 {
			in.interval = iv
		}
		in.recheck = DefaultUnauthorizedRecheck
		got := nextDelay(in)
		if d := got - c.want; d > time.Millisecond || d < -time.Millisecond {
			t.Errorf("%s: nextDelay = %v, want %v", c.name, got, c.want)
		}
	}
}

// Retryable failures back off exponentially, with jitter, up to the cap.
func TestBackoffGrowsAndIsCapped(t *testing.T) {
	p := New(Options{Interval: 10 * time.Second}, nil, nil, nopLogger(), nil)
	b := p.newBackoff()
	var last time.Duration
	for i := 0; i < 30; i++ {
		d := b.NextBackOff()
		if d > MaxBackoff+MaxBackoff/2 {
			t.Fatalf("backoff %v exceeds the cap", d)
		}
		if i == 0 && (d < 500*time.Millisecond || d > 1500*time.Millisecond) {
			t.Fatalf("first backoff %v, want about 1s", d)
		}
		last = d
	}
	if last < MaxBackoff/2 {
		t.Fatalf("backoff after 30 failures is %v, want near %v", last, MaxBackoff)
	}
}

func TestSchedule(t *testing.T) {
	var s schedule
	jobs := make([]*job, 200)
	for i := range jobs {
		jobs[i] = &job{}
		s.push(int64((i*7919)%200), jobs[i])
	}
	if at, _ := s.first(); at != 0 {
		t.Fatalf("first = %d", at)
	}
	var got []int64
	for {
		j, ok := s.popDue(149)
		if !ok {
			break
		}
		for i := range jobs {
			if jobs[i] == j {
				got = append(got, int64((i*7919)%200))
			}
		}
	}
	if len(got) != 150 || len(s) != 50 {
		t.Fatalf("popped %d, %d left; want 150 and 50", len(got), len(s))
	}
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Fatalf("out of order: %v", got)
		}
	}
	if at, _ := s.first(); at != 150 {
		t.Fatalf("next = %d, want 150", at)
	}
	// A takeover spreads what is due later over the span, keeps what is
	// due sooner, and leaves a valid heap.
	s.spreadWithin(100, 20, func() float64 { return 0.5 })
	for n := 0; n < 50; n++ {
		if j, ok := s.popDue(1 << 40); !ok || j == nil {
			t.Fatalf("job %d missing after spreadWithin", n)
		}
	}
	var s2 schedule
	for i, at := range []int64{500, 105, 900, 50} {
		s2.push(at, &job{next: int64(i)})
	}
	s2.spreadWithin(100, 20, func() float64 { return 0.5 })
	var got2 []int64
	for {
		j, ok := s2.popDue(1 << 40)
		if !ok {
			break
		}
		got2 = append(got2, j.next)
	}
	// 50 stays, 105 stays (sooner than 110), 500 and 900 move to 110.
	if want := []int64{3, 1}; got2[0] != want[0] || got2[1] != want[1] || len(got2) != 4 {
		t.Fatalf("order after spreadWithin: %v", got2)
	}
}

func TestNextPollAt(t *testing.T) {
	const s = int64(time.Second)
	cases := []struct {
		name          string
		now, due      int64
		delay, window time.Duration
		cadence       bool
		want          int64
	}{
		{"on time", 100 * s, 100 * s, 10 * time.Second, 0, true, 110 * s},
		{"ended late: the phase is kept", 103 * s, 100 * s, 10 * time.Second, 0, true, 110 * s},
		{"taken a little early in a batch", 100*s - 5, 100 * s, 10 * time.Second, 10, true, 110 * s},
		{"made due early by a takeover", 100 * s, 400 * s, 10 * time.Second, 10, true, 110 * s},
		{"failing: from now", 103 * s, 100 * s, 2 * time.Second, 0, false, 105 * s},
		{"never scheduled", 5 * s, 0, 10 * time.Second, 0, true, 15 * s},
		{"more than an interval behind: from now, no catching up", 125 * s, 100 * s, 10 * time.Second, 0, true, 135 * s},
		{"saturates", 1, math.MaxInt64 - 10, math.MaxInt64, math.MaxInt64, true, math.MaxInt64},
	}
	for _, c := range cases {
		if got := nextPollAt(c.now, c.due, c.delay, c.window, c.cadence); got != c.want {
			t.Errorf("%s: nextPollAt = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestAddSaturating(t *testing.T) {
	cases := []struct {
		a    int64
		d    time.Duration
		want int64
	}{
		{10, 5, 15},
		{math.MaxInt64 - 1, 10, math.MaxInt64},
		{1 << 62, math.MaxInt64, math.MaxInt64},
		{math.MinInt64 + 1, -10, math.MinInt64},
		{5, -3, 2},
	}
	for _, c := range cases {
		if got := addSaturating(c.a, c.d); got != c.want {
			t.Errorf("addSaturating(%d, %d) = %d, want %d", c.a, c.d, got, c.want)
		}
	}
}

func TestFutureLcut(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	cases := []struct {
		name string
		lcut int64
		skew time.Duration
		want bool
	}{
		{"now", now.UnixMilli(), time.Hour, false},
		{"within the skew", now.Add(59 * time.Minute).UnixMilli(), time.Hour, false},
		{"at the skew", now.Add(time.Hour).UnixMilli(), time.Hour, false},
		{"just beyond", now.Add(time.Hour).UnixMilli() + 1, time.Hour, true},
		{"year 2100", 4_102_444_800_000, time.Hour, true},
		{"int64 max", math.MaxInt64, time.Hour, true},
		{"int64 max with the largest skew", math.MaxInt64, math.MaxInt64, true},
		{"2100 within a skew of three centuries", 4_102_444_800_000, math.MaxInt64, false},
		{"the past", 1, time.Hour, false},
	}
	for _, c := range cases {
		if got := futureLcut(c.lcut, now, c.skew); got != c.want {
			t.Errorf("%s: futureLcut = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestShouldDeleteUnauthorized(t *testing.T) {
	const after = 15 * time.Minute
	cases := []struct {
		name string
		in   unauthorizedInput
		want bool
	}{
		{"first refusal", unauthorizedInput{refusedFor: 0, refusals: 1, deleteAfter: after}, false},
		{"long enough but too few rechecks", unauthorizedInput{refusedFor: time.Hour, refusals: 3, deleteAfter: after}, false},
		{"enough rechecks but too short", unauthorizedInput{refusedFor: 14 * time.Minute, refusals: 10, deleteAfter: after}, false},
		{"refused for long, three rechecks", unauthorizedInput{refusedFor: after, refusals: 4, deleteAfter: after}, true},
		{"every key refused: an upstream or proxy fault", unauthorizedInput{refusedFor: time.Hour, refusals: 20, deleteAfter: after, othersRefused: true}, false},
	}
	for _, c := range cases {
		if got := shouldDeleteUnauthorized(c.in); got != c.want {
			t.Errorf("%s: shouldDeleteUnauthorized = %v, want %v", c.name, got, c.want)
		}
	}
}
