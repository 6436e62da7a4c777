package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// The rollout scenarios (issue 15): a leader killed beside a standby replica,
// how evenly polls are spread after a start, a takeover and a flush, keys
// that hang at the CDN beside healthy ones, a key removal racing a slow poll,
// and a keys file rewritten in place. Like the hostile suite, each scenario
// first proves that its path ran (the fake CDN logged the requests, the
// worker logged the read or the removal, a metric counted it) before it
// asserts what did not happen.

// spread is the share of times that fall into the fullest tenth of the
// interval, by phase relative to origin (any fixed instant): 0.1 for polls
// spread evenly over the interval, 1 for polls that all come in one burst.
func spread(times []time.Time, origin time.Time, interval time.Duration) float64 {
	if len(times) == 0 {
		return 0
	}
	t := tenths(times, origin, interval)
	return float64(slices.Max(t[:])) / float64(len(times))
}

// tenths counts times by the tenth of the interval their phase relative to
// origin falls into.
func tenths(times []time.Time, origin time.Time, interval time.Duration) [10]int {
	var n [10]int
	for _, at := range times {
		phase := at.Sub(origin) % interval
		if phase < 0 {
			phase += interval
		}
		n[min(int(phase*10/interval), 9)]++
	}
	return n
}

// requestTimes is when the fake CDN received each request in [from, to).
func requestTimes(s *e2e.Stack, from, to time.Time) []time.Time {
	var out []time.Time
	for _, r := range s.CDN.DCSRequests() {
		if !r.At.Before(from) && r.At.Before(to) {
			out = append(out, r.At)
		}
	}
	return out
}

// pairName names one key and version in failure messages (redacted).
func pairName(k keys.SDKKey, v keys.Version) string { return k.Redacted() + " " + string(v) }

// requestsByPair groups the fake CDN's log by key and version.
func requestsByPair(s *e2e.Stack) map[string][]fakecdn.Request {
	out := map[string][]fakecdn.Request{}
	for _, r := range s.CDN.DCSRequests() {
		k, err := keys.Parse(r.Key)
		if err != nil {
			continue
		}
		out[pairName(k, r.Version)] = append(out[pairName(k, r.Version)], r)
	}
	return out
}

// unasked counts the pairs of ks (both versions) without a request after t0.
func unasked(s *e2e.Stack, ks keyList, t0 time.Time) int {
	seen := map[string]bool{}
	for _, r := range s.CDN.DCSRequests() {
		if r.At.After(t0) {
			seen[r.Key+" "+string(r.Version)] = true
		}
	}
	n := 0
	for _, k := range ks {
		for _, v := range bothVersions {
			if !seen[k.Reveal()+" "+string(v)] {
				n++
			}
		}
	}
	return n
}

// rolloutTargets lists every default target (sfp, both schemas, both
// versions) of ks.
func rolloutTargets(ks ...keys.SDKKey) []string {
	var out []string
	for _, k := range ks {
		for _, v := range bothVersions {
			for _, tg := range keys.Targets("", k, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
				out = append(out, tg.Key)
			}
		}
	}
	return out
}

