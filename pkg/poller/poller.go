// Package poller keeps every configured (SDK key, payload version) current in
// Redis. One loop owns the schedule: it wakes when polls are due, hands each
// batch of due jobs to a goroutine that asks Redis what it holds (one
// pipeline for the batch), then polls the CDN for each job under a
// concurrency cap and writes what changed. Decisions (what to ask, what to
// write, when to poll next) are the pure functions in decide.go.
package poller

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/metrics"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

// Fetcher is the CDN side (fetcher.Client).
type Fetcher interface {
	Fetch(ctx context.Context, k keys.SDKKey, v keys.Version, sinceTime int64) fetcher.Result
}

// Store is the Redis side (writer.Writer).
type Store interface {
	Inspect(ctx context.Context, targets []keys.Target) ([]writer.Stored, error)
	Write(ctx context.Context, t keys.Target, p *writer.Payload) (writer.WriteResult, error)
	Touch(ctx context.Context, targets []keys.Target) error
	TTL() time.Duration
	DeleteSiblings(ctx context.Context, targets []keys.Target) error
	Delete(ctx context.Context, targets []keys.Target) error
}

// Gate tells whether this replica may fetch and write now (leader election).
type Gate interface {
	Leading() bool
}

type alwaysLeading struct{}

func (alwaysLeading) Leading() bool { return true }

// Options configure a Poller.
type Options struct {
	Keys     []keys.SDKKey
	Versions []keys.Version
	// Layout says which targets are written for each key and version.
	Layout               keys.Layout
	Interval             time.Duration
	Concurrency          int
	DeleteOnUnauthorized bool
	// UnauthorizedRecheck is how often a 401/403 key is asked again; default
	// DefaultUnauthorizedRecheck.
	UnauthorizedRecheck time.Duration
	DeleteRemovedKeys   bool
	// BatchWindow groups polls due within this window into one wake-up and one
	// Redis round trip; default min(Interval/100, 100ms).
	BatchWindow time.Duration
	// RedisTimeout bounds each Redis operation; default 5s.
	RedisTimeout time.Duration
	// ShutdownGrace is how long Run waits for in-flight writes after its
	// context ends; default 8s.
	ShutdownGrace time.Duration
	Gate          Gate
}

// Poller runs the polls.
type Poller struct {
	opt     Options
	fetch   Fetcher
	store   Store
	log     zerolog.Logger
	metrics *metrics.Metrics

	mu          sync.Mutex // guards jobs, pendingKeys and every job's status
	jobs        []*job
	pendingKeys []keys.SDKKey
	keysChanged chan struct{}
	kick        chan struct{}

	epoch     time.Time    // the clock's zero: schedules use the monotonic time since
	heartbeat atomic.Int64 // unix ns of the loop's last round
	redisOK   atomic.Int64 // unix ns of the last answered batch check
}

// job is one (SDK key, version) and its state. The schedule fields belong to
// the loop; the rest is written by the one goroutine polling the job, under
// Poller.mu so that Statuses can read it. A worker holds tens of thousands of
// jobs for its whole life, so the job is kept small (192 bytes): times are
// unix nanoseconds, and Status, with its time.Time values and copies of the
// key name and version, is built only when asked for.
type job struct {
	key     keys.SDKKey
	name    string // the key's redacted form, computed once
	version keys.Version
	targets []keys.Target
	backoff *backoff.ExponentialBackOff // nil while healthy

	next         int64 // when to poll, on the Poller's clock
	failingSince int64 // when the current run of failures began, on the Poller's clock; 0 when healthy
	removed      bool  // its key left the configuration; set and read by the loop
	spread       bool  // its first success placed it at a random point of the interval

	st state
}

// state is a job's Status in compact form; see Status for the meaning of
// each field. Times are unix nanoseconds, 0 for never.
type state struct {
	lcut, cursor                    int64
	lastPoll, lastSuccess, nextPoll int64
	lastOutcome, lastError          string
	failures                        int32
	current, confirmed              bool
	unauthorized                    bool
}

// status expands the job's state; the caller holds Poller.mu.
func (j *job) status() Status {
	return Status{
		Key: j.name, Version: j.version,
		Lcut: j.st.lcut, Cursor: j.st.cursor,
		LastOutcome: j.st.lastOutcome, LastError: j.st.lastError,
		LastPoll: unixTime(j.st.lastPoll), LastSuccess: unixTime(j.st.lastSuccess), NextPoll: unixTime(j.st.nextPoll),
		ConsecutiveFailures: int(j.st.failures),
		Current:             j.st.current, Confirmed: j.st.confirmed, Unauthorized: j.st.unauthorized,
	}
}

