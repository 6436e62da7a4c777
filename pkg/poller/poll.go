package poller

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/metrics"
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
}

// poll runs one poll of j: decide what to ask, fetch, write what changed.
// stored is what the batch's Inspect found for j's targets.
func (p *Poller) poll(ctx context.Context, j *job, stored []writer.Stored, inspectErr error) {
	v := string(j.version)
	if inspectErr != nil {
		p.finish(j, outcome{kind: kindRedisRetry, label: "redis_error", err: inspectErr})
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
	res := p.fetch.Fetch(ctx, j.key, j.version, since)
	label := res.Outcome.String()
	if res.Class != "" {
		label = metrics.FetchOutcomeLabel(res.Class)
	}
	if errors.Is(ctx.Err(), context.Canceled) && res.Outcome != fetcher.Updated {
		// Shutting down: the fetch was cut short on purpose; not a failure.
		p.finish(j, outcome{kind: kindNotPolled, label: "canceled"})
		return
	}
	p.metrics.Fetch(v, label, time.Since(start).Seconds())

	switch res.Outcome {
	case fetcher.Updated:
		p.metrics.Payload(v, len(res.Body))
		if res.HeaderMismatch {
			p.metrics.LcutMismatch(v)
			p.log.Warn().Str("sdk_key", j.name).Str("version", v).Int64("header_lcut", res.Cursor).
				Int64("body_time", res.Meta.Time).Msg("x-since-time differs from the payload time; storing the payload time")
		}
		p.finish(j, p.apply(ctx, j, res, stored))
	case fetcher.NoUpdate:
		if since == 0 {
			// Asked for everything and told "nothing new": nothing to confirm.
			p.metrics.Invalid(v, "no_update_unconditional")
			p.finish(j, outcome{kind: kindRetry, label: "no_update_unconditional",
				err: errors.New("CDN answered 'no updates' to a request without sinceTime")})
			return
		}
		if err := p.touch(ctx, j, nil); err != nil {
			p.finish(j, outcome{kind: kindRedisRetry, label: "redis_error", err: err})
			return
		}
		p.finish(j, outcome{kind: kindSuccess, label: "no_update", lcut: minLcut(stored)})
	case fetcher.Unauthorized:
		o := outcome{kind: kindUnauthorized, label: "unauthorized", err: res.Err}
		if p.opt.DeleteOnUnauthorized {
			if err := p.deleteEntries(ctx, j, "key unauthorized (DELETE_ON_UNAUTHORIZED)"); err != nil {
				o.err = errors.Join(o.err, err)
			} else {
				o.reset = true
			}
		}
		p.finish(j, o)
	case fetcher.RateLimited:
		p.finish(j, outcome{kind: kindRateLimited, label: label, err: res.Err, retryAfter: res.RetryAfter})
	default:
		var ip *fetcher.InvalidPayloadError
		if errors.As(res.Err, &ip) {
			p.metrics.Invalid(v, ip.Reason)
		} else if res.Outcome == fetcher.Rejected {
			p.metrics.Invalid(v, res.Class)
		}
		p.finish(j, outcome{kind: kindRetry, label: label, err: res.Err, retryAfter: res.RetryAfter})
	}
}

// apply writes a validated payload to every target that holds less, deletes
// the statsig-br siblings, and refreshes TTLs.
func (p *Poller) apply(ctx context.Context, j *job, res fetcher.Result, stored []writer.Stored) outcome {
	v := string(j.version)
	// Writes run to completion even during shutdown: each is one atomic script.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opt.RedisTimeout)
	defer cancel()

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
		wr, err := p.store.Write(wctx, t, payload)
		switch {
		case err != nil:
			errs = append(errs, err)
			p.metrics.Write(v, "error", 0)
			p.metrics.RedisError("write")
		case wr.Written:
			held[i] = res.Meta.Time
			written++
			p.metrics.Write(v, "written", len(res.Body))
			p.metrics.Propagation(v, time.Since(time.UnixMilli(res.Meta.Time)).Seconds())
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
		if err := p.deleteSiblings(wctx, j); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := p.touch(wctx, j, untouched); err != nil {
			errs = append(errs, err)
		}
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
	lcut := held[0]
	for _, h := range held {
		lcut = min(lcut, h)
	}
	return outcome{kind: kindSuccess, label: "updated", lcut: lcut, cursor: res.Cursor, written: written}
}

// touch refreshes the TTL of j's targets after a successful poll (only those
// listed when names is non-nil). With no TTL configured it runs once per job,
// to clear a TTL an earlier configuration may have left.
func (p *Poller) touch(ctx context.Context, j *job, targets []keys.Target) error {
	p.mu.Lock()
	first := !j.st.confirmed
	p.mu.Unlock()
	if p.store.TTL() == 0 && !first {
		return nil
	}
	if targets == nil {
		targets = j.targets
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
	if err := p.store.DeleteSiblings(ctx, j.targets); err != nil {
		p.metrics.RedisError("delete")
		return err
	}
	return nil
}

// deleteEntries removes everything written for j; why goes to the log.
func (p *Poller) deleteEntries(ctx context.Context, j *job, why string) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opt.RedisTimeout)
	defer cancel()
	if err := p.store.Delete(dctx, j.targets); err != nil {
		p.metrics.RedisError("delete")
		return err
	}
	p.log.Warn().Str("sdk_key", j.name).Str("version", string(j.version)).Str("reason", why).Msg("Redis entries deleted")
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

	if o.kind == kindSuccess {
		p.metrics.KeyLcut(j.name, string(j.version), lcut)
	}
	// Events are built only at enabled levels: a steady-state poll logs
	// nothing and allocates nothing here.
	switch {
	case o.kind == kindSuccess && prevFailures > 0:
		p.log.Info().Str("sdk_key", j.name).Str("version", string(j.version)).Int("after_failures", prevFailures).
			Int64("lcut", lcut).Msg("key recovered")
	case o.kind == kindSuccess || o.kind == kindNotPolled || o.kind == kindFollower:
		if e := p.log.Debug(); e.Enabled() {
			e.Str("sdk_key", j.name).Str("version", string(j.version)).Str("outcome", o.label).Int64("lcut", lcut).Msg("polled")
		}
	default:
		lvl := zerolog.DebugLevel
		if prevFailures == 0 || prevOutcome != o.label {
			lvl = zerolog.WarnLevel // a new failure or a different one: say it once
		}
		if e := p.log.WithLevel(lvl); e.Enabled() {
			e.Str("sdk_key", j.name).Str("version", string(j.version)).Str("outcome", o.label).
				Int("consecutive_failures", failures).Err(o.err).Msg("poll failed; Redis keeps the last good payload")
		}
	}
	p.reschedule(j, o.kind, o.retryAfter)
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
