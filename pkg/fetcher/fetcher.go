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
	// Rejected: an answer we must not store (bad or future-dated payload,
	// corrupt gzip, "no updates" to a request without sinceTime, protobuf,
	// delta, unknown encoding, too large) or an unexpected status code.
	Rejected
)

var outcomeNames = [...]string{"updated", "no_update", "unauthorized", "rate_limited", "transient", "rejected"}

func (o Outcome) String() string { return outcomeNames[o] }

// Result is everything the scheduler needs to know about one fetch.
type Result struct {
	Outcome Outcome
	// Class refines the outcome for logs, e.g. "http_503", "timeout",
	// "invalid_payload:wrong_shape". Empty for successes. Its values are not
	// bounded (every status code has one): metrics use Label.
	Class string
	// Label is the fetch's bounded metric label, always one of Labels.
	Label string
	// Status is the HTTP status code, 0 when no response arrived.
	Status int
	// Body is the exact decompressed payload when Outcome is Updated.
	Body []byte
	Meta Meta
	// Cursor is the lcut to send as sinceTime next time: the x-since-time
	// header when valid and not beyond the clock skew, else the body time.
	// 0 when unknown.
	Cursor int64
	// HeaderLcut is the x-since-time header as received when it is a
	// positive integer, else 0; for logs (it may differ from Cursor).
	HeaderLcut int64
	// HeaderMismatch is set when x-since-time and the body time disagree, or
	// when x-since-time lies beyond the clock skew and was ignored.
	HeaderMismatch bool
	// CacheHit is the x-cache-hit header of a 200: a hint only, the body
	// decides whether there was an update.
	CacheHit bool
	// RetryAfter is the server's Retry-After on any answer other than 200,
	// 0 when absent or unusable, never more than MaxRetryAfterHint.
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
	// MaxClockSkew is how far ahead of Now a payload's time (or x-since-time)
	// may be; 0 or less means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
	// ConditionalTimeout bounds the wait for the response headers of a
	// conditional request (sinceTime set): its answer is a few bytes unless
	// the config changed, so a CDN that does not start answering within it
	// is hanging, and holds a poller for no reason. The body, when there is
	// one, still has the whole Timeout. 0 (or not less than Timeout) means
	// Timeout alone.
	ConditionalTimeout time.Duration
}

// MaxRetryAfterHint bounds Result.RetryAfter: a Retry-After further out is
// read as this much, so that no header can silence a key for longer.
const MaxRetryAfterHint = 24 * time.Hour