// unixTime is ns as a time, or the zero time for 0 (never).
func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Status is what the worker knows about one key and version.
type Status struct {
	Key     string       `json:"key"` // redacted
	Version keys.Version `json:"version"`
	// Lcut is the lowest lcut the target keys held at the last successful
	// poll: what every reader of this key can rely on.
	Lcut int64 `json:"lcut"`
	// Cursor is the sinceTime of the next conditional fetch.
	Cursor              int64     `json:"cursor"`
	LastOutcome         string    `json:"last_outcome"`
	LastPoll            time.Time `json:"last_poll"`
	LastSuccess         time.Time `json:"last_success"`
	LastError           string    `json:"last_error,omitempty"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	NextPoll            time.Time `json:"next_poll"`
	// Current is true when the last poll confirmed Redis holds the CDN's
	// latest payload in every target key.
	Current bool `json:"current"`
	// Confirmed is true once Current has been true since start.
	Confirmed    bool `json:"confirmed"`
	Unauthorized bool `json:"unauthorized"`
}

// OptionsFrom is the poller configuration of the worker's settings; gate is
// nil when every poll may write.
func OptionsFrom(cfg config.Config, gate Gate) Options {
	return Options{
		Keys:                 cfg.SDKKeys,
		Versions:             cfg.Versions,
		Layout:               cfg.Layout,
		Interval:             cfg.PollInterval,
		Concurrency:          cfg.PollConcurrency,
		DeleteOnUnauthorized: cfg.DeleteOnUnauthorized,
		UnauthorizedRecheck:  cfg.UnauthorizedRecheck,
		DeleteRemovedKeys:    cfg.DeleteRemovedKeys,
		Gate:                 gate,
	}
}

// New returns a Poller for opt.Keys × opt.Versions.
func New(opt Options, f Fetcher, s Store, log zerolog.Logger, m *metrics.Metrics) *Poller {
	if opt.BatchWindow <= 0 {
		// Up to 1% of the interval (100 ms at 10 s) early: within the poll
		// jitter, and few enough wake-ups and Redis round trips that a
		// batch carries many polls even at a thousand keys.
		opt.BatchWindow = min(opt.Interval/100, 100*time.Millisecond)
	}
	if opt.RedisTimeout <= 0 {
		opt.RedisTimeout = 5 * time.Second
	}
	if opt.ShutdownGrace <= 0 {
		opt.ShutdownGrace = 8 * time.Second
	}
	if opt.UnauthorizedRecheck <= 0 {
		opt.UnauthorizedRecheck = DefaultUnauthorizedRecheck
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = 64
	}
	if opt.Gate == nil {
		opt.Gate = alwaysLeading{}
	}
	p := &Poller{opt: opt, fetch: f, store: s, log: log, metrics: m, keysChanged: make(chan struct{}, 1), kick: make(chan struct{}, 1), epoch: time.Now()}
	for _, k := range opt.Keys {
		for _, v := range opt.Versions {
			p.jobs = append(p.jobs, p.newJob(k, v))
		}
	}
	m.SetKeys(len(opt.Keys))
	return p
}

func (p *Poller) newJob(k keys.SDKKey, v keys.Version) *job {
	return &job{key: k, name: k.Redacted(), version: v, targets: p.opt.Layout.Targets(k, v)}
}

// newBackoff is a failing job's retry schedule: 1 s doubling to MaxBackoff,
// ±50% at random, never giving up. Healthy jobs have none, which keeps
// thousands of them small.
func (p *Poller) newBackoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = min(time.Second, p.opt.Interval)
	b.Multiplier = 2
	b.RandomizationFactor = 0.5
	b.MaxInterval = max(MaxBackoff, p.opt.Interval)
	b.MaxElapsedTime = 0 // never give up: the next poll is always scheduled
	b.Reset()
	return b
}

// Statuses returns a snapshot of every job's status.
func (p *Poller) Statuses() []Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Status, len(p.jobs))
	for i, j := range p.jobs {
		out[i] = j.status()
	}
	return out
}

// Run polls until ctx ends, then lets in-flight polls finish (fetches are
// cancelled, writes complete) for at most ShutdownGrace.
func (p *Poller) Run(ctx context.Context) error {
	var (
		h        schedule
		done     = make(chan *job, 64)
		stopped  = make(chan struct{})
		inflight int
		timer    = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	defer close(stopped)
	finished := func(j *job) {
		select {
		case done <- j:
		case <-stopped: // Run gave up waiting; the job is dropped with it
		}
	}
	tasks, stopPollers := p.startPollers(ctx, finished)
	defer stopPollers()
	now := p.clock()
	p.mu.Lock()
	for _, j := range p.jobs {
		h.push(now, j)
	}
	p.mu.Unlock()
	for {
		p.heartbeat.Store(time.Now().UnixNano())
		// Wake at least every second so the heartbeat shows the loop alive.
		wait := time.Second
		if at, ok := h.first(); ok {
			wait = min(wait, time.Duration(at-p.clock()))
		}
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return p.drain(done, inflight)
		case j := <-done:
			inflight--
			if !j.removed {
				h.push(j.next, j)
			}
			continue
		case <-p.keysChanged:
			p.applyKeys(ctx, &h)
			continue
		case <-p.kick:
			// Everything waiting is due now (e.g. this replica just became
			// leader and should not wait out a follower's interval).
			h.allDue(p.clock())
			continue
		case <-timer.C:
		}
		horizon := p.clock() + int64(p.opt.BatchWindow)
		var batch []*job
		for {
			j, ok := h.popDue(horizon)
			if !ok {
				break
			}
			if !j.removed { // removed keys leave the schedule when their turn comes
				batch = append(batch, j)
			}
		}
		if len(batch) > 0 {
			inflight += len(batch)
			go p.runBatch(ctx, batch, tasks, finished)
		}
	}
}

func (p *Poller) drain(done chan *job, inflight int) error {
	deadline := time.NewTimer(p.opt.ShutdownGrace)
	defer deadline.Stop()
	for inflight > 0 {
		select {
		case <-done:
			inflight--
		case <-deadline.C:
			p.log.Warn().Int("in_flight", inflight).Msg("shutdown grace period over; leaving polls unfinished (no write is ever half-applied)")
			return nil
		}
	}
	return nil
}

// clock is the monotonic time since the Poller was made, in nanoseconds:
// cheap to compare in the heap, and immune to wall-clock jumps.
func (p *Poller) clock() int64 { return int64(time.Since(p.epoch)) }

// Alive reports when the scheduling loop last went round (zero before Run).
func (p *Poller) Alive() time.Time {
	n := p.heartbeat.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// RedisOK reports when Redis last answered a batch check (zero if never).
func (p *Poller) RedisOK() time.Time {
	n := p.redisOK.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Kick makes every waiting job due at once. It never blocks.
func (p *Poller) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// SetKeys replaces the set of SDK keys while Run is running: new keys are
// polled at once, removed ones stop being polled (and, with
// DeleteRemovedKeys, lose their Redis entries). It never blocks.
func (p *Poller) SetKeys(ks []keys.SDKKey) {
	p.mu.Lock()
	p.pendingKeys = append([]keys.SDKKey(nil), ks...)
	p.mu.Unlock()
	select {
	case p.keysChanged <- struct{}{}:
	default: // a change is already pending; it will read the latest set
	}
}

// applyKeys runs on the loop: it adds and removes jobs to match pendingKeys.
func (p *Poller) applyKeys(ctx context.Context, h *schedule) {
	p.mu.Lock()
	want := map[string]keys.SDKKey{}
	for _, k := range p.pendingKeys {
		want[k.Reveal()] = k
	}
	have := map[string]bool{}
	var kept, removed []*job
	for _, j := range p.jobs {
		if _, ok := want[j.key.Reveal()]; ok {
			kept = append(kept, j)
			have[j.key.Reveal()] = true
		} else {
			removed = append(removed, j)
		}
	}
	var added []*job
	for _, k := range p.pendingKeys {
		if have[k.Reveal()] {
			continue
		}
		have[k.Reveal()] = true
		for _, v := range p.opt.Versions {
			added = append(added, p.newJob(k, v))
		}
	}
	p.jobs = append(kept, added...)
	nKeys := len(p.pendingKeys)
	p.mu.Unlock()

	now := p.clock()
	for _, j := range added {
		h.push(now, j)
	}
	for _, j := range removed {
		j.removed = true
		p.metrics.ForgetKey(j.name, string(j.version))
	}
	p.metrics.SetKeys(nKeys)
	if len(added)+len(removed) == 0 {
		return
	}
	p.log.Info().Int("jobs_added", len(added)).Int("jobs_removed", len(removed)).Int("sdk_keys", nKeys).Msg("SDK keys changed")
	if p.opt.DeleteRemovedKeys && len(removed) > 0 && p.opt.Gate.Leading() {
		go func() {
			for _, j := range removed {
				if err := p.deleteEntries(ctx, j, "key removed from the configuration (DELETE_REMOVED_KEYS)"); err != nil {
					p.log.Warn().Err(err).Str("sdk_key", j.name).Msg("deleting a removed key's entries failed")
				}
			}
		}()
	}
}

// Once polls every job once, all through the same path as Run, and returns
// their statuses.
func (p *Poller) Once(ctx context.Context) []Status {
	done := make(chan *job, len(p.jobs))
	finished := func(j *job) { done <- j }
	tasks, stop := p.startPollers(ctx, finished)
	defer stop()
	const batchSize = 256
	for i := 0; i < len(p.jobs); i += batchSize {
		p.runBatch(ctx, p.jobs[i:min(i+batchSize, len(p.jobs))], tasks, finished)
	}
	for range p.jobs {
		<-done
	}
	return p.Statuses()
}

// task is one job to poll with what Redis holds for it.
type task struct {
	j          *job
	stored     []writer.Stored
	inspectErr error
}

// startPollers starts Concurrency goroutines that poll the tasks sent to
// them, which caps the requests in flight. They live as long as the run, so
// the stacks the HTTP client grows are grown once, not once per poll.
func (p *Poller) startPollers(ctx context.Context, finished func(*job)) (chan<- task, func()) {
	tasks, quit := make(chan task), make(chan struct{})
	for i := 0; i < p.opt.Concurrency; i++ {
		go func() {
			for {
				select {
				case t := <-tasks:
					p.poll(ctx, t.j, t.stored, t.inspectErr)
					finished(t.j)
				case <-quit:
					return
				}
			}
		}()
	}
	return tasks, func() { close(quit) }
}

// runBatch asks Redis about every target of the batch in one pipeline, then
// hands each job to the pollers. Every job reaches finished exactly once,
// polled or not.
func (p *Poller) runBatch(ctx context.Context, batch []*job, tasks chan<- task, finished func(*job)) {
	var targets []keys.Target
	for _, j := range batch {
		targets = append(targets, j.targets...)
	}
	var (
		stored     []writer.Stored
		inspectErr error
	)
	ictx, cancel := context.WithTimeout(ctx, p.opt.RedisTimeout)
	stored, inspectErr = p.store.Inspect(ictx, targets)
	cancel()
	if inspectErr != nil {
		p.metrics.RedisError("inspect")
	} else {
		p.redisOK.Store(time.Now().UnixNano())
	}
	offset := 0
	for _, j := range batch {
		var js []writer.Stored
		if stored != nil {
			js = stored[offset : offset+len(j.targets)]
		}
		offset += len(j.targets)
		select {
		case tasks <- task{j, js, inspectErr}:
		case <-ctx.Done():
			p.reschedule(j, kindNotPolled, 0)
			finished(j)
		}
	}
}

// reschedule sets the job's next poll time from the outcome kind.
func (p *Poller) reschedule(j *job, k kind, retryAfter time.Duration) {
	now := time.Now()
	clock := int64(now.Sub(p.epoch)) // p.clock() at now: one reading of the time for both
	var b, failingFor time.Duration
	switch k {
	case kindRetry, kindRateLimited, kindRedisRetry:
		if j.backoff == nil {
			j.backoff = p.newBackoff()
		}
		b = j.backoff.NextBackOff()
		if j.failingSince == 0 {
			j.failingSince = max(clock, 1) // 0 means healthy
		}
		failingFor = time.Duration(clock - j.failingSince)
	case kindSuccess, kindFollower:
		j.backoff = nil
		j.failingSince = 0
	}
	first := (k == kindSuccess || k == kindFollower) && !j.spread
	if first {
		j.spread = true
	}
	delay := nextDelay(delayInput{kind: k, interval: p.opt.Interval, recheck: p.opt.UnauthorizedRecheck, backoff: b,
		retryAfter: retryAfter, failingFor: failingFor, first: first, u: rand.Float64()})
	j.next = clock + int64(delay)
	p.mu.Lock()
	j.st.nextPoll = now.Add(delay).UnixNano()
	p.mu.Unlock()
}

// schedule is a min-heap of jobs by the time of their next poll. The times
// live in the heap's own array, so keeping order never touches the jobs
// themselves: with tens of thousands of jobs, chasing those pointers on every
// comparison cost more than the comparisons. It is not a container/heap
// because that boxes every pushed entry in an interface: one allocation per
// poll.
type schedule []entry

type entry struct {
	at int64 // on the Poller's clock
	j  *job
}

func (s *schedule) push(at int64, j *job) {
	*s = append(*s, entry{at, j})
	h := *s
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if h[parent].at <= h[i].at {
			break
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
}

// first is the earliest time in the schedule.
func (s schedule) first() (int64, bool) {
	if len(s) == 0 {
		return 0, false
	}
	return s[0].at, true
}

// popDue removes and returns the earliest job if it is due by limit.
func (s *schedule) popDue(limit int64) (*job, bool) {
	h := *s
	if len(h) == 0 || h[0].at > limit {
		return nil, false
	}
	j := h[0].j
	last := len(h) - 1
	h[0] = h[last]
	h[last] = entry{}
	h = h[:last]
	for i := 0; ; {
		small, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l].at < h[small].at {
			small = l
		}
		if r < len(h) && h[r].at < h[small].at {
			small = r
		}
		if small == i {
			break
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
	*s = h
	return j, true
}

// allDue makes every job due at now (equal times keep the heap order).
func (s schedule) allDue(now int64) {
	for i := range s {
		s[i].at = now
	}
}
