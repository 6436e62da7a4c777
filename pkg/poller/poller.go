// Package poller keeps every configured (SDK key, payload version) current in
// Redis. One loop wakes when polls are due and takes each batch of due jobs
// out of the schedule; a goroutine asks Redis what it holds for the batch
// (one pipeline), then pollers under a concurrency cap poll the CDN for each
// job, write what changed and put the job back in the schedule. Decisions
// (what to ask, what to write, when to poll next) are the pure functions in
// decide.go.
package poller

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

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
	// UnauthorizedDeleteAfter is how long a key must be refused without a
	// break before DeleteOnUnauthorized deletes its entries; default
	// DefaultUnauthorizedDeleteAfter.
	UnauthorizedDeleteAfter time.Duration
	// MaxClockSkew is how far ahead of the clock a stored lcut may be before
	// the key counts as pinned; default DefaultMaxClockSkew.
	MaxClockSkew      time.Duration
	DeleteRemovedKeys bool
	// BatchWindow groups polls due within this window into one wake-up and one
	// Redis round trip; default min(Interval/100, 100ms).
	BatchWindow time.Duration
	// RedisTimeout bounds each Redis operation; default 5s.
	RedisTimeout time.Duration
	// ShutdownGrace is how long Run waits for in-flight writes after its
	// context ends; default 8s.
	ShutdownGrace time.Duration
	// SlowAfter is how long a fetch may take before it counts as slow and
	// must move to the slow share of the concurrency (SlowShare), or give up
	// if that share is full; default Interval/10, within 100ms…2s.
	SlowAfter time.Duration
	Gate      Gate
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
	takeover    chan struct{}

	// healthy and slow are the two shares of the CDN concurrency, as
	// semaphores: Concurrency fetches of keys in good standing, and
	// SlowShare(Concurrency) more for keys that are failing (retries) or
	// whose fetch has taken longer than SlowAfter. A few hanging keys can
	// then hold only the slow share, never the pollers of every other key.
	healthy, slow chan struct{}

	epoch     time.Time    // the clock's zero: schedules use the monotonic time since
	heartbeat atomic.Int64 // unix ns of the loop's last round
	redisOK   atomic.Int64 // unix ns of the last answered batch check
}

// job is one (SDK key, version) and its state. While a job is out of the
// queue, only the goroutine polling it touches it; its schedule fields are
// handed back with it under the queue's lock, and its state is written under
// Poller.mu so that Statuses can read it. A worker holds tens of thousands of
// jobs for its whole life, so the job is kept small (192 bytes): times are
// unix nanoseconds, and Status, with its time.Time values and copies of the
// key name and version, is built only when asked for.
type job struct {
	key     keys.SDKKey
	name    string                      // the key's redacted form, computed once
	targets []keys.Target               // at least one; all of the job's version
	backoff *backoff.ExponentialBackOff // nil while healthy

	next         int64 // when to poll, on the Poller's clock
	failingSince int64 // when the current run of failures began, on the Poller's clock; 0 when healthy
	removed      bool  // its key left the configuration; guarded by the queue's lock
	out          bool  // a poll of it is in flight; guarded by the queue's lock
	spread       bool  // its first success placed it at a random point of the interval
	// refusedSince is when the current run of 401/403 answers began, on the
	// Poller's clock (0 when the key is not refused), refusals how many
	// there were, and refusedDeleted whether DELETE_ON_UNAUTHORIZED has
	// deleted the entries during this run.
	refusedSince   int64
	refusals       int32
	refusedDeleted bool

	st state
}

// state is a job's Status in compact form; see Status for the meaning of
// each field. Times are unix nanoseconds, 0 for never.
type state struct {
	lcut, cursor                    int64
	lastPoll, lastSuccess, nextPoll int64
	configured                      int64 // when the job was made
	lastOutcome, lastError          string
	failures                        int32
	current, confirmed              bool
	unauthorized                    bool
	futureLcut                      bool
}

// version is the job's payload version, read from its targets rather than
// kept twice: the job stays within its allocation size class.
func (j *job) version() keys.Version { return j.targets[0].Version }

