package poller

// ID lists (issue 12): the syncer that keeps each SDK key's ID-list manifest
// and list files current in Redis, beside the config specs. It runs its own
// loop (ID lists have their own interval, like the SDKs' idListsSyncInterval)
// and meets the CDN client (pkg/idlists) and the writer here, in the poller.
//
// One sync of a key: fetch the manifest; read what Redis holds (the stored
// manifest per schema, then every list's length, fileID and first byte in
// one pipeline); decide per list (idlists.Decide: nothing, append, replace,
// ignore, remove); download only the new bytes, validated before anything is
// written (an append in one guarded APPEND, a replacement streamed into a
// stage and renamed into place); then write the manifest, announcing no more
// than is stored; then delete the lists that left it. An unchanged manifest
// costs one request and writes nothing.

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/metrics"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

// IDListSource is the CDN side of ID lists (idlists.Client).
type IDListSource interface {
	FetchManifest(ctx context.Context, k keys.SDKKey) idlists.Result
	OpenChunk(ctx context.Context, k keys.SDKKey, e idlists.Entry, offset int64) (*idlists.Chunk, error)
}

// IDListStore is the Redis side of ID lists (writer.Writer).
type IDListStore interface {
	ReadIDListManifest(ctx context.Context, t keys.ManifestTarget) ([]byte, int64, error)
	ReadIDLists(ctx context.Context, targets []keys.IDListTarget) ([]writer.IDListState, error)
	AppendIDList(ctx context.Context, t keys.IDListTarget, fileID string, offset int64, chunk []byte) (writer.IDListWrite, error)
	StageIDList(ctx context.Context, t keys.IDListTarget, token string, offset int64, chunk []byte) (writer.IDListWrite, error)
	CommitIDList(ctx context.Context, t keys.IDListTarget, token, fileID string, length int64) (writer.IDListWrite, error)
	AbortIDList(ctx context.Context, t keys.IDListTarget, token string) (writer.IDListWrite, error)
	WriteIDListManifest(ctx context.Context, t keys.ManifestTarget, manifestJSON []byte, marker int64) (writer.ManifestWrite, error)
	DeleteIDList(ctx context.Context, t keys.IDListTarget) error
	DeleteIDListManifest(ctx context.Context, t keys.ManifestTarget) error
	TouchIDLists(ctx context.Context, manifests []keys.ManifestTarget, lists []keys.IDListTarget) error
}

// IDListOptions configure an IDLists syncer.
type IDListOptions struct {
	Keys []keys.SDKKey
	// Prefix, Schemas and Format name the keys written; Format is keys.SFP
	// (the default: the manifest is a HASH) or keys.String (a STRING).
	Prefix   string
	Schemas  []keys.Schema
	Format   keys.Format
	Interval time.Duration
	// Concurrency caps the keys synced at once; default 4.
	Concurrency             int
	DeleteOnUnauthorized    bool
	UnauthorizedRecheck     time.Duration
	UnauthorizedDeleteAfter time.Duration
	DeleteRemovedKeys       bool
	// TTL is REDIS_KEY_TTL: when set, every sync renews the TTL of what it
	// keeps (writes set it themselves).
	TTL time.Duration
	// RedisTimeout bounds each Redis round trip; default 5s.
	RedisTimeout time.Duration
	Gate         Gate
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
}

// IDListOutcomes is every IDListStatus.LastOutcome.
var IDListOutcomes = []string{
	"updated",          // something was written (a list, the manifest or a removal)
	"unchanged",        // Redis already held the CDN's manifest and lists
	"unauthorized",     // the manifest request was answered 401/403
	"manifest_error",   // the manifest could not be had (status, timeout, garbage: see id_list_manifest_fetches_total)
	"download_error",   // some list could not be downloaded or was refused (bad chunk); the rest was written
	"redis_error",      // Redis could not be read or written
	"deleted",          // DELETE_ON_UNAUTHORIZED removed the key's ID lists
	"follower",         // another replica holds the writer lease; Redis holds the manifest it wrote
	"follower_missing", // another replica holds the writer lease; some manifest is missing from Redis
}

