package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/internal/wiring"
	"github.com/statsig-populator/statsig-populator/pkg/admin"
	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keyfile"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/leader"
	"github.com/statsig-populator/statsig-populator/pkg/logging"
	"github.com/statsig-populator/statsig-populator/pkg/metrics"
	"github.com/statsig-populator/statsig-populator/pkg/poller"
	"github.com/statsig-populator/statsig-populator/pkg/redisconn"
	"github.com/statsig-populator/statsig-populator/pkg/snapshot"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

func usageEnv(w io.Writer) error { return config.Usage(w) }

// worker is everything run and once share.
type worker struct {
	cfg     config.Config
	log     zerolog.Logger
	rdb     redis.UniversalClient
	metrics *metrics.Metrics
	fetcher *fetcher.Client
	store   *writer.Writer
	idLists *idlists.Client // nil when ID lists are off
	// offline is the snapshot archive served in place of the CDN
	// (STATSIG_API_URL=file:///…); nil when the CDN is used.
	offline *snapshot.Source
}

// setup loads the configuration and wires the parts. A configuration error
// is printed, every problem at once, and becomes exit code 2.
func setup(stderr io.Writer) (*worker, error) {
	cfg, err := config.Load(true)
	if err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return nil, exitError{exitBadConfig}
	}
	log := logging.New(stderr, cfg.LogLevel, cfg.LogFormat)
	redis.SetLogger(logging.RedisLogger(log))
	rdb, target, err := connect(cfg, stderr)
	if err != nil {
		return nil, err
	}
	for _, msg := range cfg.Warnings {
		log.Warn().Msg(msg)
	}
	if cfg.Redis.InsecureSkipVerify {
		log.Warn().Msg("REDIS_TLS_INSECURE_SKIP_VERIFY (or skip_verify in REDIS_URL) is on: the Redis server's certificate is NOT verified; anyone on the path can read and change what is written")
	}
	w := &worker{
		cfg:     cfg,
		log:     log,
		rdb:     rdb,
		metrics: metrics.New(cfg.MetricsPerKey),
		store:   writer.New(rdb, cfg.KeyTTL),
	}
	fo := wiring.FetcherOptions(cfg, "statsig-populator/"+buildVersion())
	ilo := wiring.IDListClientOptions(cfg, "statsig-populator/"+buildVersion())
	if cfg.SnapshotPath != "" {
		src, err := snapshot.NewSource(cfg.SnapshotPath, func() snapshot.Limits { return snapshotLimits(cfg) }, "", log)
		if err != nil {
			fmt.Fprintln(stderr, "populator:", err)
			return nil, exitError{exitFailure}
		}
		// Served before the first poll when it is there; when it is not (or
		// is refused), the worker waits for it, unready.
		_, _ = src.Reload()
		w.offline, fo.Transport, ilo.Transport = src, src, src
	}
	w.fetcher = fetcher.New(fo)
	w.store.SetWaitReplicas(cfg.WaitReplicas, cfg.WaitTimeout)
	if cfg.IDLists {
		w.idLists = idlists.New(ilo)
	}
	log.Info().Str("version", buildVersion()).Int("sdk_keys", len(cfg.SDKKeys)).Strs("versions", strs(cfg.Versions)).
		Strs("formats", strs(cfg.Layout.Formats)).Strs("schemas", strs(cfg.Layout.Schemas)).Str("redis", target).
		Str("api_url", cfg.APIURL).Str("offline_archive", cfg.SnapshotPath).Dur("interval", cfg.PollInterval).Bool("id_lists", cfg.IDLists).Int("gomaxprocs", runtime.GOMAXPROCS(0)).Msg("starting")
	return w, nil
}

// poller builds the poller; gate is nil when every poll may write.
func (w *worker) poller(gate poller.Gate) *poller.Poller {
	return poller.New(wiring.PollerOptions(w.cfg, gate), w.fetcher, w.store, w.log, w.metrics)
}

