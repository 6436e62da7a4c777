// Package wiring maps the validated configuration onto each package's
// options, once, for the commands that run the worker's pipeline
// (cmd/populator and the in-process profiler under bench/cmd). The packages
// themselves never import pkg/config: each takes only the options it needs.
package wiring

import (
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/poller"
)

// FetcherOptions is the CDN client's configuration.
func FetcherOptions(cfg config.Config, userAgent string) fetcher.Options {
	return fetcher.Options{
		BaseURL:         cfg.APIURL,
		Timeout:         cfg.FetchTimeout,
		MaxPayloadBytes: cfg.MaxPayloadBytes,
		UserAgent:       userAgent,
		Transport:       fetcher.NewTransport(cfg.PollConcurrency, cfg.CDNRootCAs),
		MaxClockSkew:    cfg.MaxClockSkew,

		ConditionalTimeout: cfg.ConditionalFetchTimeout,
	}
}

// PollerOptions is the poller's configuration; gate is nil when every poll
// may write.
func PollerOptions(cfg config.Config, gate poller.Gate) poller.Options {
	return poller.Options{
		Keys:                    cfg.SDKKeys,
		Versions:                cfg.Versions,
		Layout:                  cfg.Layout,
		Interval:                cfg.PollInterval,
		Concurrency:             cfg.PollConcurrency,
		DeleteOnUnauthorized:    cfg.DeleteOnUnauthorized,
		UnauthorizedRecheck:     cfg.UnauthorizedRecheck,
		UnauthorizedDeleteAfter: cfg.UnauthorizedDeleteAfter,
		MaxClockSkew:            cfg.MaxClockSkew,
		DeleteRemovedKeys:       cfg.DeleteRemovedKeys,
		Gate:                    gate,
	}
}

// IDListClientOptions is the ID-list CDN client's configuration.
func IDListClientOptions(cfg config.Config, userAgent string) idlists.Options {
	return idlists.Options{
		BaseURL:      cfg.APIURL,
		Timeout:      cfg.FetchTimeout,
		MaxClockSkew: cfg.MaxClockSkew,
		UserAgent:    userAgent,
		Transport:    fetcher.NewTransport(idListConcurrency(cfg), cfg.CDNRootCAs),
	}
}

// IDListOptions is the ID-list syncer's configuration; gate is nil when every
// sync may write.
func IDListOptions(cfg config.Config, gate poller.Gate) poller.IDListOptions {
	return poller.IDListOptions{
		Keys:                    cfg.SDKKeys,
		Prefix:                  cfg.Layout.Prefix,
		Schemas:                 cfg.Layout.Schemas,
		Format:                  idListFormat(cfg),
		Interval:                cfg.IDListsPollInterval,
		Concurrency:             idListConcurrency(cfg),
		DeleteOnUnauthorized:    cfg.DeleteOnUnauthorized,
		UnauthorizedRecheck:     cfg.UnauthorizedRecheck,
		UnauthorizedDeleteAfter: cfg.UnauthorizedDeleteAfter,
		DeleteRemovedKeys:       cfg.DeleteRemovedKeys,
		TTL:                     IDListTTL(cfg),
		Gate:                    gate,
	}
}

// idListConcurrency is how many keys sync their ID lists at once: a quarter
// of POLL_CONCURRENCY, at least 1 and at most 16. A sync is one small
// request unless a list changed, and list downloads must not take the
// config specs' share of the CDN connections.
func idListConcurrency(cfg config.Config) int {
	return min(max(cfg.PollConcurrency/4, 1), 16)
}

// IDListTTL is the TTL of ID-list keys with REDIS_KEY_TTL set: that TTL, but
// at least three ID-list intervals, so that lists synced every
// ID_LISTS_POLL_INTERVAL never expire between two syncs of a healthy worker.
// 0 (no expiry) when REDIS_KEY_TTL is 0.
func IDListTTL(cfg config.Config) time.Duration {
	if cfg.KeyTTL <= 0 {
		return 0
	}
	return max(cfg.KeyTTL, 3*cfg.IDListsPollInterval)
}

// idListFormat is the layout ID lists are written in: the one configured
// (config accepts ID lists only with sfp or string alone).
func idListFormat(cfg config.Config) keys.Format {
	if len(cfg.Layout.Formats) == 1 {
		return cfg.Layout.Formats[0]
	}
	return keys.SFP
}
