package poller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

var errNotLeader = errors.New("not the leader")

// outcome is the result of one poll as the scheduler and the status see it.
type outcome struct {
	kind       kind
	label      string // Status.LastOutcome
	err        error
	retryAfter time.Duration
	lcut       int64 // lowest lcut held by the targets after a success
	cursor     int64 // new cursor after a success (0 = keep)
	written    int   // target keys written
	reset      bool  // forget cursor and lcut (entries deleted)
	future     bool  // Redis holds an lcut beyond the clock skew
}

// poll runs one poll of j: decide what to ask, fetch, write what changed.
// stored is what the batch's Inspect found for j's targets.
func (p *Poller) poll(ctx context.Context, j *job, stored []writer.Stored, inspectErr error) {
	v := string(j.version())
	if inspectErr != nil {
		p.finish(j, outcome{kind: kindRedisRetry, label: "redis_error", err: inspectErr})
		return
	}
	for _, s := range stored {
		if s.Unreachable {
			// Its node (a failed Cluster master) cannot be asked: nothing to
			// fetch for, and a write would wait for the node's timeout. The
			// keys on other nodes go on; this one resumes after failover.
			p.finish(j, outcome{kind: kindRedisRetry, label: "redis_error", err: s.Err})
			return
		}
	}
	if lcut := maxLcut(stored); futureLcut(lcut, time.Now(), p.opt.MaxClockSkew) {
		// Nothing the CDN sends can replace it (the write guard refuses
		// anything older), so fetching would only cost downloads: say so
		// until an operator resets or removes the entry (README,
		// "Recovering a key with a future lcut"); the next poll after that
		// rewrites it.
		p.finish(j, outcome{kind: kindRedisRetry, label: "future_lcut", future: true,
			err: fmt.Errorf("Redis holds lcut %d, more than MAX_CLOCK_SKEW ahead of this clock: no real update can replace it; see README 'Recovering a key with a future lcut'", lcut)})
		return
	}
	if !p.opt.Gate.Leading() {
		// A follower fetches and writes nothing, but keeps watching Redis so
		// it is ready (every key present) and its status stays informative.
		o := outcome{kind: kindFollower, label: "follower", lcut: minLcut(stored)}
		for _, s := range stored {
			if !s.Present() {
				o.label, o.lcut = "follower_missing", 0
			}
		}
		p.finish(j, o)
		return
	}
	p.mu.Lock()
	cursor, confirmed := j.st.cursor, j.st.lcut
	p.mu.Unlock()
	since := sinceTime(cursor, confirmed, stored)

	start := time.Now()
	res, fetched := p.fetchShared(ctx, j, since)
	if !fetched {
		// A failing key, and the slow share is full of others: its turn
		// comes at its next poll, and the healthy keys keep theirs.
		p.finish(j, outcome{kind: kindNotPolled, label: "deferred"})
		return
	}
	p.metrics.Fetch(v, res.Label, time.Since(start).Seconds())
	if errors.Is(ctx.Err(), context.Canceled) && res.Outcome != fetcher.Updated {
		// Shutting down: the fetch was cut short on purpose; not a failure.
		p.finish(j, outcome{kind: kindNotPolled, label: "canceled"})
		return
	}

	switch res.Outcome {
	case fetcher.Updated:
		p.metrics.Payload(v, len(res.Body))
		if res.HeaderMismatch {
			p.metrics.LcutMismatch(v)
			p.log.Warn().Str("sdk_key", j.name).Str("version", v).Int64("header_lcut", res.HeaderLcut).
				Int64("body_time", res.Meta.Time).Int64("cursor", res.Cursor).
				Msg("x-since-time differs from the payload time (or lies beyond the clock skew); storing the payload time")
		}
		p.finish(j, p.apply(ctx, j, res, stored, since > 0))
	case fetcher.NoUpdate:
		p.mu.Lock()
		first := !j.st.confirmed
		p.mu.Unlock()
		if first {
			// A start or takeover confirmed by a conditional poll: the
			// statsig-br siblings go, as with a write.
			switch err := p.deleteSiblings(ctx, j); {
			case errors.Is(err, errNotLeader):
				p.finish(j, outcome{kind: kindNotPolled, label: "not_leader"}) // not a Redis error
				return
			case err != nil:
				p.finish(j, outcome{kind: kindRedisRetry, label: "redis_error", err: err})
				return
			}
		}
		if err := p.touch(ctx, j, j.targets); err != nil {
			p.finish(j, outcome{kind: kindRedisRetry, label: "redis_error", err: err})
			return
		}
		p.finish(j, outcome{kind: kindSuccess, label: res.Label, lcut: minLcut(stored)})
	case fetcher.Unauthorized:
		p.finish(j, p.refused(ctx, j, res))
	case fetcher.RateLimited:
		p.finish(j, outcome{kind: kindRateLimited, label: res.Label, err: res.Err, retryAfter: res.RetryAfter})
	default:
		var ip *fetcher.InvalidPayloadError
		switch {
		case errors.As(res.Err, &ip):
			p.metrics.Invalid(v, ip.Reason)
		case res.Outcome == fetcher.Rejected && res.Status == http.StatusOK:
			p.metrics.Invalid(v, res.Label) // unsupported_format, too_large
		}
		p.finish(j, outcome{kind: kindRetry, label: res.Label, err: res.Err, retryAfter: res.RetryAfter})
	}
}