// snapshotLimits are the checks an offline archive must pass: the worker's
// own, for the configured keys, at the time it is loaded.
func snapshotLimits(cfg config.Config) snapshot.Limits {
	byID := map[string]keys.SDKKey{}
	for _, k := range cfg.SDKKeys {
		byID[snapshot.KeyID(k)] = k
	}
	return snapshot.Limits{MaxMemberBytes: cfg.MaxPayloadBytes, Now: time.Now(), MaxClockSkew: cfg.MaxClockSkew,
		Key: func(id string) (keys.SDKKey, bool) { k, ok := byID[id]; return k, ok }}
}

// close releases what setup made.
func (w *worker) close() {
	if w.offline != nil {
		_ = w.offline.Close()
	}
	_ = w.rdb.Close()
}

// idListSyncer builds the ID-list syncer; nil when ID lists are off.
func (w *worker) idListSyncer(gate poller.Gate) *poller.IDLists {
	if w.idLists == nil {
		return nil
	}
	// A writer of its own: ID-list keys carry their own TTL (wiring.IDListTTL).
	store := writer.New(w.rdb, wiring.IDListTTL(w.cfg))
	store.SetWaitReplicas(w.cfg.WaitReplicas, w.cfg.WaitTimeout)
	return poller.NewIDLists(wiring.IDListOptions(w.cfg, gate), w.idLists, store, w.log, w.metrics)
}

// redisClient connects to the configured Redis; the description is safe to
// log.
func redisClient(cfg config.Config) (redis.UniversalClient, string, error) {
	rdb, err := redisconn.New(cfg.Redis)
	return rdb, cfg.Redis.Describe(), err
}

// connect is redisClient for a command: options the client refuses are
// printed and make exit code 2.
func connect(cfg config.Config, stderr io.Writer) (redis.UniversalClient, string, error) {
	rdb, target, err := redisClient(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return nil, "", exitError{exitBadConfig}
	}
	return rdb, target, nil
}

// LeaseKey is the Redis key replicas compete for.
func leaseKey(prefix string) string { return prefix + "statsig-populator:leader" }

func runWorker(ctx context.Context, stderr io.Writer) error {
	w, err := setup(stderr)
	if err != nil {
		return err
	}
	defer w.close()
	cfg := w.cfg
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if err := w.rdb.Ping(pctx).Err(); err != nil {
		w.log.Warn().Err(err).Msg("Redis does not answer yet; polls retry until it does")
	}
	cancel()

	var (
		el          *leader.Elector
		gate        poller.Gate
		leaderState func() leader.State
		background  = make(chan struct{})
		bgCount     int
	)
	bg := func(f func()) {
		bgCount++
		go func() { defer func() { background <- struct{}{} }(); f() }()
	}
	leaseCtx, stopLease := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLease()
	if cfg.LeaderElection {
		el = leader.New(w.rdb, leaseKey(cfg.Layout.Prefix), cfg.LeaderLease, w.log)
		gate, leaderState = el, el.State
	} else {
		w.metrics.SetLeader(true)
	}
	p := w.poller(gate)
	w.metrics.RegisterHealth(func() metrics.KeyHealth { return poller.Health(p.Statuses(), time.Now()) })
	ids := w.idListSyncer(gate)
	var idStatuses func() []poller.IDListStatus
	if ids != nil {
		idStatuses = ids.Statuses
		w.metrics.RegisterIDListHealth(func() metrics.IDListHealth { return poller.IDListHealth(ids.Statuses(), time.Now()) })
	}
	setKeys := func(ks []keys.SDKKey) {
		p.SetKeys(ks)
		if ids != nil {
			ids.SetKeys(ks)
		}
	}

	w.metrics.RegisterReady(func() bool {
		ok, _ := admin.Readiness(p.Statuses(), p.RedisOK(), p.Alive(), time.Now(), cfg.PollInterval)
		if ok && ids != nil {
			ok, _ = admin.IDListReadiness(ids.Statuses())
		}
		return ok
	})

	// The admin port first: a port already in use exits before this replica
	// has taken the lease, so it never holds one it cannot serve.
	if cfg.AdminAddr != "" {
		h := admin.Handler(p, admin.Options{Interval: cfg.PollInterval, Version: buildVersion(), Registry: w.metrics.Registry, Leader: leaderState, IDLists: idStatuses})
		if err := admin.Serve(ctx, cfg.AdminAddr, h, w.log); err != nil {
			fmt.Fprintln(stderr, "populator:", err)
			return exitError{exitFailure}
		}
	}
	if el != nil {
		el.OnChange = func(leading bool) {
			w.metrics.SetLeader(leading)
			if leading {
				p.TakeOver()
				if ids != nil {
					ids.TakeOver()
				}
			}
		}
		// The lease outlives the poller: it is released only after the
		// writes in flight have finished (or the grace period ended), so a
		// stop never leaves a job half-written for want of a lease.
		bg(func() { el.Run(leaseCtx) })
	}
	if w.offline != nil {
		// A replaced archive is served within two seconds of being whole
		// on disk (and verified).
		bg(func() { w.offline.Watch(ctx, 2*time.Second) })
	}
	if cfg.SDKKeysFile != "" {
		period := min(max(cfg.PollInterval/2, 100*time.Millisecond), 5*time.Second)
		bg(func() {
			keyfile.Watch(ctx, cfg.SDKKeysFile, cfg.KeysFromEnv, cfg.Layout.Schemas, period, setKeys, w.log)
		})
	}

	// The ID-list loop finishes its syncs (their writes complete through a
	// stop) before the lease is released, as the poller's do.
	idsDone := make(chan struct{})
	go func() {
		defer close(idsDone)
		if ids != nil {
			_ = ids.Run(ctx)
		}
	}()
	err = p.Run(ctx)
	<-idsDone
	stopLease()
	for ; bgCount > 0; bgCount-- {
		<-background
	}
	w.log.Info().Msg("stopped")
	return err
}