// pipelinedCurrent is keyList.allCurrent in one pipeline: every default
// target of ks holds the CDN's current payload and lcut.
func pipelinedCurrent(s *e2e.Stack, ks keyList) func() bool {
	return func() bool {
		ctx := context.Background()
		type want struct{ body, lcut string }
		var (
			wants []want
			cmds  []*redis.SliceCmd
		)
		pipe := s.Redis.Client().Pipeline()
		for _, k := range ks {
			lcut := fmt.Sprint(s.CDN.Project(k).Lcut)
			for _, v := range bothVersions {
				body := s.Body(k, v)
				for _, tg := range keys.Targets("", k, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
					cmds = append(cmds, pipe.HMGet(ctx, tg.Key, "config", "lcut"))
					wants = append(wants, want{body, lcut})
				}
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return false
		}
		for i, c := range cmds {
			vals := c.Val()
			if len(vals) != 2 || vals[0] != wants[i].body || vals[1] != wants[i].lcut {
				return false
			}
		}
		return true
	}
}

// existing reports which of targets exist, in one pipeline.
func existing(s *e2e.Stack, targets []string) ([]bool, error) {
	ctx := context.Background()
	pipe := s.Redis.Client().Pipeline()
	cmds := make([]*redis.IntCmd, len(targets))
	for i, k := range targets {
		cmds[i] = pipe.Exists(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	out := make([]bool, len(cmds))
	for i, c := range cmds {
		out[i] = c.Val() == 1
	}
	return out, nil
}

// rolloutStatus is the part of GET /status these scenarios read.
type rolloutStatus struct {
	Keys []struct {
		Key         string `json:"key"`
		Version     string `json:"version"`
		LastOutcome string `json:"last_outcome"`
	} `json:"keys"`
	Leader struct {
		Enabled bool   `json:"enabled"`
		Leading bool   `json:"leading"`
		ID      string `json:"id"`
	} `json:"leader"`
}

// statusOf fetches and decodes /status; false when the worker does not answer.
func statusOf(addr string) (rolloutStatus, bool) { return statusAt(addr, "/status") }

// leaderOf is /status without its keys (no redacted name starts with "-"):
// cheap enough to ask every few milliseconds.
func leaderOf(addr string) (rolloutStatus, bool) { return statusAt(addr, "/status?key=-") }

func statusAt(addr, path string) (rolloutStatus, bool) {
	var st rolloutStatus
	code, body := e2e.AdminGet(addr, path)
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		return st, false
	}
	return st, true
}

// keysIn is the set of (redacted) keys a /status lists.
func (st rolloutStatus) keysIn() map[string]bool {
	out := map[string]bool{}
	for _, e := range st.Keys {
		out[e.Key] = true
	}
	return out
}

// logEntry is one JSON line of the worker's log.
type logEntry struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Message string    `json:"message"`
	SDKKey  string    `json:"sdk_key"`
	Version string    `json:"version"`
	Removed []string  `json:"removed"`
	Outcome string    `json:"outcome"`
}

// workerLog parses the worker's log; lines that are not JSON are skipped.
func workerLog(p *e2e.Proc) []logEntry {
	var out []logEntry
	for _, line := range strings.Split(p.Logs(), "\n") {
		var e logEntry
		if json.Unmarshal([]byte(line), &e) == nil && e.Message != "" {
			out = append(out, e)
		}
	}
	return out
}

// logCount counts the log lines from the offset-th on whose message starts
// with msg.
func logCount(p *e2e.Proc, offset int, msg string) int {
	n := 0
	for _, e := range workerLog(p)[offset:] {
		if strings.HasPrefix(e.Message, msg) {
			n++
		}
	}
	return n
}

// writeKeysFile replaces path with ks, one per line, atomically (rename).
func writeKeysFile(t *testing.T, path string, ks ...keys.SDKKey) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(keysFileContent(ks...)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func keysFileContent(ks ...keys.SDKKey) string {
	var b strings.Builder
	for _, k := range ks {
		b.WriteString(k.Reveal() + "\n")
	}
	return b.String()
}

// percentile is the q-quantile (nearest rank) of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func intervals(d, interval time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(interval))
}

// TestRolloutLeaderKill runs two replicas with leader election on 200 keys ×
// 2 versions while the CDN changes nothing, SIGKILLs the leader and checks the
// standby: it takes over, polls every key within about an interval,
// continues conditionally from the lcuts Redis holds (no full downloads) and
// spreads its polls over the interval instead of sending them in a burst.
func TestRolloutLeaderKill(t *testing.T) {
	const every = time.Second
	s, ks := manyKeys(t, 200)
	pairs := 2 * len(ks)
	env := s.BaseEnv("POLL_INTERVAL="+every.String(), "LEADER_ELECTION=true", "LEADER_LEASE=2s", "STATSIG_SERVER_SDK_KEYS="+ks.list())
	addrs := []string{e2e.FreeAddr(t), e2e.FreeAddr(t)}
	procs := []*e2e.Proc{e2e.Start(t, append(env, "ADMIN_ADDR="+addrs[0])), e2e.Start(t, append(env, "ADMIN_ADDR="+addrs[1]))}
	e2e.WaitFor(t, "initial sync", 60*time.Second, pipelinedCurrent(s, ks))

	// One leads (status and metric), the other follows and has read every
	// key in Redis: a steady deployment.
	leader := -1
	waitDetail(t, "one leader and a follower that has read every key", 20*time.Second, func() (bool, string) {
		var sts [2]rolloutStatus
		for i, a := range addrs {
			st, ok := statusOf(a)
			if !ok {
				return false, "no /status from replica " + fmt.Sprint(i)
			}
			sts[i] = st
		}
		if sts[0].Leader.Leading == sts[1].Leader.Leading {
			return false, fmt.Sprintf("leading: %v and %v", sts[0].Leader.Leading, sts[1].Leader.Leading)
		}
		leader = 0
		if sts[1].Leader.Leading {
			leader = 1
		}
		follower := sts[1-leader]
		n := 0
		for _, e := range follower.Keys {
			if e.LastOutcome == "follower" {
				n++
			}
		}
		if n != pairs {
			return false, fmt.Sprintf("the follower found %d of %d pairs present", n, pairs)
		}
		ml, mf := e2e.Metrics(addrs[leader])[metricPrefix+"leader"], e2e.Metrics(addrs[1-leader])[metricPrefix+"leader"]
		return ml == 1 && mf == 0, fmt.Sprintf("statsig_populator_leader %v (leader) and %v (follower)", ml, mf)
	})
	standby := addrs[1-leader]

	s.CDN.ResetLog()
	procs[leader].Signal(t, syscall.SIGKILL)
	killed := time.Now()
	seen := waitDetail(t, "the standby leads", 10*time.Second, func() (bool, string) {
		st, ok := leaderOf(standby)
		return ok && st.Leader.Leading, fmt.Sprintf("%+v", st.Leader)
	})
	waitDetail(t, "every key and version polled by the new leader", 3*every+5*time.Second, func() (bool, string) {
		n := unasked(s, ks, killed)
		return n == 0, fmt.Sprintf("%d of %d pairs not asked since the kill", n, pairs)
	})
	// The takeover is the new leader's first request; every pair was asked
	// by its last first poll.
	var takeover, allAsked time.Time
	firstPoll := map[string]bool{}
	for _, r := range s.CDN.DCSRequests() {
		if !r.At.After(killed) {
			continue
		}
		if takeover.IsZero() {
			takeover = r.At
		}
		if !firstPoll[r.Key+" "+string(r.Version)] {
			firstPoll[r.Key+" "+string(r.Version)] = true
			allAsked = r.At
		}
	}
	allPolled := allAsked.Sub(takeover)
	// The spread is measured over three intervals after the takeover's first.
	from, to := takeover.Add(every), takeover.Add(4*every)
	time.Sleep(time.Until(to))

	var noSince int
	for _, r := range s.CDN.DCSRequests() {
		if r.At.After(killed) && r.SinceTime <= 0 {
			noSince++
		}
	}
	full := s.CDN.Count("full")
	if limit := pairs / 100; noSince > limit || full > limit {
		t.Errorf("after the takeover %d requests without sinceTime and %d full answers for %d pairs (at most %d allowed): the new leader did not continue from the lcuts in Redis",
			noSince, full, pairs, limit)
	}
	times := requestTimes(s, from, to)
	sp := spread(times, takeover, every)
	if len(times) < 2*pairs {
		t.Errorf("only %d requests in the three intervals after the takeover's first (%d pairs)", len(times), pairs)
	}
	byTenth := tenths(times, takeover, every)
	firstHalf := 0
	for _, n := range byTenth[:5] {
		firstHalf += n
	}
	t.Logf("polls by tenth of the interval after the takeover (phase from its first request): %v", byTenth)
	if sp >= 0.2 {
		t.Errorf("after the takeover the fullest tenth of the interval held %.1f%% of %d polls (want < 20%%)", 100*sp, len(times))
	}
	if allPolled > every+every/2 {
		t.Errorf("the new leader took %v from its first poll to poll every key (interval %v)", allPolled.Round(time.Millisecond), every)
	}
	record(t, "rollout: leader SIGKILLed, standby takes over (200 keys × 2 versions, CDN unchanged)",
		fmt.Sprintf("SIGKILL of the leader of 2 replicas, LEADER_LEASE=2s, POLL_INTERVAL=%v", every),
		fmt.Sprintf("every entry unchanged; the standby's first poll %v after the kill (seen leading in /status after %v), every pair polled within %v of it; "+
			"%d requests without sinceTime, %d full answers; fullest tenth %.1f%% of %d polls over intervals 2-4 after the takeover (the first half of the interval %.0f%%)",
			takeover.Sub(killed).Round(time.Millisecond), seen.Round(time.Millisecond), allPolled.Round(time.Millisecond), noSince, full, 100*sp, len(times),
			100*float64(firstHalf)/float64(max(len(times), 1))),
		takeover.Add(allPolled).Sub(killed)) // kill → every pair polled by the new leader
}

// TestRolloutSpreadStartAndFlush measures how evenly one worker spreads its
// polls over the interval after a start and after a FLUSHALL healed by full
// downloads: no tenth of the interval may hold 20% of the polls.
func TestRolloutSpreadStartAndFlush(t *testing.T) {
	const every = time.Second
	s, ks := manyKeys(t, 100)
	pairs := 2 * len(ks)
	begin := time.Now()
	p := e2e.Start(t, s.BaseEnv("POLL_INTERVAL="+every.String(), "LEADER_ELECTION=false", "STATSIG_SERVER_SDK_KEYS="+ks.list()))
	synced := e2e.WaitFor(t, "initial sync", 60*time.Second, pipelinedCurrent(s, ks))
	first := s.CDN.DCSRequests()[0].At
	// From the worker's second interval (its first poll of every key is the
	// start-up sync, all at once), or from the end of the sync if that took
	// longer, three intervals.
	from := first.Add(every)
	if end := begin.Add(synced); end.After(from) {
		from = end
	}
	to := from.Add(3 * every)
	time.Sleep(time.Until(to))
	startTimes := requestTimes(s, from, to)
	startSpread := spread(startTimes, first, every)

	// Fetches given up as slow while the slow share was full (retried later
	// as failing keys): their polls moved to wherever the retry succeeded.
	canceled := func(entries []logEntry) int {
		n := 0
		for _, e := range entries {
			if e.Message == "poll failed; Redis keeps the last good payload" && e.Outcome == "canceled" {
				n++
			}
		}
		return n
	}
	startLog := workerLog(p)
	startCanceled := canceled(startLog)
	full0 := s.CDN.Count("full")
	flushed := time.Now()
	s.Redis.FlushAll()
	heal := e2e.WaitFor(t, "every key rewritten after FLUSHALL", 20*time.Second, pipelinedCurrent(s, ks))
	healed := time.Now()
	refetched := s.CDN.Count("full") - full0
	if refetched < pairs {
		t.Fatalf("%d full answers after the flush for %d pairs: the heal did not go through full downloads", refetched, pairs)
	}
	time.Sleep(time.Until(healed.Add(3 * every)))
	flushTimes := requestTimes(s, healed, healed.Add(3*every))
	flushSpread := spread(flushTimes, healed, every)

	flushCanceled := canceled(workerLog(p)[len(startLog):])
	for _, c := range []struct {
		what   string
		times  []time.Time
		origin time.Time
		sp     float64
	}{{"start-up", startTimes, first, startSpread}, {"FLUSHALL", flushTimes, healed, flushSpread}} {
		if len(c.times) < 2*pairs {
			t.Errorf("%s: only %d polls in three intervals for %d pairs", c.what, len(c.times), pairs)
		}
		t.Logf("%s: polls by tenth of the interval: %v", c.what, tenths(c.times, c.origin, every))
		if c.sp >= 0.2 {
			t.Errorf("after %s the fullest tenth of the interval held %.1f%% of %d polls (want < 20%%)", c.what, 100*c.sp, len(c.times))
		}
	}
	record(t, "rollout: poll spread after a start and after FLUSHALL (100 keys × 2 versions)",
		fmt.Sprintf("one worker, POLL_INTERVAL=%v; FLUSHALL while running", every),
		fmt.Sprintf("fullest tenth of the interval: %.1f%% of %d polls over 3 intervals from %v after the first request "+
			"(the sync took %v, %d first fetches given up as slow and retried); %.1f%% of %d polls over 3 intervals after the heal "+
			"(%d full downloads healed %d pairs %v after the flush, %d given up as slow and retried)",
			100*startSpread, len(startTimes), from.Sub(first).Round(time.Millisecond), synced.Round(time.Millisecond), startCanceled,
			100*flushSpread, len(flushTimes), refetched, pairs, heal.Round(time.Millisecond), flushCanceled),
		healed.Sub(flushed))
}

// pollGaps is the time between consecutive requests of each pair of ks
// (both versions) in [from, to], sorted, counting from the pair's last
// request before from; a pair not asked for longer than the interval before
// to counts that open gap too. fewest is the fewest requests of a pair in
// the window.
func pollGaps(s *e2e.Stack, ks keyList, from, to time.Time, interval time.Duration) (gaps []time.Duration, fewest int) {
	byPair := requestsByPair(s)
	fewest = 1 << 30
	for _, k := range ks {
		for _, v := range bothVersions {
			var at []time.Time
			n := 0
			for _, r := range byPair[pairName(k, v)] {
				switch {
				case r.At.Before(from):
					at = append(at[:0], r.At) // the last poll before the window
				case !r.At.After(to):
					at = append(at, r.At)
					n++
				}
			}
			fewest = min(fewest, n)
			if len(at) == 0 {
				gaps = append(gaps, to.Sub(from))
				continue
			}
			for i := 1; i < len(at); i++ {
				gaps = append(gaps, at[i].Sub(at[i-1]))
			}
			if open := to.Sub(at[len(at)-1]); open > interval {
				gaps = append(gaps, open)
			}
		}
	}
	slices.Sort(gaps)
	return gaps, fewest
}

// longGaps lists, relative to from, the gaps longer than limit between
// consecutive requests of a pair of ks that ended in (from, to].
func longGaps(s *e2e.Stack, ks keyList, from, to time.Time, limit time.Duration) []string {
	byPair := requestsByPair(s)
	var out []string
	for _, k := range ks {
		for _, v := range bothVersions {
			rs := byPair[pairName(k, v)]
			for i := 1; i < len(rs); i++ {
				if rs[i].At.Sub(rs[i-1].At) > limit && rs[i].At.After(from) && !rs[i].At.After(to) {
					out = append(out, fmt.Sprintf("%v→%v", rs[i-1].At.Sub(from).Round(time.Millisecond), rs[i].At.Sub(from).Round(time.Millisecond)))
				}
			}
		}
	}
	return out
}

// TestRolloutHangingKeys makes 10% of the keys hang at the CDN (no answer for
// a minute) and measures the poll gaps of the healthy keys: the hanging ones
// hold only the slow share of the concurrency, and conditional polls give up
// without response headers after CONDITIONAL_FETCH_TIMEOUT.
func TestRolloutHangingKeys(t *testing.T) {
	// A 1 s interval: SlowAfter (a tenth of it) bounds how long a hanging
	// key's first poll holds a healthy slot; at 500 ms its 100 ms floor is
	// the whole 0.2-interval slack of the target.
	const (
		every  = time.Second
		window = 5 * every
	)
	s, ks := manyKeys(t, 100)
	addr := e2e.FreeAddr(t)
	e2e.Start(t, s.BaseEnv("POLL_INTERVAL="+every.String(), "POLL_CONCURRENCY=8", "FETCH_TIMEOUT=5s", "CONDITIONAL_FETCH_TIMEOUT=1s",
		"LEADER_ELECTION=false", "ADMIN_ADDR="+addr, "STATSIG_SERVER_SDK_KEYS="+ks.list()))
	e2e.WaitFor(t, "initial sync", 60*time.Second, pipelinedCurrent(s, ks))
	// Past the start-up burst: every pair polled twice more, at its own phase.
	synced := time.Now()
	waitDetail(t, "steady polling", 10*every+5*time.Second, func() (bool, string) {
		byPair := requestsByPair(s)
		for _, k := range ks {
			for _, v := range bothVersions {
				n := 0
				for _, r := range byPair[pairName(k, v)] {
					if r.At.After(synced) {
						n++
					}
				}
				if n < 2 {
					return false, fmt.Sprintf("%s asked %d times since the sync", pairName(k, v), n)
				}
			}
		}
		return true, ""
	})
	// The same figures without a fault, for comparison: six intervals.
	baseFrom := time.Now()
	time.Sleep(window)
	hanging, healthy := ks[:10], ks[10:]
	m0 := e2e.Metrics(addr)
	for _, k := range hanging {
		s.CDN.SetFault(k, fakecdn.Fault{Delay: time.Minute})
	}
	faultAt := time.Now()
	end := faultAt.Add(window)

	// The fault ran: every hanging pair was asked, and polls gave up on them.
	waitDetail(t, "every hanging key asked and given up on", window+5*time.Second, func() (bool, string) {
		if n := unasked(s, hanging, faultAt); n > 0 {
			return false, fmt.Sprintf("%d hanging pairs not asked yet", n)
		}
		m := e2e.Metrics(addr)
		var gaveUp float64
		for _, v := range bothVersions {
			for _, o := range []string{"timeout", "canceled"} {
				l := `outcome="` + o + `",version="` + string(v) + `"`
				gaveUp += sample(m, "fetches_total", l) - sample(m0, "fetches_total", l)
			}
		}
		return gaveUp >= float64(len(hanging)), fmt.Sprintf("%v fetches timed out or canceled; %s", gaveUp, sampleFamily(m, "fetches_total"))
	})
	time.Sleep(time.Until(end))
	m := e2e.Metrics(addr)

	gaps, fewest := pollGaps(s, healthy, faultAt, end, every)
	p50, p99, worst := percentile(gaps, 0.5), percentile(gaps, 0.99), gaps[len(gaps)-1]
	base, _ := pollGaps(s, healthy, baseFrom, faultAt, every)
	b99 := percentile(base, 0.99)
	t.Logf("healthy keys' poll gaps: before the fault median %v p99 %v max %v; during it median %v p99 %v max %v",
		percentile(base, 0.5).Round(time.Millisecond), b99.Round(time.Millisecond), base[len(base)-1].Round(time.Millisecond),
		p50.Round(time.Millisecond), p99.Round(time.Millisecond), worst.Round(time.Millisecond))
	if p99 > every*12/10 {
		t.Errorf("healthy keys' p99 poll gap %v (%s intervals) with 10%% of keys hanging; want ≤ 1.2 intervals (median %v, max %v); gaps over 1.2 intervals, from and to, relative to the fault: %v",
			p99.Round(time.Millisecond), intervals(p99, every), p50.Round(time.Millisecond), worst.Round(time.Millisecond), longGaps(s, healthy, faultAt, end, every*12/10))
	}
	if fewest < int(window/every)-2 {
		t.Errorf("a healthy pair was polled only %d times in %v", fewest, window)
	}
	var timeouts, canceled float64
	for _, v := range bothVersions {
		timeouts += sample(m, "fetches_total", `outcome="timeout",version="`+string(v)+`"`) - sample(m0, "fetches_total", `outcome="timeout",version="`+string(v)+`"`)
		canceled += sample(m, "fetches_total", `outcome="canceled",version="`+string(v)+`"`) - sample(m0, "fetches_total", `outcome="canceled",version="`+string(v)+`"`)
	}

	if !pipelinedCurrent(s, ks)() {
		t.Error("a key's entries changed during the fault")
	}
	// Recovery: the CDN answers again and has news for the hanging keys.
	s.CDN.ClearFaults()
	for _, k := range hanging {
		s.CDN.Change(k, 100)
	}
	recovery := e2e.WaitFor(t, "the hanging keys current again", 10*time.Second, pipelinedCurrent(s, hanging))
	if !pipelinedCurrent(s, healthy)() {
		t.Error("a healthy key is not current after the fault")
	}
	record(t, "rollout: 10% of keys hang at the CDN (100 keys × 2 versions)",
		fmt.Sprintf("no answer for a minute on 10 keys; POLL_INTERVAL=%v, POLL_CONCURRENCY=8, CONDITIONAL_FETCH_TIMEOUT=1s, FETCH_TIMEOUT=5s", every),
		fmt.Sprintf("the last good payloads; healthy keys' poll gap over %v: median %v, p99 %v (%s intervals), max %v (%d gaps; without the fault p99 %v); fetches_total timeout +%v, canceled +%v",
			window, p50.Round(time.Millisecond), p99.Round(time.Millisecond), intervals(p99, every), worst.Round(time.Millisecond), len(gaps), b99.Round(time.Millisecond), timeouts, canceled),
		recovery)
}

// TestRolloutRemovalDuringSlowPoll removes a key from the keys file while a
// poll of it is in flight at a slow CDN that has news for it, with
// DELETE_REMOVED_KEYS=true: the entries are deleted only after that poll has
// ended (its write included), and nothing brings them back.
func TestRolloutRemovalDuringSlowPoll(t *testing.T) {
	const (
		every = 500 * time.Millisecond
		delay = 1500 * time.Millisecond
	)
	s := e2e.NewStack(t)
	a, b := e2e.KeyA, e2e.KeyB
	file := filepath.Join(t.TempDir(), "keys")
	writeKeysFile(t, file, a, b)
	addr := e2e.FreeAddr(t)
	p := e2e.Start(t, s.BaseEnv("STATSIG_SERVER_SDK_KEYS=", "STATSIG_SERVER_SDK_KEYS_FILE="+file, "POLL_INTERVAL="+every.String(),
		"DELETE_REMOVED_KEYS=true", "FETCH_TIMEOUT=5s", "CONDITIONAL_FETCH_TIMEOUT=4s", "LEADER_ELECTION=false", "ADMIN_ADDR="+addr))
	e2e.WaitFor(t, "initial sync", 15*time.Second, s.AllCurrent)
	aTargets := rolloutTargets(a)

	s.CDN.SetFault(a, fakecdn.Fault{Delay: delay})
	s.CDN.Change(a, 1000) // news that the slow poll will bring back
	s.CDN.ResetLog()      // every request of A from here on is answered with the new payload
	changed := time.Now()
	var slow fakecdn.Request
	waitDetail(t, "a poll of A in flight", 3*every+2*time.Second, func() (bool, string) {
		for _, r := range s.CDN.DCSRequests() {
			if r.Key == a.Reveal() && r.At.After(changed) {
				slow = r
				return true, ""
			}
		}
		return false, "no request of A yet"
	})
	answerAt := slow.At.Add(delay)
	logOffset := len(workerLog(p))
	writeKeysFile(t, file, b)
	rewritten := time.Now()
	if !rewritten.Before(answerAt) {
		t.Fatalf("the file was rewritten %v after the slow request arrived, after its answer", rewritten.Sub(slow.At))
	}

	// The removal is applied (two reads lacking A) while the slow poll is
	// still waiting for its answer.
	var removal logEntry
	waitDetail(t, "the removal of A applied", 10*every+2*time.Second, func() (bool, string) {
		for _, e := range workerLog(p)[logOffset:] {
			if e.Message == "SDK keys file changed" && slices.Contains(e.Removed, a.Redacted()) {
				removal = e
				return true, ""
			}
		}
		return false, "no 'SDK keys file changed' line removing A"
	})
	if !removal.Time.Before(answerAt) {
		t.Fatalf("the removal was applied at %v, after the slow answer (%v): the race was not exercised",
			removal.Time.Format(time.StampMilli), answerAt.Format(time.StampMilli))
	}
	waitDetail(t, "A's entries deleted", delay+5*time.Second, func() (bool, string) {
		ex, err := existing(s, aTargets)
		return err == nil && !slices.Contains(ex, true), fmt.Sprintf("exists: %v (err %v)", ex, err)
	})
	deletedAt := time.Now()

	// The slow poll certainly ended: its delay has passed, and the CDN
	// answered every request of A logged since the change in full.
	var aRequests []fakecdn.Request
	waitDetail(t, "every slow request of A answered", delay+5*time.Second, func() (bool, string) {
		aRequests = aRequests[:0]
		for _, r := range s.CDN.DCSRequests() {
			if r.Key == a.Reveal() {
				aRequests = append(aRequests, r)
			}
		}
		full := s.CDN.Count("full")
		return time.Now().After(aRequests[len(aRequests)-1].At.Add(delay)) && full >= len(aRequests),
			fmt.Sprintf("%d requests of A, %d full answers", len(aRequests), full)
	})

	// The worker's log tells the order for the slow request's version: the
	// removal, then the slow poll's write (after the answer), then the delete.
	var wrote, dropped *logEntry
	entries := workerLog(p)
	for i := logOffset; i < len(entries); i++ {
		e := &entries[i]
		if e.SDKKey != a.Redacted() || e.Version != string(slow.Version) {
			continue
		}
		switch {
		case e.Message == "payload written" && wrote == nil:
			wrote = e
		case e.Message == "Redis entries deleted" && dropped == nil:
			dropped = e
			if wrote == nil {
				t.Errorf("%s: entries deleted at %v, before the slow poll wrote (its answer came at %v)", slow.Version,
					e.Time.Format(time.StampMilli), answerAt.Format(time.StampMilli))
			}
		}
	}
	switch {
	case wrote == nil || dropped == nil:
		t.Fatalf("%s: the log lacks the slow poll's write (%v) or the delete (%v)", slow.Version, wrote != nil, dropped != nil)
	case wrote.Time.Before(answerAt.Add(-50 * time.Millisecond)):
		t.Errorf("%s: the slow poll wrote at %v, before its answer at %v", slow.Version, wrote.Time.Format(time.StampMilli), answerAt.Format(time.StampMilli))
	case dropped.Time.Before(wrote.Time):
		t.Errorf("%s: deleted at %v, before the slow poll's write at %v", slow.Version, dropped.Time.Format(time.StampMilli), wrote.Time.Format(time.StampMilli))
	}

	// Nothing brings A back, for six intervals, while B keeps being polled
	// and written.
	watchFrom := time.Now()
	s.CDN.Change(b, 1000)
	samples := 0
	for time.Since(watchFrom) < 6*every || !s.Current(b) {
		ex, err := existing(s, aTargets)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(ex, true) {
			t.Fatalf("A's entries came back %v after the delete: %v", time.Since(deletedAt).Round(time.Millisecond), ex)
		}
		samples++
		if time.Since(watchFrom) > 6*every+2*time.Second {
			t.Fatal("B's change did not reach Redis")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, v := range bothVersions {
		if n := len(requestsAfter(s, b, v, watchFrom)); n < 4 {
			t.Errorf("B %s asked only %d times while A was watched", v, n)
		}
	}
	for _, r := range s.CDN.DCSRequests() {
		if r.Key == a.Reveal() && r.At.After(deletedAt) {
			t.Errorf("A (%s) asked again at %v, after its entries were deleted", r.Version, r.At.Format(time.StampMilli))
		}
	}
	if st, ok := statusOf(addr); !ok || st.keysIn()[a.Redacted()] || !st.keysIn()[b.Redacted()] {
		t.Errorf("/status after the removal lists %v", st.keysIn())
	}
	record(t, "rollout: key removed from the keys file while a slow poll of it is in flight (DELETE_REMOVED_KEYS=true)",
		fmt.Sprintf("CDN answers for the key delayed %v, news for it; file rewritten %v after the request arrived; POLL_INTERVAL=%v (file read every %v)",
			delay, rewritten.Sub(slow.At).Round(time.Millisecond), every, every/2),
		fmt.Sprintf("removal applied %v after the rewrite, %v before the slow answer; the slow poll wrote at +%v (after its answer), deleted at +%v; "+
			"absent for %v after (%d samples) while the other key was polled and a change written; no request of the removed key after the delete",
			removal.Time.Sub(rewritten).Round(time.Millisecond), answerAt.Sub(removal.Time).Round(time.Millisecond),
			wrote.Time.Sub(slow.At).Round(time.Millisecond), dropped.Time.Sub(slow.At).Round(time.Millisecond),
			time.Since(watchFrom).Round(100*time.Millisecond), samples),
		deletedAt.Sub(rewritten)) // rewrite → entries gone
}

// presence samples the existence of targets and the keys /status lists until
// stopped, and remembers every absence.
type presence struct {
	mu       sync.Mutex
	missing  []string
	samples  int
	statuses int
	fewest   int // fewest keys listed by /status
	stop     chan struct{}
	done     chan struct{}
}

func watchPresence(s *e2e.Stack, addr string, targets []string) *presence {
	w := &presence{fewest: 1 << 30, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			ex, err := existing(s, targets)
			w.mu.Lock()
			if err == nil {
				w.samples++
				for j, ok := range ex {
					if !ok {
						w.missing = append(w.missing, fmt.Sprintf("%s at %v", targets[j], time.Now().Format(time.StampMilli)))
					}
				}
			}
			w.mu.Unlock()
			if i%10 == 0 {
				if st, ok := statusOf(addr); ok {
					w.mu.Lock()
					w.statuses++
					w.fewest = min(w.fewest, len(st.keysIn()))
					w.mu.Unlock()
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

func (w *presence) finish() (samples, statuses, fewest int, missing []string) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.samples, w.statuses, w.fewest, w.missing
}

// TestRolloutKeysFileRewrite rewrites a keys file of 5 keys in place, in two
// steps with reads in between (truncated, then written; then only its first
// 2 keys, then all 5), with DELETE_REMOVED_KEYS=true: no entry is deleted and
// no key leaves /status. Then a real removal deletes exactly that key.
func TestRolloutKeysFileRewrite(t *testing.T) {
	const (
		every  = time.Second
		period = every / 2 // the file is read every half interval
	)
	s, ks := manyKeys(t, 5)
	file := filepath.Join(t.TempDir(), "keys")
	writeKeysFile(t, file, ks...)
	addr := e2e.FreeAddr(t)
	p := e2e.Start(t, s.BaseEnv("STATSIG_SERVER_SDK_KEYS=", "STATSIG_SERVER_SDK_KEYS_FILE="+file, "POLL_INTERVAL="+every.String(),
		"DELETE_REMOVED_KEYS=true", "LEADER_ELECTION=false", "ADMIN_ADDR="+addr))
	e2e.WaitFor(t, "initial sync", 15*time.Second, pipelinedCurrent(s, ks))
	w := watchPresence(s, addr, rolloutTargets(ks...))
	offset := len(workerLog(p))

	// Step 1: truncated, and left empty for more than two reads.
	if err := os.Truncate(file, 0); err != nil {
		t.Fatal(err)
	}
	truncated := time.Now()
	waitDetail(t, "the empty file read", 3*period+time.Second, func() (bool, string) {
		return logCount(p, offset, "the SDK keys file is empty") > 0, "no 'the SDK keys file is empty' line"
	})
	time.Sleep(3 * period) // at least two more reads of the empty file
	emptyFor := time.Since(truncated)
	if err := os.WriteFile(file, []byte(keysFileContent(ks...)), 0o600); err != nil {
		t.Fatal(err)
	}

	// Step 2: only the first 2 keys, read once, then all 5 again.
	if err := os.WriteFile(file, []byte(keysFileContent(ks[:2]...)), 0o600); err != nil {
		t.Fatal(err)
	}
	partial := time.Now()
	missing0 := logCount(p, offset, "SDK keys missing from the SDK keys file")
	waitDetail(t, "the partial file read", 3*period+time.Second, func() (bool, string) {
		return logCount(p, offset, "SDK keys missing from the SDK keys file") > missing0, "no 'SDK keys missing' line"
	})
	if err := os.WriteFile(file, []byte(keysFileContent(ks...)), 0o600); err != nil {
		t.Fatal(err)
	}
	partialFor := time.Since(partial)
	rewritten := time.Now()
	time.Sleep(3 * period) // more reads, of the whole file
	samples, statuses, fewest, missing := w.finish()
	if len(missing) > 0 {
		t.Fatalf("entries of configured keys went missing during the rewrite (%d samples): %v", samples, missing[:min(5, len(missing))])
	}
	if samples < 100 || statuses < 10 {
		t.Fatalf("only %d Redis samples and %d /status samples", samples, statuses)
	}
	if fewest != len(ks) {
		t.Errorf("/status listed %d keys at one point during the rewrite, want %d throughout", fewest, len(ks))
	}
	for _, msg := range []string{"SDK keys file changed", "Redis entries deleted", "SDK keys changed"} {
		if n := logCount(p, offset, msg); n > 0 {
			t.Errorf("%d %q lines during the rewrite", n, msg)
		}
	}
	// The worker kept polling every key through it.
	if n := unasked(s, ks, rewritten); n > 0 {
		t.Errorf("%d pairs not polled after the rewrite", n)
	}

	// A real removal: 4 keys, kept: exactly the fifth is deleted.
	gone, kept := ks[4], ks[:4]
	w = watchPresence(s, addr, rolloutTargets(kept...))
	offset = len(workerLog(p))
	writeKeysFile(t, file, kept...)
	removed := time.Now()
	took := waitDetail(t, "the removed key's entries deleted", 4*period+5*time.Second, func() (bool, string) {
		ex, err := existing(s, rolloutTargets(gone))
		return err == nil && !slices.Contains(ex, true), fmt.Sprintf("exists: %v (err %v)", ex, err)
	})
	if took < period-50*time.Millisecond {
		t.Errorf("the key was deleted %v after the file changed: before a second read (period %v)", took, period)
	}
	time.Sleep(time.Until(removed.Add(2 * period).Add(took)))
	samples2, _, _, missing2 := w.finish()
	if len(missing2) > 0 {
		t.Errorf("entries of kept keys went missing (%d samples): %v", samples2, missing2[:min(5, len(missing2))])
	}
	var deletedKeys []string
	for _, e := range workerLog(p)[offset:] {
		if e.Message == "Redis entries deleted" {
			deletedKeys = append(deletedKeys, e.SDKKey+" "+e.Version)
		}
	}
	slices.Sort(deletedKeys)
	if want := []string{gone.Redacted() + " v1", gone.Redacted() + " v2"}; !slices.Equal(deletedKeys, want) {
		t.Errorf("deleted %v, want %v", deletedKeys, want)
	}
	st, ok := statusOf(addr)
	if in := st.keysIn(); !ok || len(in) != len(kept) || in[gone.Redacted()] {
		t.Errorf("/status lists %v after the removal", in)
	}
	if !pipelinedCurrent(s, kept)() {
		t.Error("a kept key is not current")
	}
	record(t, "rollout: keys file of 5 keys rewritten in place, then one key removed (DELETE_REMOVED_KEYS=true)",
		fmt.Sprintf("truncated and left empty %v (read as empty), then the first 2 keys for %v (read once), then all 5; POLL_INTERVAL=%v (file read every %v)",
			emptyFor.Round(10*time.Millisecond), partialFor.Round(10*time.Millisecond), every, period),
		fmt.Sprintf("every entry of the 5 keys in %d samples, all 5 keys in %d /status samples, no delete; then the file with 4 keys: exactly the fifth deleted (%v), the 4 kept in %d samples",
			samples, statuses, strings.Join(deletedKeys, ", "), samples2),
		took)
}