// status expands the job's state; the caller holds Poller.mu.
func (j *job) status() Status {
	return Status{
		Key: j.name, Version: j.version(),
		Lcut: j.st.lcut, Cursor: j.st.cursor,
		LastOutcome: j.st.lastOutcome, LastError: j.st.lastError,
		LastPoll: unixTime(j.st.lastPoll), LastSuccess: unixTime(j.st.lastSuccess), NextPoll: unixTime(j.st.nextPoll),
		ConsecutiveFailures: int(j.st.failures),
		Current:             j.st.current, Confirmed: j.st.confirmed, Unauthorized: j.st.unauthorized,
		FutureLcut: j.st.futureLcut, ConfiguredAt: unixTime(j.st.configured),
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
	// FutureLcut is true while a target holds an lcut more than
	// MAX_CLOCK_SKEW ahead of the clock: the key is pinned until the entry is
	// removed (README, "Recovering a key with a future lcut").
	FutureLcut bool `json:"future_lcut,omitempty"`
	// ConfiguredAt is when the key was configured (the start, or when the
	// keys file added it).
	ConfiguredAt time.Time `json:"configured_at"`
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
	if opt.UnauthorizedDeleteAfter <= 0 {
		opt.UnauthorizedDeleteAfter = DefaultUnauthorizedDeleteAfter
	}
	if opt.MaxClockSkew <= 0 {
		opt.MaxClockSkew = DefaultMaxClockSkew
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = 64
	}
	if opt.SlowAfter <= 0 {
		opt.SlowAfter = min(max(opt.Interval/10, 100*time.Millisecond), 2*time.Second)
	}
	// Every job needs a target (its version is read from them).
	if len(opt.Layout.Formats) == 0 {
		opt.Layout.Formats = []keys.Format{keys.SFP}
	}
	if len(opt.Layout.Schemas) == 0 {
		opt.Layout.Schemas = []keys.Schema{keys.Hashed}
	}
	if opt.Gate == nil {
		opt.Gate = alwaysLeading{}
	}
	p := &Poller{opt: opt, fetch: f, store: s, log: log, metrics: m, keysChanged: make(chan struct{}, 1), takeover: make(chan struct{}, 1), epoch: time.Now(),
		healthy: make(chan struct{}, opt.Concurrency), slow: make(chan struct{}, SlowShare(opt.Concurrency))}
	for _, k := range opt.Keys {
		for _, v := range opt.Versions {
			p.jobs = append(p.jobs, p.newJob(k, v))
		}
	}
	m.SetKeys(len(opt.Keys))
	return p
}

func (p *Poller) newJob(k keys.SDKKey, v keys.Version) *job {
	return &job{key: k, name: k.Redacted(), targets: p.opt.Layout.Targets(k, v),
		st: state{configured: time.Now().UnixNano()}}
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
	q := newQueue()
	if p.opt.DeleteRemovedKeys {
		// Deleted once no poll of the key is in flight, so that a poll
		// already under way cannot write the entries back.
		q.retired = func(j *job) {
			go func() {
				if err := p.deleteEntries(ctx, j, "key removed from the configuration (DELETE_REMOVED_KEYS)"); err != nil {
					p.log.Warn().Err(err).Str("sdk_key", j.name).Msg("deleting a removed key's entries failed")
				}
			}()
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	work, stopPollers := p.startPollers(ctx, q.put)
	defer stopPollers()
	now := p.clock()
	p.mu.Lock()
	jobs := p.jobs
	p.mu.Unlock()
	for _, j := range jobs {
		q.add(now, j)
	}
	for {
		p.heartbeat.Store(time.Now().UnixNano())
		now := p.clock()
		// Wake at least every second so the heartbeat shows the loop alive.
		at := q.sleepUntil(now + int64(heartbeat))
		timer.Reset(min(max(time.Duration(at-now), 0), heartbeat))
		select {
		case <-ctx.Done():
			if n := q.waitIdle(p.opt.ShutdownGrace); n > 0 {
				p.log.Warn().Int("in_flight", n).Msg("shutdown grace period over; leaving polls unfinished (no write is ever half-applied)")
			}
			return nil
		case <-p.keysChanged:
			p.applyKeys(ctx, q)
			continue
		case <-p.takeover:
			// This replica just became leader: every key is polled within
			// one interval, at random points of it, so a takeover spreads
			// the polls as a start does instead of sending them all at once
			// (and keeping them in one burst every interval after).
			q.spreadWithin(p.clock(), int64(p.opt.Interval), rand.Float64)
			continue
		case <-q.wake:
			continue
		case <-timer.C:
		}
		if batch := q.takeDue(p.clock() + int64(p.opt.BatchWindow)); len(batch) > 0 {
			go p.runBatch(ctx, batch, work, q.put)
		}
	}
}

// heartbeat is the longest the scheduling loop ever sleeps: /healthz sees it
// go round at least this often, whatever the schedule holds.
const heartbeat = time.Second

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

// TakeOver tells the poller this replica has just become leader: every key
// is then polled within one interval, spread over it. It never blocks.
func (p *Poller) TakeOver() {
	select {
	case p.takeover <- struct{}{}:
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
func (p *Poller) applyKeys(ctx context.Context, q *queue) {
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
		q.add(now, j)
	}
	q.remove(removed) // DELETE_REMOVED_KEYS deletes through q.retired
	for _, j := range removed {
		p.metrics.ForgetKey(j.name, string(j.version()))
	}
	p.metrics.SetKeys(nKeys)
	if len(added)+len(removed) == 0 {
		return
	}
	p.log.Info().Int("jobs_added", len(added)).Int("jobs_removed", len(removed)).Int("sdk_keys", nKeys).Msg("SDK keys changed")
}

// Once polls every job once, all through the same path as Run, and returns
// their statuses.
func (p *Poller) Once(ctx context.Context) []Status {
	var wg sync.WaitGroup
	wg.Add(len(p.jobs))
	finished := func(*job) { wg.Done() }
	work, stop := p.startPollers(ctx, finished)
	defer stop()
	const batchSize = 256
	for i := 0; i < len(p.jobs); i += batchSize {
		p.runBatch(ctx, p.jobs[i:min(i+batchSize, len(p.jobs))], work, finished)
	}
	wg.Wait()
	return p.Statuses()
}

// batch is a set of due jobs with what Redis holds for their targets. The
// pollers that take part in it claim its jobs one at a time until none is
// left, so a poller that finishes a job takes the next without a hand-off.
type batch struct {
	jobs       []*job
	stored     []writer.Stored // the targets of jobs[i] are stored[start[i]:start[i+1]]
	start      []int
	inspectErr error
	next       atomic.Int64
}

// claim returns the index of the next unclaimed job.
func (b *batch) claim() (int, bool) {
	i := int(b.next.Add(1) - 1)
	return i, i < len(b.jobs)
}

func (b *batch) storedFor(i int) []writer.Stored {
	if b.stored == nil {
		return nil
	}
	return b.stored[b.start[i]:b.start[i+1]]
}

// startPollers starts Concurrency goroutines that poll the jobs of the
// batches sent to them, which caps the requests in flight. They live as long
// as the run, so the stacks the HTTP client grows are grown once, not once
// per poll.
func (p *Poller) startPollers(ctx context.Context, finished func(*job)) (chan<- *batch, func()) {
	work, quit := make(chan *batch), make(chan struct{})
	for range p.pollers() {
		go func() {
			for {
				select {
				case b := <-work:
					for i, ok := b.claim(); ok; i, ok = b.claim() {
						p.poll(ctx, b.jobs[i], b.storedFor(i), b.inspectErr)
						finished(b.jobs[i])
					}
				case <-quit:
					return
				}
			}
		}()
	}
	return work, func() { close(quit) }
}

// pollers is how many goroutines poll: one per fetch either share allows.
func (p *Poller) pollers() int { return cap(p.healthy) + cap(p.slow) }

// SlowShare is the part of the CDN concurrency added for failing and slow
// fetches: a quarter of the rest, at least one.
func SlowShare(concurrency int) int { return max(1, concurrency/4) }

// runBatch asks Redis about every target of the jobs in one pipeline, then
// has the pollers poll them. Every job reaches finished exactly once, polled
// or not.
func (p *Poller) runBatch(ctx context.Context, jobs []*job, work chan<- *batch, finished func(*job)) {
	b := &batch{jobs: jobs, start: make([]int, len(jobs)+1)}
	for i, j := range jobs {
		b.start[i+1] = b.start[i] + len(j.targets)
	}
	targets := make([]keys.Target, 0, b.start[len(jobs)])
	for _, j := range jobs {
		targets = append(targets, j.targets...)
	}
	ictx, cancel := context.WithTimeout(ctx, p.opt.RedisTimeout)
	b.stored, b.inspectErr = p.store.Inspect(ictx, targets)
	cancel()
	if b.inspectErr != nil {
		b.stored = nil
		p.metrics.RedisError("inspect")
	} else {
		p.redisOK.Store(time.Now().UnixNano())
	}
	// As many pollers as there are jobs, up to the cap; fewer when the first
	// ones have already claimed every job.
	for n := min(len(jobs), p.pollers()); n > 0 && b.next.Load() < int64(len(jobs)); n-- {
		select {
		case work <- b:
		case <-ctx.Done():
			for i, ok := b.claim(); ok; i, ok = b.claim() {
				p.reschedule(jobs[i], kindNotPolled, 0)
				finished(jobs[i])
			}
			return
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
	cadence := !first && (k == kindSuccess || k == kindFollower || k == kindNotPolled)
	j.next = nextPollAt(clock, j.next, delay, p.opt.BatchWindow, cadence)
	p.mu.Lock()
	j.st.nextPoll = now.Add(time.Duration(j.next - clock)).UnixNano()
	p.mu.Unlock()
}
