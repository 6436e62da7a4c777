// Package fetcher is the worker's client of the Statsig CDN: one conditional
// GET of a download_config_specs payload, its validation, and the
// classification of every possible answer into an Outcome that the scheduler
// acts on. It never retries by itself and keeps no state between calls.
package fetcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Outcome classifies one fetch.
type Outcome int

const (
	// Updated: a complete, validated payload in Result.Payload.
	Updated Outcome = iota
	// NoUpdate: the CDN has nothing newer than sinceTime. Nothing to store.
	NoUpdate
	// Unauthorized: 401 or 403; the key is invalid, revoked or of the wrong type.
	Unauthorized
	// RateLimited: 429.
	RateLimited
	// Transient: network errors, timeouts, 408, 5xx: worth another try soon.
	Transient
	// Rejected: an answer we must not store (bad payload, protobuf, delta,
	// unknown encoding, too large) or an unexpected status code.
	Rejected
)

var outcomeNames = [...]string{"updated", "no_update", "unauthorized", "rate_limited", "transient", "rejected"}

func (o Outcome) String() string { return outcomeNames[o] }

// Result is everything the scheduler needs to know about one fetch.
type Result struct {
	Outcome Outcome
	// Class refines the outcome for metrics and logs, e.g. "http_503",
	// "timeout", "invalid_payload:wrong_shape". Empty for successes.
	Class string
	// Status is the HTTP status code, 0 when no response arrived.
	Status int
	// Body is the exact decompressed payload when Outcome is Updated.
	Body []byte
	Meta Meta
	// Cursor is the lcut to send as sinceTime next time: the x-since-time
	// header when valid, else the body time. 0 when unknown.
	Cursor int64
	// HeaderMismatch is set when x-since-time and the body time disagree.
	HeaderMismatch bool
	// RetryAfter is the server's Retry-After on a 429 or 503, 0 when absent.
	RetryAfter time.Duration
	// Err describes a failure; it never contains the SDK key.
	Err error
}

// Options configure a Client.
type Options struct {
	BaseURL         string // e.g. https://api.statsigcdn.com, no trailing slash needed
	Timeout         time.Duration
	MaxPayloadBytes int64
	UserAgent       string
	// Transport overrides the HTTP transport (proxy, extra CAs); nil means
	// NewTransport(concurrency 64).
	Transport http.RoundTripper
}

// Client fetches payloads. It is safe for concurrent use.
type Client struct {
	baseURL *url.URL // Options.BaseURL parsed once; nil when unusable (baseErr says why)
	baseErr error
	timeout time.Duration
	max     int64
	// header is every request's header, shared read-only by all of them
	// (RoundTrippers must not modify a request).
	header http.Header
	// rt is called directly, not through an http.Client: the CDN does not
	// redirect (following one could send the key elsewhere, so a 3xx is an
	// unexpected status like any other), there are no cookies, and the
	// timeout is the request context's; what http.Client would add on top is
	// a copy of the header per request, kept for redirects that never come.
	rt http.RoundTripper
}

// OptionsFrom is the CDN client configuration of the worker's settings.
func OptionsFrom(cfg config.Config, userAgent string) Options {
	return Options{
		BaseURL:         cfg.APIURL,
		Timeout:         cfg.FetchTimeout,
		MaxPayloadBytes: cfg.MaxPayloadBytes,
		UserAgent:       userAgent,
		Transport:       NewTransport(cfg.PollConcurrency, cfg.CDNRootCAs),
	}
}

// New returns a Client.
func New(o Options) *Client {
	rt := o.Transport
	if rt == nil {
		rt = NewTransport(64, nil)
	}
	c := &Client{
		timeout: o.Timeout,
		max:     o.MaxPayloadBytes,
		header: http.Header{
			"User-Agent":      {o.UserAgent},
			"Accept-Encoding": {"gzip"}, // never br or statsig-br: only JSON is stored
		},
		rt: rt,
	}
	c.baseURL, c.baseErr = url.Parse(strings.TrimRight(o.BaseURL, "/"))
	if c.baseErr == nil && (c.baseURL.Scheme == "" || c.baseURL.Host == "") {
		c.baseURL, c.baseErr = nil, errors.New("the CDN base URL needs a scheme and a host")
	}
	return c
}

// NewTransport is the HTTP transport the worker uses: keep-alive connections
// for up to maxConns parallel requests, HTTP/2 where the server offers it,
// proxies from HTTPS_PROXY/NO_PROXY, 10 s to connect and to get response headers
// (the whole request is bounded by the Client timeout). rootCAs replaces the
// system roots when not nil. Compression is left to the Client, which asks for
// gzip and decodes it itself into a buffer of the payload's final size.
func NewTransport(maxConns int, rootCAs *x509.CertPool) *http.Transport {
	return &http.Transport{
		DisableCompression:    true,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: rootCAs},
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
	}
}

// request is the GET of k's payload of version v:
// <base>/<v>/download_config_specs/<key>.json[?sinceTime=<n>]. The URL is
// assembled from the base, parsed once, rather than parsed per request:
// keys.Parse admits only letters, digits, '-' and '_', which need no
// escaping in a path.
func (c *Client) request(ctx context.Context, k keys.SDKKey, v keys.Version, sinceTime int64) (*http.Request, error) {
	if c.baseErr != nil {
		return nil, c.baseErr
	}
	u := *c.baseURL
	// One concatenation, one allocation.
	u.Path = u.Path + "/" + string(v) + "/download_config_specs/" + k.Reveal() + ".json"
	if u.RawPath != "" {
		u.RawPath = u.RawPath + "/" + string(v) + "/download_config_specs/" + k.Reveal() + ".json"
	}
	u.RawQuery = ""
	if sinceTime > 0 {
		u.RawQuery = "sinceTime=" + strconv.FormatInt(sinceTime, 10)
	}
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     c.header,
		Host:       u.Host,
	}
	return req.WithContext(ctx), nil
}

