package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/logging"
	"github.com/statsig-populator/statsig-populator/pkg/metrics"
	"github.com/statsig-populator/statsig-populator/pkg/poller"
	"github.com/statsig-populator/statsig-populator/pkg/redisconn"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

func usageEnv(w io.Writer) error { return config.Usage(w) }

// worker is everything run and once share.
type worker struct {
	cfg     config.Config
	log     zerolog.Logger
	rdb     redis.UniversalClient
	metrics *metrics.Metrics
	poller  *poller.Poller
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
	rdb, target, err := redisClient(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return nil, exitError{exitBadConfig}
	}
	m := metrics.New(false)
	f := fetcher.New(fetcher.Options{
		BaseURL:         cfg.APIURL,
		Timeout:         cfg.FetchTimeout,
		MaxPayloadBytes: cfg.MaxPayloadBytes,
		UserAgent:       "statsig-populator/" + buildVersion(),
		Transport:       fetcher.NewTransport(cfg.PollConcurrency),
	})
	p := poller.New(poller.Options{
		Keys:                 cfg.SDKKeys,
		Versions:             cfg.Versions,
		Layout:               cfg.Layout,
		Interval:             cfg.PollInterval,
		Concurrency:          cfg.PollConcurrency,
		DeleteOnUnauthorized: cfg.DeleteOnUnauthorized,
	}, f, writer.New(rdb, cfg.KeyTTL), log, m)
	log.Info().Str("version", buildVersion()).Int("sdk_keys", len(cfg.SDKKeys)).Strs("versions", strs(cfg.Versions)).
		Strs("formats", strs(cfg.Layout.Formats)).Strs("schemas", strs(cfg.Layout.Schemas)).Str("redis", target).Str("api_url", cfg.APIURL).
		Dur("interval", cfg.PollInterval).Msg("starting")
	return &worker{cfg: cfg, log: log, rdb: rdb, metrics: m, poller: p}, nil
}

// redisClient connects to the configured Redis; the description is safe to
// log.
func redisClient(cfg config.Config) (redis.UniversalClient, string, error) {
	return redisconn.New(cfg)
}

func runWorker(ctx context.Context, stderr io.Writer) error {
	w, err := setup(stderr)
	if err != nil {
		return err
	}
	defer w.rdb.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if err := w.rdb.Ping(pctx).Err(); err != nil {
		w.log.Warn().Err(err).Msg("Redis does not answer yet; polls retry until it does")
	}
	cancel()
	err = w.poller.Run(ctx)
	w.log.Info().Msg("stopped")
	return err
}

func runOnce(ctx context.Context, stdout, stderr io.Writer) error {
	w, err := setup(stderr)
	if err != nil {
		return err
	}
	defer w.rdb.Close()
	statuses := w.poller.Once(ctx)
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
	if notCurrent > 0 {
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