func runOnce(ctx context.Context, stdout, stderr io.Writer) error {
	w, err := setup(stderr)
	if err != nil {
		return err
	}
	defer w.close()
	// once writes whatever the lease says: it is meant for a CronJob that is
	// the only writer, and writes are guarded by lcut anyway.
	var idStatuses []poller.IDListStatus
	idDone := make(chan struct{})
	go func() {
		defer close(idDone)
		if ids := w.idListSyncer(nil); ids != nil {
			idStatuses = ids.Once(ctx)
		}
	}()
	statuses := w.poller(nil).Once(ctx)
	<-idDone
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SDK KEY\tVERSION\tCURRENT\tLCUT\tOUTCOME\tERROR")
	notCurrent := 0
	for _, s := range statuses {
		if !s.Current {
			notCurrent++
		}
		lcut := "-"
		if s.Lcut > 0 {
			lcut = time.UnixMilli(s.Lcut).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", s.Key, s.Version, s.Current, lcut, s.LastOutcome, s.LastError)
	}
	tw.Flush()
	idNotCurrent := 0
	if len(idStatuses) > 0 {
		fmt.Fprintln(stdout)
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SDK KEY\tID LISTS\tCURRENT\tLISTS\tBYTES\tOUTCOME\tERROR")
		for _, s := range idStatuses {
			if !s.Current {
				idNotCurrent++
			}
			fmt.Fprintf(tw, "%s\t\t%v\t%d\t%d\t%s\t%s\n", s.Key, s.Current, s.Lists, s.Bytes, s.LastOutcome, s.LastError)
		}
		tw.Flush()
	}
	if idNotCurrent > 0 {
		fmt.Fprintf(stdout, "the ID lists of %d of %d keys are not current in Redis\n", idNotCurrent, len(idStatuses))
	}
	if notCurrent > 0 || idNotCurrent > 0 {
		if notCurrent == 0 {
			return exitError{exitFailure}
		}
		fmt.Fprintf(stdout, "%d of %d key/version pairs are not current in Redis\n", notCurrent, len(statuses))
		return exitError{exitFailure}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return exitError{exitFailure}
	}
	fmt.Fprintf(stdout, "all %d key/version pairs are current in Redis\n", len(statuses))
	return nil
}

func strs[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}