// Client fetches payloads. It is safe for concurrent use.
type Client struct {
	baseURL *url.URL // Options.BaseURL parsed once; nil when unusable (baseErr says why)
	baseErr error
	timeout time.Duration
	condTTH time.Duration // Options.ConditionalTimeout, 0 when not shorter than timeout
	max     int64
	skew    time.Duration
	now     func() time.Time
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

// New returns a Client.
func New(o Options) *Client {
	rt := o.Transport
	if rt == nil {
		rt = NewTransport(64, nil)
	}
	c := &Client{
		timeout: o.Timeout,
		condTTH: o.ConditionalTimeout,
		max:     o.MaxPayloadBytes,
		skew:    o.MaxClockSkew,
		now:     o.Now,
		header: http.Header{
			"User-Agent":      {o.UserAgent},
			"Accept-Encoding": {"gzip"}, // never br or statsig-br: only JSON is stored
		},
		rt: rt,
	}
	if c.condTTH >= c.timeout {
		c.condTTH = 0
	}
	if c.skew <= 0 {
		c.skew = DefaultMaxClockSkew
	}
	if c.now == nil {
		c.now = time.Now
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
// gzip and decodes it itself (readBody), never trusting the sizes announced.
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
	res := c.fetch(ctx, k, v, sinceTime)
	res.Label = label(res)
	return res
}

func (c *Client) fetch(ctx context.Context, k keys.SDKKey, v keys.Version, sinceTime int64) Result {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ctx, cancelCause := context.WithCancelCause(ctx)
	defer cancelCause(nil)
	req, err := c.request(ctx, k, v, sinceTime)
	if err != nil {
		return c.failure(k, Rejected, "bad_request", 0, err)
	}
	var headers *time.Timer
	if sinceTime > 0 && c.condTTH > 0 {
		headers = time.AfterFunc(c.condTTH, func() { cancelCause(errNoHeaders) })
	}
	resp, err := c.rt.RoundTrip(req)
	if headers != nil && !headers.Stop() && err == nil {
		// The timer fired just as the headers came: the request is
		// cancelled, so its body cannot be read either.
		resp.Body.Close()
		err = context.Cause(ctx)
	}
	if err != nil {
		return c.networkFailure(ctx, k, err)
	}
	defer resp.Body.Close()
	res := c.classify(ctx, k, v, sinceTime, resp)
	if res.Outcome != Updated {
		drain(resp.Body)
	}
	return res
}

func (c *Client) classify(ctx context.Context, k keys.SDKKey, v keys.Version, sinceTime int64, resp *http.Response) Result {
	st := resp.StatusCode
	if st != http.StatusOK {
		r := c.statusFailure(k, st)
		// Any answer may say when to ask again; the scheduler decides
		// whether to listen (it does on 429, 408 and 5xx).
		r.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), c.now())
		return r
	}

	if reason := refusedFormat(resp); reason != "" {
		return c.failure(k, Rejected, "unsupported_format", st, errors.New(reason))
	}
	res := c.readPayload(ctx, k, v, sinceTime, resp)
	// A proxy may tag a cached full answer as a hit as well as a cached
	// "no updates": only the body says which one it is.
	res.CacheHit = strings.EqualFold(resp.Header.Get("X-Cache-Hit"), "true")
	return res
}

// statusFailure is the Result of an answer other than 200.
func (c *Client) statusFailure(k keys.SDKKey, st int) Result {
	class := "http_" + strconv.Itoa(st)
	switch {
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return c.failure(k, Unauthorized, class, st, fmt.Errorf("CDN answered %d: key is invalid, revoked or not a server key", st))
	case st == http.StatusTooManyRequests:
		return c.failure(k, RateLimited, class, st, errors.New("CDN answered 429: rate limited"))
	case st == http.StatusRequestTimeout || st >= 500 && st <= 599 && st != http.StatusNotImplemented:
		return c.failure(k, Transient, class, st, fmt.Errorf("CDN answered %d", st))
	}
	// 204 and 304 are not part of the protocol; 400, 404, 501, codes past
	// 599 and the rest are not fixed by asking again soon.
	return c.failure(k, Rejected, class, st, fmt.Errorf("CDN answered %d", st))
}

// readPayload reads and judges the body of a 200.
func (c *Client) readPayload(ctx context.Context, k keys.SDKKey, v keys.Version, sinceTime int64, resp *http.Response) Result {
	const st = http.StatusOK
	if resp.ContentLength > c.max {
		return c.failure(k, Rejected, "too_large", st, fmt.Errorf("payload of %d bytes exceeds MAX_PAYLOAD_BYTES (%d)", resp.ContentLength, c.max))
	}
	body, err := readBody(resp.Body, strings.ToLower(resp.Header.Get("Content-Encoding")), c.max, resp.ContentLength)
	if err != nil {
		var ip *InvalidPayloadError
		switch {
		case errors.Is(err, errTooLarge):
			return c.failure(k, Rejected, "too_large", st, fmt.Errorf("payload exceeds MAX_PAYLOAD_BYTES (%d)", c.max))
		case errors.As(err, &ip):
			return c.invalid(k, ip)
		}
		return c.networkFailure(ctx, k, fmt.Errorf("reading body: %w", err))
	}

	// The clock is read after the download, which may have taken a while.
	now := c.now()
	headerLcut, headerOK := parseHeaderLcut(resp.Header.Get("X-Since-Time"))
	// A future x-since-time must not become the cursor: the CDN would
	// answer "no updates" to it until the clock caught up.
	headerFuture := headerOK && checkTime(headerLcut, now, c.skew) != nil
	useHeader := headerOK && !headerFuture

	meta, ip := validate(body, v, k.HashedSDKKeyUsed())
	var res Result
	switch {
	case ip == errNoUpdate && sinceTime <= 0:
		// Asked for everything and told "nothing new": nothing to confirm.
		res = c.invalid(k, invalid("no_update_unconditional", "CDN answered 'no updates' to a request without sinceTime"))
	case ip == errNoUpdate:
		res = Result{Outcome: NoUpdate, Status: st, HeaderMismatch: headerFuture}
		if useHeader {
			res.Cursor = headerLcut
		}
	case ip != nil:
		res = c.invalid(k, ip)
	default:
		if ip := checkTime(meta.Time, now, c.skew); ip != nil {
			res = c.invalid(k, ip)
			break
		}
		res = Result{Outcome: Updated, Status: st, Body: body, Meta: meta, Cursor: meta.Time, HeaderMismatch: headerFuture}
		if useHeader {
			res.Cursor = headerLcut
			res.HeaderMismatch = headerLcut != meta.Time
		}
	}
	if headerOK {
		res.HeaderLcut = headerLcut
	}
	return res
}