// fetchShared fetches within the shares of the concurrency. A key in a run of
// failures takes a slow slot, or is not fetched at all (false) when none is
// free. Any other key takes a healthy slot; if its fetch is still running
// after SlowAfter, it moves to a slow slot when one is free. When none is, a
// conditional poll that has not even had its response headers yet is given
// up (a "canceled" fetch, retried later as a failing key): a hanging CDN holds
// a healthy slot for SlowAfter at most. A full download, or an answer that is
// arriving, keeps its slot: it is slow, not hanging, and cancelling it would
// only cost it again.
func (p *Poller) fetchShared(ctx context.Context, j *job, since int64) (fetcher.Result, bool) {
	if j.backoff != nil {
		select {
		case p.slow <- struct{}{}:
			defer func() { <-p.slow }()
			return p.fetch.Fetch(ctx, j.key, j.version(), since), true
		default:
			return fetcher.Result{}, false
		}
	}
	select {
	case p.healthy <- struct{}{}:
	case <-ctx.Done():
		return fetcher.Result{Outcome: fetcher.Transient, Label: "canceled", Class: "canceled", Err: ctx.Err()}, true
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu          sync.Mutex
		slow, ended bool
		answering   atomic.Bool
	)
	fctx = httptrace.WithClientTrace(fctx, &httptrace.ClientTrace{GotFirstResponseByte: func() { answering.Store(true) }})
	timer := time.AfterFunc(p.opt.SlowAfter, func() {
		mu.Lock()
		defer mu.Unlock()
		if ended {
			return
		}
		select {
		case p.slow <- struct{}{}:
			slow = true
			<-p.healthy
		default:
			if since > 0 && !answering.Load() {
				cancel()
			}
		}
	})
	res := p.fetch.Fetch(fctx, j.key, j.version(), since)
	timer.Stop()
	mu.Lock()
	ended = true
	if slow {
		<-p.slow
	} else {
		<-p.healthy
	}
	mu.Unlock()
	return res, true
}

// refused handles a 401/403: the key is re-checked rarely, and with
// DELETE_ON_UNAUTHORIZED its entries are deleted once shouldDeleteUnauthorized
// says the refusal is the key's own and has lasted.
func (p *Poller) refused(ctx context.Context, j *job, res fetcher.Result) outcome {
	o := outcome{kind: kindUnauthorized, label: res.Label, err: res.Err}
	now := p.clock()
	if j.refusedSince == 0 {
		j.refusedSince = max(now, 1) // 0 means not refused
	}
	j.refusals++
	if !p.opt.DeleteOnUnauthorized || j.refusedDeleted {
		return o
	}
	in := unauthorizedInput{refusedFor: time.Duration(now - j.refusedSince), refusals: int(j.refusals),
		deleteAfter: p.opt.UnauthorizedDeleteAfter, othersRefused: p.othersRefused(j)}
	if !shouldDeleteUnauthorized(in) {
		if j.refusals == 1 {
			p.log.Warn().Str("sdk_key", j.name).Str("version", string(j.version())).Dur("delete_after", p.opt.UnauthorizedDeleteAfter).
				Int("rechecks", MinUnauthorizedRechecks).Msg("key refused; its entries are deleted only if it stays refused (DELETE_ON_UNAUTHORIZED) while other keys are accepted")
		}
		return o
	}
	if err := p.deleteEntries(ctx, j, "key refused without a break (DELETE_ON_UNAUTHORIZED)"); err != nil {
		o.err = errors.Join(o.err, err)
		return o
	}
	j.refusedDeleted = true
	o.reset = true
	return o
}

// othersRefused reports whether every configured key other than j's is
// currently refused (true when there is no other key).
func (p *Poller) othersRefused(j *job) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range p.jobs {
		if o.key != j.key && !o.st.unauthorized {
			return false
		}
	}
	return true
}