// Fetch asks for k's payload of version v. sinceTime > 0 makes the request
// conditional: the CDN answers "no updates" unless its lcut is newer.
func (c *Client) Fetch(ctx context.Context, k keys.SDKKey, v keys.Version, sinceTime int64) Result {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.request(ctx, k, v, sinceTime)
	if err != nil {
		return c.failure(k, Rejected, "bad_request", 0, err)
	}
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return c.networkFailure(ctx, k, err)
	}
	defer resp.Body.Close()
	res := c.classify(ctx, k, v, resp)
	if res.Outcome != Updated {
		drain(resp.Body)
	}
	return res
}

func (c *Client) classify(ctx context.Context, k keys.SDKKey, v keys.Version, resp *http.Response) Result {
	st := resp.StatusCode
	switch {
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return c.failure(k, Unauthorized, "http_"+strconv.Itoa(st), st, fmt.Errorf("CDN answered %d: key is invalid, revoked or not a server key", st))
	case st == http.StatusTooManyRequests:
		r := c.failure(k, RateLimited, "http_429", st, errors.New("CDN answered 429: rate limited"))
		r.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
		return r
	case st == http.StatusRequestTimeout || st >= 500 && st != http.StatusNotImplemented:
		r := c.failure(k, Transient, "http_"+strconv.Itoa(st), st, fmt.Errorf("CDN answered %d", st))
		r.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
		return r
	case st != http.StatusOK:
		// 204 and 304 are not part of the protocol; 400, 404, 501 and the rest
		// are not fixed by asking again soon.
		return c.failure(k, Rejected, "http_"+strconv.Itoa(st), st, fmt.Errorf("CDN answered %d", st))
	}

	if reason := refusedFormat(resp); reason != "" {
		return c.failure(k, Rejected, "unsupported_format", st, errors.New(reason))
	}
	headerLcut, headerOK := parseHeaderLcut(resp.Header.Get("X-Since-Time"))
	if strings.EqualFold(resp.Header.Get("X-Cache-Hit"), "true") {
		return Result{Outcome: NoUpdate, Status: st, Cursor: headerLcut}
	}
	if resp.ContentLength > c.max {
		return c.failure(k, Rejected, "too_large", st, fmt.Errorf("payload of %d bytes exceeds MAX_PAYLOAD_BYTES (%d)", resp.ContentLength, c.max))
	}
	body, err := readBody(resp.Body, strings.ToLower(resp.Header.Get("Content-Encoding")), c.max, resp.ContentLength)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return c.failure(k, Rejected, "too_large", st, fmt.Errorf("payload exceeds MAX_PAYLOAD_BYTES (%d)", c.max))
		}
		return c.networkFailure(ctx, k, fmt.Errorf("reading body: %w", err))
	}
	meta, err := Validate(body, v, k.HashedSDKKeyUsed())
	if err == errNoUpdate {
		return Result{Outcome: NoUpdate, Status: st, Cursor: headerLcut}
	}
	if err != nil {
		var ip *InvalidPayloadError
		errors.As(err, &ip)
		return c.failure(k, Rejected, "invalid_payload:"+ip.Reason, st, err)
	}
	res := Result{Outcome: Updated, Status: st, Body: body, Meta: meta, Cursor: meta.Time}
	if headerOK {
		res.Cursor = headerLcut
		res.HeaderMismatch = headerLcut != meta.Time
	}
	return res
}

// drain reads what is left of a small body (at most 64 KiB) so that the
// connection can be reused; a bigger one is dropped with its connection.
// io.Discard reads into buffers it pools: a buffer of drain's own escaped to
// the heap on every poll (4 KiB, a third of all the bytes a poll allocated).
func drain(r io.Reader) {
	_, _ = io.CopyN(io.Discard, r, 64<<10)
}

// refusedFormat names why a 200 response is not JSON we can store, or "".
func refusedFormat(resp *http.Response) string {
	if ct := strings.ToLower(resp.Header.Get("Content-Type")); strings.HasPrefix(ct, "application/octet-stream") || strings.Contains(ct, "protobuf") {
		return "CDN answered " + ct + " (protobuf); only JSON is stored"
	}
	// We ask for gzip only; anything else (statsig-br, br, zstd, deflate) is
	// an encoding we never asked for.
	if ce := strings.ToLower(resp.Header.Get("Content-Encoding")); ce != "" && ce != "identity" && ce != "gzip" {
		return "CDN answered Content-Encoding " + ce + ", which was not asked for"
	}
	if strings.EqualFold(resp.Header.Get("X-Deltas-Used"), "true") {
		return "CDN answered a delta (x-deltas-used), not a complete payload"
	}
	return ""
}

func parseHeaderLcut(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

func retryAfter(s string) time.Duration {
	if s == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(s); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

func (c *Client) networkFailure(ctx context.Context, k keys.SDKKey, err error) Result {
	class := "network"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		class = "timeout"
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		class = "canceled"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats the URL, which holds the key
	}
	return c.failure(k, Transient, class, 0, err)
}

// failure builds a failed Result whose error text cannot contain the key.
func (c *Client) failure(k keys.SDKKey, o Outcome, class string, status int, err error) Result {
	msg := strings.ReplaceAll(err.Error(), k.Reveal(), k.Redacted())
	msg = strings.ReplaceAll(msg, url.PathEscape(k.Reveal()), k.Redacted())
	return Result{Outcome: o, Class: class, Status: status, Err: errors.New(msg)}
}