// drain reads what is left of a small body (at most 64 KiB) so that the
// connection can be reused; a bigger one is dropped with its connection.
// io.Discard reads into buffers it pools: a buffer of drain's own escaped to
// the heap on every poll (docs/performance.md has what that cost).
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

// retryAfter reads a Retry-After value (RFC 9110, section 10.2.3) as a wait
// from now, always within [0, MaxRetryAfterHint]: delay-seconds are digits
// only, and a number too large for any type still means "a long time" (the
// hint); anything unreadable, negative or in the past means no hint (0).
func retryAfter(s string, now time.Time) time.Duration {
	s = strings.Trim(s, " \t")
	if s == "" {
		return 0
	}
	if isDigits(s) {
		// Digits only, so ParseInt can fail by range alone.
		secs, err := strconv.ParseInt(s, 10, 64)
		if err != nil || secs > int64(MaxRetryAfterHint/time.Second) {
			return MaxRetryAfterHint
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(s) // IMF-fixdate, RFC 850 or asctime
	switch {
	case err != nil || !t.After(now):
		return 0
	case t.After(now.Add(MaxRetryAfterHint)):
		return MaxRetryAfterHint
	}
	return t.Sub(now)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// errNoHeaders cancels a conditional request whose response headers did not
// come within Options.ConditionalTimeout.
var errNoHeaders = errors.New("no response headers within the conditional poll timeout")

func (c *Client) networkFailure(ctx context.Context, k keys.SDKKey, err error) Result {
	class := "network"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		class = "timeout"
	}
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errNoHeaders):
		class, err = "timeout", cause
	case errors.Is(ctx.Err(), context.Canceled):
		class = "canceled"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats the URL, which holds the key
	}
	return c.failure(k, Transient, class, 0, err)
}

// invalid is the Rejected Result of a 200 whose body must not be stored.
func (c *Client) invalid(k keys.SDKKey, ip *InvalidPayloadError) Result {
	return c.failure(k, Rejected, "invalid_payload:"+ip.Reason, http.StatusOK, ip)
}

// failure builds a failed Result whose error text cannot contain the key. An
// *InvalidPayloadError keeps its type, so that callers can read its Reason
// with errors.As.
func (c *Client) failure(k keys.SDKKey, o Outcome, class string, status int, err error) Result {
	redact := func(s string) string {
		s = strings.ReplaceAll(s, k.Reveal(), k.Redacted())
		return strings.ReplaceAll(s, url.PathEscape(k.Reveal()), k.Redacted())
	}
	if ip, ok := err.(*InvalidPayloadError); ok {
		err = &InvalidPayloadError{Reason: ip.Reason, Detail: redact(ip.Detail)}
	} else {
		err = errors.New(redact(err.Error()))
	}
	return Result{Outcome: o, Class: class, Status: status, Err: err}
}