// apply writes a validated payload to every target that holds less, deletes
// the statsig-br siblings, and refreshes TTLs.
// conditional says the fetch carried sinceTime: only then is the write a
// fresh change whose propagation delay means something (a first sync or a
// heal rewrites lcuts that may be weeks old).
func (p *Poller) apply(ctx context.Context, j *job, res fetcher.Result, stored []writer.Stored, conditional bool) outcome {
	v := string(j.version())
	need := needsWrite(res.Meta.Time, stored)
	held := make([]int64, len(j.targets))
	payload := &writer.Payload{Body: res.Body, Lcut: res.Meta.Time}
	var (
		errs      []error
		written   int
		untouched []keys.Target
	)
	for i, t := range j.targets {
		if need[i] && !p.opt.Gate.Leading() {
			// The lease was lost while fetching: stop writing at once.
			errs = append(errs, errNotLeader)
			p.metrics.Write(v, "not_leader", 0)
			continue
		}
		if !need[i] {
			held[i] = stored[i].Lcut
			untouched = append(untouched, t)
			p.metrics.Write(v, "unchanged", 0)
			continue
		}
		wr, err := p.write(ctx, t, payload)
		switch {
		case err != nil:
			errs = append(errs, err)
			p.metrics.Write(v, "error", 0)
			p.metrics.RedisError("write")
		case wr.Written:
			if wr.Warning != "" {
				p.log.Warn().Str("sdk_key", j.name).Str("version", v).Str("target", string(t.Format)+"/"+string(t.Schema)).
					Str("wait", wr.Warning).Msg("written, but fewer replicas acknowledged it than REDIS_WAIT_REPLICAS")
			}
			held[i] = res.Meta.Time
			written++
			p.metrics.Write(v, "written", len(res.Body))
			if conditional {
				p.metrics.Propagation(v, time.Since(time.UnixMilli(res.Meta.Time)).Seconds())
			}
		default:
			held[i] = wr.Stored
			untouched = append(untouched, t)
			p.metrics.Write(v, "stale_skipped", 0)
		}
	}
	p.mu.Lock()
	first := !j.st.confirmed
	p.mu.Unlock()
	if len(errs) == 0 && (written > 0 || first) {
		// At start-up and with every write, as the layout requires; not on
		// every full body a misbehaving CDN may send while nothing changes.
		// Its own Redis budget, and it runs to completion during shutdown.
		if err := p.deleteSiblings(context.WithoutCancel(ctx), j); err != nil {
			errs = append(errs, err)
		}
	}
	// The healthy targets' TTLs are refreshed even when another target of
	// the key failed: otherwise one broken target would let them expire.
	if err := p.touch(context.WithoutCancel(ctx), j, untouched); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 1 && errs[0] == errNotLeader {
		return outcome{kind: kindNotPolled, label: "not_leader"}
	}
	if len(errs) > 0 {
		// Not kindRedisRetry: a write that fails after a successful fetch (a
		// full Redis, a key of another type) costs a whole download per retry,
		// so it backs off like an upstream failure once it persists.
		return outcome{kind: kindRetry, label: "redis_error", err: errors.Join(errs...), written: written}
	}
	if written > 0 {
		p.log.Info().Str("sdk_key", j.name).Str("version", v).Int64("lcut", res.Meta.Time).
			Int("bytes", len(res.Body)).Int("keys_written", written).Msg("payload written")
	}
	lcut, newest := held[0], held[0]
	for _, h := range held {
		lcut, newest = min(lcut, h), max(newest, h)
	}
	// "updated" only when something was written: a payload every target
	// already held is "unchanged", and one older than what Redis holds is
	// "stale_skipped" (another writer went ahead).
	label := "updated"
	switch {
	case written > 0:
	case newest > res.Meta.Time:
		label = "stale_skipped"
	default:
		label = "unchanged"
	}
	return outcome{kind: kindSuccess, label: label, lcut: lcut, cursor: res.Cursor, written: written}
}

// write stores payload into one target. Each write has its own Redis budget
// (a pooled connection's wait included), so a slow Redis makes a job slower,
// never a job with many targets fail by design; and it runs to completion
// during shutdown: each is one atomic script.
func (p *Poller) write(ctx context.Context, t keys.Target, payload *writer.Payload) (writer.WriteResult, error) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opt.RedisTimeout)
	defer cancel()
	return p.store.Write(wctx, t, payload)
}

// touch refreshes the TTL of targets, some or all of j's, after a successful
// poll. With no TTL configured it runs once per job,
// to clear a TTL an earlier configuration may have left.
func (p *Poller) touch(ctx context.Context, j *job, targets []keys.Target) error {
	p.mu.Lock()
	first := !j.st.confirmed
	p.mu.Unlock()
	if p.store.TTL() == 0 && !first {
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, p.opt.RedisTimeout)
	defer cancel()
	if err := p.store.Touch(tctx, targets); err != nil {
		p.metrics.RedisError("touch")
		return err
	}
	return nil
}

