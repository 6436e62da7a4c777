// Package wiring maps the validated configuration onto each package's
// options, once, for the commands that run the worker's pipeline
// (cmd/populator and the in-process profiler under bench/cmd). The packages
// themselves never import pkg/config: each takes only the options it needs.
package wiring

import (
	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
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