// IDListStatus is what the worker knows about one key's ID lists.
type IDListStatus struct {
	Key string `json:"key"` // redacted
	// Lists and Bytes are what the last successful sync left in Redis (the
	// first schema's copy).
	Lists               int       `json:"lists"`
	Bytes               int64     `json:"bytes"`
	LastOutcome         string    `json:"last_outcome"`
	LastError           string    `json:"last_error,omitempty"`
	LastSync            time.Time `json:"last_sync"`
	LastSuccess         time.Time `json:"last_success"`
	NextSync            time.Time `json:"next_sync"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	// Current is true when the last sync left Redis holding every list of
	// the CDN's manifest, as announced.
	Current bool `json:"current"`
	// Confirmed is true once Current has been true since start.
	Confirmed    bool      `json:"confirmed"`
	Unauthorized bool      `json:"unauthorized"`
	ConfiguredAt time.Time `json:"configured_at"`
}

// idJob is one key's ID-list state. Only the goroutine syncing it touches
// its fields other than st, next and out (guarded by IDLists.mu).
type idJob struct {
	key     keys.SDKKey
	name    string
	backoff *backoff.ExponentialBackOff

	next    time.Time
	out     bool
	removed bool

	failingSince   time.Time
	refusedSince   time.Time
	refusals       int
	refusedDeleted bool
	// absent counts, per stored list the manifest no longer names, the
	// manifests in a row without it; bad counts refused chunks in a row.
	absent map[string]int
	bad    map[string]int
	// orphans are lists dropped from the stored manifest whose keys could
	// not be deleted yet: nothing else names them any more, so they are
	// remembered here until a DEL succeeds.
	orphans map[string]bool

	st IDListStatus
}

// IDLists keeps the ID lists of every configured key current in Redis.
type IDLists struct {
	opt   IDListOptions
	src   IDListSource
	store IDListStore
	log   zerolog.Logger
	m     *metrics.Metrics

	mu   sync.Mutex
	jobs []*idJob
	// retiring holds the jobs of removed keys until their last sync ended
	// and (with DeleteRemovedKeys) their ID lists were deleted.
	retiring []*idJob
	wake     chan struct{}
	sem      chan struct{}
	wg       sync.WaitGroup

	heartbeat atomic.Int64
}

// NewIDLists returns a syncer.
func NewIDLists(opt IDListOptions, src IDListSource, store IDListStore, log zerolog.Logger, m *metrics.Metrics) *IDLists {
	if opt.Concurrency <= 0 {
		opt.Concurrency = 4
	}
	if opt.Interval <= 0 {
		opt.Interval = time.Minute
	}
	if opt.UnauthorizedRecheck <= 0 {
		opt.UnauthorizedRecheck = DefaultUnauthorizedRecheck
	}
	if opt.UnauthorizedDeleteAfter <= 0 {
		opt.UnauthorizedDeleteAfter = DefaultUnauthorizedDeleteAfter
	}
	if opt.RedisTimeout <= 0 {
		opt.RedisTimeout = 5 * time.Second
	}
	if opt.Gate == nil {
		opt.Gate = alwaysLeading{}
	}
	if opt.Format == "" {
		opt.Format = keys.SFP
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &IDLists{opt: opt, src: src, store: store, log: log.With().Str("component", "id_lists").Logger(), m: m,
		wake: make(chan struct{}, 1), sem: make(chan struct{}, opt.Concurrency)}
	s.SetKeys(opt.Keys)
	return s
}

// SetKeys replaces the configured keys: new keys are synced at once, removed
// keys stop (and their ID lists are deleted when DeleteRemovedKeys is set,
// by the loop, after any sync of theirs in flight, retried until done). A key
// added back before that reuses its job.
func (s *IDLists) SetKeys(ks []keys.SDKKey) {
	s.mu.Lock()
	byKey := map[string]*idJob{}
	for _, j := range s.jobs {
		byKey[j.key.Reveal()] = j
	}
	retiring := map[string]*idJob{}
	for _, j := range s.retiring {
		retiring[j.key.Reveal()] = j
	}
	var jobs []*idJob
	want := map[string]bool{}
	for _, k := range ks {
		want[k.Reveal()] = true
		switch j := byKey[k.Reveal()]; {
		case j != nil:
			jobs = append(jobs, j)
		case retiring[k.Reveal()] != nil:
			j := retiring[k.Reveal()]
			j.removed = false
			delete(retiring, k.Reveal())
			jobs = append(jobs, j)
		default:
			jobs = append(jobs, &idJob{key: k, name: k.Redacted(), next: s.opt.Now(), absent: map[string]int{}, bad: map[string]int{},
				orphans: map[string]bool{}, st: IDListStatus{Key: k.Redacted(), ConfiguredAt: s.opt.Now()}})
		}
	}
	for _, j := range s.jobs {
		if !want[j.key.Reveal()] {
			j.removed = true
			j.next = time.Time{}
			retiring[j.key.Reveal()] = j
		}
	}
	s.retiring = s.retiring[:0]
	for _, j := range retiring {
		s.retiring = append(s.retiring, j)
	}
	s.jobs = jobs
	s.mu.Unlock()
	s.m.SetIDListKeys(len(jobs))
	s.poke()
}

// retire handles a removed key's job once no sync of it is in flight:
// with DeleteRemovedKeys its ID lists are deleted (by the leader; retried
// every RetireRetry until it succeeds), else it is simply dropped.
func (s *IDLists) retire(ctx context.Context, j *idJob) {
	done := !s.opt.DeleteRemovedKeys
	if !done && s.opt.Gate.Leading() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*s.opt.RedisTimeout)
		err := s.deleteAll(dctx, j.key, j.orphans)
		cancel()
		if err != nil {
			s.m.RedisError("id_lists")
			s.log.Warn().Str("key", j.name).Err(err).Msg("could not delete the ID lists of a removed key; retrying")
		} else {
			done = true
			s.log.Info().Str("key", j.name).Msg("DELETE_REMOVED_KEYS: the removed key's ID lists were deleted")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j.out = false
	if !done {
		j.next = s.opt.Now().Add(RetireRetry)
		return
	}
	for i, r := range s.retiring {
		if r == j {
			s.retiring = append(s.retiring[:i], s.retiring[i+1:]...)
			break
		}
	}
}

// RetireRetry is how soon a failed delete of a removed key's ID lists is
// tried again.
const RetireRetry = 5 * time.Second

func (s *IDLists) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// TakeOver makes every key due now: this replica just became the writer.
func (s *IDLists) TakeOver() {
	s.mu.Lock()
	now := s.opt.Now()
	for _, j := range s.jobs {
		if j.next.After(now) {
			j.next = now.Add(time.Duration(rand.Int64N(int64(min(s.opt.Interval, 5*time.Second)))))
		}
	}
	s.mu.Unlock()
	s.poke()
}

// Alive is when the loop last went round.
func (s *IDLists) Alive() time.Time {
	ns := s.heartbeat.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Statuses returns every key's ID-list status, in configuration order.
func (s *IDLists) Statuses() []IDListStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]IDListStatus, len(s.jobs))
	for i, j := range s.jobs {
		out[i] = j.st
		out[i].NextSync = j.next
	}
	return out
}

// Run syncs until ctx ends, then waits for the syncs in flight.
func (s *IDLists) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		s.heartbeat.Store(time.Now().UnixNano())
		wait := s.startDue(ctx)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			s.wg.Wait()
			return nil
		case <-timer.C:
		case <-s.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

// MaxIDListSleep is the longest the ID-list loop sleeps: its heartbeat.
const MaxIDListSleep = time.Second

// startDue starts a sync of every due key, as concurrency allows (the rest
// wait for a slot), and returns how long the loop may sleep: until the
// earliest key not yet due is, at most MaxIDListSleep.
func (s *IDLists) startDue(ctx context.Context) time.Duration {
	now := s.opt.Now()
	wait := MaxIDListSleep
	s.mu.Lock()
	var due []*idJob
	for _, j := range append(s.jobs[:len(s.jobs):len(s.jobs)], s.retiring...) {
		switch {
		case j.out:
		case !j.next.After(now):
			due = append(due, j)
		default:
			wait = min(wait, j.next.Sub(now))
		}
	}
	s.mu.Unlock()
	for _, j := range due {
		select {
		case s.sem <- struct{}{}:
		default:
			return wait // a finished sync wakes the loop
		}
		s.mu.Lock()
		j.out = true
		removed := j.removed
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.sem; s.poke() }()
			if removed {
				s.retire(ctx, j)
				return
			}
			s.syncJob(ctx, j)
		}()
	}
	return wait
}

// Once syncs every key once (what `populator once` runs) and returns the
// statuses.
func (s *IDLists) Once(ctx context.Context) []IDListStatus {
	s.mu.Lock()
	jobs := append([]*idJob(nil), s.jobs...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, j := range jobs {
		s.sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.sem }()
			s.syncJob(ctx, j)
		}()
	}
	wg.Wait()
	return s.Statuses()
}

// syncResult is one sync's outcome as the scheduler sees it.
type syncResult struct {
	outcome    string
	err        error
	retryAfter time.Duration
	current    bool
	lists      int
	bytes      int64
}

func (s *IDLists) syncJob(ctx context.Context, j *idJob) {
	if !s.opt.Gate.Leading() {
		s.follow(ctx, j)
		return
	}
	r := s.sync(ctx, j)
	now := s.opt.Now()
	var delay time.Duration
	switch r.outcome {
	case "updated", "unchanged":
		j.failingSince = time.Time{}
		j.backoff = nil
		delay = jitter(s.opt.Interval)
	case "unauthorized", "deleted":
		delay = jitter(max(s.opt.UnauthorizedRecheck, s.opt.Interval))
	default:
		if j.failingSince.IsZero() {
			j.failingSince = now
		}
		if j.backoff == nil {
			j.backoff = backoff.NewExponentialBackOff()
			j.backoff.InitialInterval = time.Second
			j.backoff.MaxInterval = max(s.opt.Interval, time.Second)
			j.backoff.MaxElapsedTime = 0
			j.backoff.Reset()
		}
		delay = max(j.backoff.NextBackOff(), capRetryAfter(r.retryAfter, s.opt.Interval))
	}
	if ctx.Err() != nil && r.outcome != "updated" && r.outcome != "unchanged" {
		// A stop is not a failure: leave the status as it was.
		s.mu.Lock()
		j.out = false
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j.out = false
	j.next = now.Add(delay)
	if j.removed {
		j.next = time.Time{} // retire it now
	}
	st := &j.st
	st.LastSync, st.LastOutcome = now, r.outcome
	st.LastError = ""
	if r.err != nil {
		st.LastError = r.err.Error()
	}
	st.Unauthorized = r.outcome == "unauthorized" || r.outcome == "deleted"
	switch r.outcome {
	case "updated", "unchanged":
		st.ConsecutiveFailures = 0
		st.LastSuccess = now
		st.Lists, st.Bytes = r.lists, r.bytes
		st.Current = r.current
		st.Confirmed = st.Confirmed || r.current
	case "download_error":
		st.ConsecutiveFailures++
		st.Lists, st.Bytes = r.lists, r.bytes
		st.Current = false
	default:
		st.ConsecutiveFailures++
		st.Current = false
	}
}

// FollowerRecheck is how soon a follower looks again for a manifest it did
// not find in Redis.
const FollowerRecheck = time.Second

// follow is a follower's round: it fetches and writes nothing, but checks
// that every schema's manifest is in Redis (written by the leader), so that
// it is ready and its status says whether readers find ID lists.
func (s *IDLists) follow(ctx context.Context, j *idJob) {
	outcome := "follower"
	for _, mt := range s.manifests(j.key) {
		rctx, cancel := context.WithTimeout(ctx, s.opt.RedisTimeout)
		b, _, err := s.store.ReadIDListManifest(rctx, mt)
		cancel()
		if err != nil || b == nil {
			outcome = "follower_missing"
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j.out = false
	j.next = s.opt.Now().Add(jitter(s.opt.Interval))
	if outcome == "follower_missing" {
		// Look again soon: the leader is probably writing it now, and this
		// replica is not ready until it has seen it.
		j.next = s.opt.Now().Add(min(s.opt.Interval, FollowerRecheck))
	}
	st := &j.st
	if !strings.HasPrefix(st.LastOutcome, "follower") {
		st.ConsecutiveFailures, st.LastError = 0, ""
	}
	st.LastOutcome = outcome
	st.Current = outcome == "follower"
	st.Confirmed = st.Confirmed || st.Current
}

// jitter is d ±2%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (1 + Jitter*(2*rand.Float64()-1)))
}

// sync runs one sync of j's key.
func (s *IDLists) sync(ctx context.Context, j *idJob) syncResult {
	res := s.src.FetchManifest(ctx, j.key)
	s.m.IDListManifest(res.Label)
	switch res.Outcome {
	case fetcher.Updated:
		// The key is accepted: a later refusal starts a new streak, however
		// this sync ends.
		j.refusedSince, j.refusals, j.refusedDeleted = time.Time{}, 0, false
	case fetcher.Unauthorized:
		return s.refused(ctx, j, res)
	default:
		return syncResult{outcome: "manifest_error", err: res.Err, retryAfter: res.RetryAfter}
	}
	m := res.Manifest
	for _, r := range m.Refused {
		s.log.Warn().Str("key", j.name).Str("list", fmt.Sprintf("%q", r.Name)).Str("reason", r.Reason).Str("detail", r.Detail).
			Msg("ID-list manifest entry refused; the stored copy of that list, if any, is kept")
	}
	now := s.opt.Now()

	mts := s.manifests(j.key)
	before := make([]map[string]idlists.Entry, len(mts))
	beforeJSON := make([][]byte, len(mts))
	markers := make([]int64, len(mts))
	for i, t := range mts {
		rctx, cancel := context.WithTimeout(ctx, s.opt.RedisTimeout)
		b, marker, err := s.store.ReadIDListManifest(rctx, t)
		cancel()
		if err != nil {
			s.m.RedisError("id_lists")
			return syncResult{outcome: "redis_error", err: err}
		}
		before[i], beforeJSON[i], markers[i] = parseStoredManifest(b), b, marker
	}

	// Which stored lists the manifest left out are kept this round.
	names := listNames(m, before)
	for name := range j.orphans {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	keep := map[string]bool{}
	sort.Strings(names)
	for _, name := range names {
		_, listed := m.Entries[name]
		switch {
		case listed:
			delete(j.absent, name)
			delete(j.orphans, name)
		case j.orphans[name]:
			keep[name] = false // already out of the stored manifest: delete it
		case m.IsRefused(name):
			keep[name] = true
		default:
			j.absent[name]++
			keep[name] = keepAbsent(j.absent[name])
			if !keep[name] {
				delete(j.absent, name)
			}
		}
	}
	for name := range j.bad {
		if _, ok := m.Entries[name]; !ok {
			delete(j.bad, name)
		}
	}

	targets := make([]keys.IDListTarget, 0, len(names)*len(s.opt.Schemas))
	for _, name := range names {
		targets = append(targets, keys.IDListTargets(s.opt.Prefix, j.key, s.opt.Schemas, name)...)
	}
	rctx, cancel := context.WithTimeout(ctx, s.opt.RedisTimeout)
	states, err := s.store.ReadIDLists(rctx, targets)
	cancel()
	if err != nil {
		s.m.RedisError("id_lists")
		return syncResult{outcome: "redis_error", err: err}
	}

	ns := len(s.opt.Schemas)
	held := make([]map[string]heldList, ns)
	for i := range held {
		held[i] = map[string]heldList{}
	}
	removing := map[string]bool{}
	wrote := false
	var firstErr error
	var firstOutcome string
	fail := func(outcome string, err error) {
		if firstErr == nil {
			firstErr, firstOutcome = err, outcome
		}
	}
	for ni, name := range names {
		entry, listed := m.Entries[name]
		var ep *idlists.Entry
		if listed {
			ep = &entry
		}
		// Group this list's schemas by what they need: usually every schema
		// holds the same, and one download serves them all.
		type group struct {
			d       idlists.Decision
			targets []keys.IDListTarget
			idx     []int
		}
		var groups []*group
		for si := 0; si < ns; si++ {
			t, st := targets[ni*ns+si], states[ni*ns+si]
			if st.Err != nil {
				fail("redis_error", st.Err)
				continue
			}
			if st.Length > 0 {
				held[si][name] = heldList{Length: st.Length, FileID: st.FileID}
			}
			var stored *idlists.Stored
			if st.Length > 0 {
				stored = &idlists.Stored{FileID: st.FileID, Length: st.Length, BadChunks: j.bad[name]}
				if b, ok := before[si][name]; ok && b.FileID == st.FileID {
					stored.CreationTime = b.CreationTime
				}
				if st.First != '+' && st.First != '-' {
					// Not a list any SDK accepts (written by someone else):
					// download it again whole.
					stored.BadChunks = idlists.MaxBadChunks
				}
			}
			d := listDecision(stored, ep, keep[name])
			var g *group
			for _, x := range groups {
				if x.d.Action == d.Action && x.d.Offset == d.Offset {
					g = x
				}
			}
			if g == nil {
				g = &group{d: d}
				groups = append(groups, g)
			}
			g.targets = append(g.targets, t)
			g.idx = append(g.idx, si)
		}
		for _, g := range groups {
			switch g.d.Action {
			case idlists.Nothing, idlists.Ignore:
			case idlists.Remove:
				removing[name] = true
			case idlists.Append, idlists.Replace:
				if g.d.Action == idlists.Replace && entry.Size == 0 {
					// An empty file: no SDK accepts an empty list; the list
					// leaves the stored manifest and its copy is removed.
					removing[name] = true
					continue
				}
				results, err := s.download(ctx, j, entry, g.d, g.targets)
				for k, r := range results {
					if r.Length > 0 {
						held[g.idx[k]][name] = heldList{Length: r.Length, FileID: r.FileID}
					}
					if r.Written {
						wrote = true
					}
				}
				if err != nil {
					if idlists.IsBadChunk(err) {
						j.bad[name]++
					}
					outcome := "download_error"
					if errors.As(err, new(*writer.TargetError)) || writer.IsUnreachable(err) {
						outcome = "redis_error"
						s.m.RedisError("id_lists")
					}
					s.log.Warn().Str("key", j.name).Str("list", name).Str("action", g.d.Action.String()).Err(err).Msg("ID list not updated")
					fail(outcome, err)
				} else {
					delete(j.bad, name)
					s.log.Info().Str("key", j.name).Str("list", name).Str("action", g.d.Action.String()).Str("reason", g.d.Reason).
						Int64("offset", g.d.Offset).Int64("bytes", g.d.Length).Msg("ID list updated")
				}
			}
		}
	}
	// From here on every step completes even if the worker is stopping
	// (each within RedisTimeout): a list committed above must not stay
	// under a manifest that announces another file. A key removed from the
	// configuration meanwhile writes no manifest; what this round wrote is
	// left to its retirement (DeleteRemovedKeys).
	wctx := context.WithoutCancel(ctx)
	if s.isRemoved(j) {
		for _, name := range names {
			j.orphans[name] = true
		}
		return syncResult{outcome: "unchanged"}
	}
	// The manifests, after the lists they announce; the lists that left
	// them are remembered until their DEL succeeds.
	for name := range removing {
		j.orphans[name] = true
	}
	for i, t := range mts {
		js := storedManifest(held[i], m.Entries, before[i], removing)
		if bytes.Equal(js, beforeJSON[i]) {
			continue
		}
		rctx, cancel := context.WithTimeout(wctx, s.opt.RedisTimeout)
		w, err := s.store.WriteIDListManifest(rctx, t, js, nextMarker(now.UnixMilli(), markers[i]))
		cancel()
		if err != nil {
			s.m.RedisError("id_lists")
			return syncResult{outcome: "redis_error", err: err}
		}
		wrote = wrote || w.Written
	}
	// Then the lists that left it.
	for _, name := range sortedKeys(removing) {
		for si, t := range keys.IDListTargets(s.opt.Prefix, j.key, s.opt.Schemas, name) {
			if _, ok := held[si][name]; !ok {
				continue
			}
			rctx, cancel := context.WithTimeout(wctx, s.opt.RedisTimeout)
			err := s.store.DeleteIDList(rctx, t)
			cancel()
			if err != nil {
				s.m.RedisError("id_lists")
				return syncResult{outcome: "redis_error", err: err}
			}
			delete(held[si], name)
			wrote = true
			s.log.Info().Str("key", j.name).Str("list", name).Msg("ID list removed: it left the manifest")
		}
		delete(j.orphans, name)
	}
	// Renew the TTL of what is kept, or remove one an earlier REDIS_KEY_TTL
	// left (TouchIDLists persists when there is no TTL).
	kept := map[string]bool{}
	for _, h := range held {
		for name := range h {
			kept[name] = true
		}
	}
	var lts []keys.IDListTarget
	for _, name := range sortedKeys(kept) {
		lts = append(lts, keys.IDListTargets(s.opt.Prefix, j.key, s.opt.Schemas, name)...)
	}
	rctx, cancel = context.WithTimeout(wctx, s.opt.RedisTimeout)
	err = s.store.TouchIDLists(rctx, mts, lts)
	cancel()
	if err != nil {
		s.m.RedisError("id_lists")
		return syncResult{outcome: "redis_error", err: err}
	}

	r := syncResult{outcome: "unchanged"}
	if wrote {
		r.outcome = "updated"
	}
	for _, h := range held[0] {
		r.lists++
		r.bytes += h.Length
	}
	if firstErr != nil {
		r.outcome, r.err = firstOutcome, firstErr
		return r
	}
	r.current = current(held, m.Entries)
	return r
}

// current reports whether every schema holds every non-empty list of the
// CDN's manifest whole.
func current(held []map[string]heldList, cdn map[string]idlists.Entry) bool {
	for _, h := range held {
		for name, e := range cdn {
			if e.Size == 0 {
				continue
			}
			if x, ok := h[name]; !ok || x.FileID != e.FileID || x.Length != e.Size {
				return false
			}
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// download fetches entry's file from d.Offset and writes it to every target:
// appended in one guarded piece (Append), or streamed into a stage and
// renamed into place after the last byte was validated (Replace). Nothing of
// a refused chunk is ever visible. The results say, per target, what it held
// afterwards (Length 0: unknown or nothing).
func (s *IDLists) download(ctx context.Context, j *idJob, entry idlists.Entry, d idlists.Decision, targets []keys.IDListTarget) ([]writer.IDListWrite, error) {
	results := make([]writer.IDListWrite, len(targets))
	ch, err := s.src.OpenChunk(ctx, j.key, entry, d.Offset)
	if err != nil {
		s.m.IDListDownload(idlists.ChunkLabel(err), 0)
		return results, err
	}
	defer ch.Close()
	if d.Action == idlists.Append {
		buf, err := io.ReadAll(ch)
		// Skipped: the bytes a CDN that ignored Range sent before the offset.
		s.m.IDListDownload(idlists.ChunkLabel(err), int64(len(buf))+ch.Skipped)
		if err != nil {
			return results, err
		}
		// A validated chunk goes to every schema even if the worker is
		// stopping, so that the copies do not part.
		for i, t := range targets {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opt.RedisTimeout)
			w, err := s.store.AppendIDList(rctx, t, entry.FileID, d.Offset, buf)
			cancel()
			if err != nil {
				return results, err
			}
			results[i] = w
			if w.Written {
				s.m.IDListWritten("append", int64(len(buf)))
			}
		}
		return results, nil
	}

	token := newToken()
	abort := func() {
		for _, t := range targets {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opt.RedisTimeout)
			_, _ = s.store.AbortIDList(rctx, t, token)
			cancel()
		}
	}
	buf := make([]byte, min(StageChunkBytes, max(d.Length, 1)))
	var off int64
	for {
		n, rerr := io.ReadFull(ch, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			s.m.IDListDownload(idlists.ChunkLabel(rerr), off+int64(n)+ch.Skipped)
			abort()
			return results, rerr
		}
		if n > 0 {
			for _, t := range targets {
				rctx, cancel := context.WithTimeout(ctx, s.opt.RedisTimeout)
				w, err := s.store.StageIDList(rctx, t, token, off, buf[:n])
				cancel()
				if err == nil && !w.Written {
					err = errors.New("the ID-list stage was taken over by another writer")
				}
				if err != nil {
					s.m.IDListDownload("ok", off+int64(n)+ch.Skipped)
					abort()
					return results, err
				}
			}
			off += int64(n)
		}
		if rerr != nil {
			break
		}
	}
	s.m.IDListDownload("ok", off+ch.Skipped)
	for i, t := range targets {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opt.RedisTimeout)
		w, err := s.store.CommitIDList(rctx, t, token, entry.FileID, off)
		cancel()
		if err == nil && !w.Written {
			err = errors.New("the ID-list stage was taken over by another writer")
		}
		if err != nil {
			abort()
			return results, err
		}
		results[i] = w
		s.m.IDListWritten("replace", off)
	}
	return results, nil
}

// newToken is a random staging token.
func newToken() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// refused handles a 401/403 for the manifest, as the config-spec poller does
// for its fetches: DELETE_ON_UNAUTHORIZED removes the key's ID lists only
// after UNAUTHORIZED_DELETE_AFTER of refusals without a break and while some
// other key is accepted.
func (s *IDLists) refused(ctx context.Context, j *idJob, res idlists.Result) syncResult {
	now := s.opt.Now()
	if j.refusedSince.IsZero() {
		j.refusedSince = now
	}
	j.refusals++
	r := syncResult{outcome: "unauthorized", err: res.Err}
	if !s.opt.DeleteOnUnauthorized || j.refusedDeleted {
		return r
	}
	in := unauthorizedInput{refusedFor: now.Sub(j.refusedSince), refusals: j.refusals,
		deleteAfter: s.opt.UnauthorizedDeleteAfter, othersRefused: s.othersRefused(j)}
	if !shouldDeleteUnauthorized(in) {
		return r
	}
	if err := s.deleteAll(context.WithoutCancel(ctx), j.key, j.orphans); err != nil {
		s.m.RedisError("id_lists")
		return syncResult{outcome: "redis_error", err: err}
	}
	j.refusedDeleted = true
	s.log.Warn().Str("key", j.name).Msg("DELETE_ON_UNAUTHORIZED: the key's ID lists were deleted")
	return syncResult{outcome: "deleted", err: res.Err}
}

func (s *IDLists) othersRefused(j *idJob) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.jobs {
		if o != j && !o.st.Unauthorized {
			return false
		}
	}
	return true
}

// isRemoved reports whether j's key left the configuration.
func (s *IDLists) isRemoved(j *idJob) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return j.removed
}

// manifests names k's manifest per schema, in the configured format.
func (s *IDLists) manifests(k keys.SDKKey) []keys.ManifestTarget {
	out := keys.ManifestTargets(s.opt.Prefix, k, s.opt.Schemas)
	for i := range out {
		out[i] = out[i].InFormat(s.opt.Format)
	}
	return out
}

// deleteAll removes k's ID lists, those its stored manifests name and the
// extra ones (lists no manifest names any more), then the manifests: a
// failure part-way leaves the manifests naming what is left, so that a
// retry finds it.
func (s *IDLists) deleteAll(ctx context.Context, k keys.SDKKey, extra map[string]bool) error {
	mts := s.manifests(k)
	names := map[string]bool{}
	for n := range extra {
		names[n] = true
	}
	for _, mt := range mts {
		rctx, cancel := context.WithTimeout(ctx, s.opt.RedisTimeout)
		b, _, err := s.store.ReadIDListManifest(rctx, mt)
		cancel()
		if err != nil {
			return err
		}
		for n := range parseStoredManifest(b) {
			names[n] = true
		}
	}
	for _, name := range sortedKeys(names) {
		for _, t := range keys.IDListTargets(s.opt.Prefix, k, s.opt.Schemas, name) {
			rctx, cancel := context.WithTimeout(ctx, s.opt.RedisTimeout)
			err := s.store.DeleteIDList(rctx, t)
			cancel()
			if err != nil {
				return err
			}
		}
	}
	for _, mt := range mts {
		rctx, cancel := context.WithTimeout(ctx, s.opt.RedisTimeout)
		err := s.store.DeleteIDListManifest(rctx, mt)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}