// deleteSiblings removes the statsig-br keys next to j's targets: server-core
// stores with getBytes read them first, so a leftover would hide our writes.
func (p *Poller) deleteSiblings(ctx context.Context, j *job) error {
	if !p.opt.Gate.Leading() {
		return errNotLeader // fenced: only a leader whose lease is valid deletes
	}
	dctx, cancel := context.WithTimeout(ctx, p.opt.RedisTimeout)
	defer cancel()
	if err := p.store.DeleteSiblings(dctx, j.targets); err != nil {
		p.metrics.RedisError("delete")
		return err
	}
	return nil
}

// deleteEntries removes everything written for j; why goes to the log. It is
// fenced like every delete: a replica that is not the leader, or whose lease
// may have expired by its own clock, deletes nothing (a delete also removes
// the write guard, so a stale replica's delete could let an older payload
// back in).
func (p *Poller) deleteEntries(ctx context.Context, j *job, why string) error {
	if !p.opt.Gate.Leading() {
		p.log.Warn().Str("sdk_key", j.name).Str("version", string(j.version())).Str("reason", why).
			Msg("not deleting: this replica is not the leader")
		return errNotLeader
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opt.RedisTimeout)
	defer cancel()
	if err := p.store.Delete(dctx, j.targets); err != nil {
		p.metrics.RedisError("delete")
		return err
	}
	p.log.Warn().Str("sdk_key", j.name).Str("version", string(j.version())).Str("reason", why).Msg("Redis entries deleted")
	return nil
}

// finish records a poll's outcome in the job's status, logs transitions and
// schedules the next poll.
func (p *Poller) finish(j *job, o outcome) {
	now := time.Now().UnixNano()
	p.mu.Lock()
	st := &j.st
	prevFailures, prevOutcome := int(st.failures), st.lastOutcome
	if o.kind != kindNotPolled {
		st.lastOutcome = o.label
		st.lastPoll = now
	}
	if o.kind == kindFollower && prevOutcome != "" && !strings.HasPrefix(prevOutcome, "follower") {
		st.failures, st.lastError = 0, ""
	}
	if o.kind != kindNotPolled {
		st.futureLcut = o.future
	}
	switch o.kind {
	case kindSuccess:
		st.lastSuccess = now
		st.lastError = ""
		st.failures = 0
		st.current, st.confirmed, st.unauthorized = true, true, false
		st.lcut = o.lcut
		if o.cursor > 0 {
			st.cursor = o.cursor
		}
	case kindFollower:
		st.current = o.label == "follower"
		st.confirmed = st.confirmed || st.current
		st.lcut = o.lcut
	case kindNotPolled:
	default:
		st.failures++
		st.current = false
		st.unauthorized = o.kind == kindUnauthorized
		if o.err != nil {
			st.lastError = o.err.Error()
		}
		if o.reset {
			st.cursor, st.lcut = 0, 0
		}
	}
	failures, lcut := int(st.failures), st.lcut
	p.mu.Unlock()
	if o.kind != kindUnauthorized && o.kind != kindNotPolled {
		j.refusedSince, j.refusals, j.refusedDeleted = 0, 0, false
	}

	if o.kind == kindSuccess {
		p.metrics.KeyLcut(j.name, string(j.version()), lcut)
	}
	// Events are built only at enabled levels: a steady-state poll logs
	// nothing and allocates nothing here.
	switch {
	case o.kind == kindSuccess && prevFailures > 0:
		p.log.Info().Str("sdk_key", j.name).Str("version", string(j.version())).Int("after_failures", prevFailures).
			Int64("lcut", lcut).Msg("key recovered")
	case o.kind == kindSuccess || o.kind == kindNotPolled || o.kind == kindFollower:
		if e := p.log.Debug(); e.Enabled() {
			e.Str("sdk_key", j.name).Str("version", string(j.version())).Str("outcome", o.label).Int64("lcut", lcut).Msg("polled")
		}
	default:
		lvl := zerolog.DebugLevel
		if prevFailures == 0 || prevOutcome != o.label {
			lvl = zerolog.WarnLevel // a new failure or a different one: say it once
		}
		if e := p.log.WithLevel(lvl); e.Enabled() {
			e.Str("sdk_key", j.name).Str("version", string(j.version())).Str("outcome", o.label).
				Int("consecutive_failures", failures).Err(o.err).Msg("poll failed; Redis keeps the last good payload")
		}
	}
	p.reschedule(j, o.kind, o.retryAfter)
}

// maxLcut is the newest lcut among the targets, 0 when none holds one.
func maxLcut(stored []writer.Stored) int64 {
	var m int64
	for _, s := range stored {
		m = max(m, s.Lcut)
	}
	return m
}

func minLcut(stored []writer.Stored) int64 {
	if len(stored) == 0 {
		return 0
	}
	m := stored[0].Lcut
	for _, s := range stored {
		m = min(m, s.Lcut)
	}
	return m
}
