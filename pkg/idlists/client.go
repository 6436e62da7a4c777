package idlists

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Options configure a Client.
type Options struct {
	// BaseURL is STATSIG_API_URL, e.g. https://api.statsigcdn.com. The
	// manifest is GET {BaseURL}/v1/get_id_lists/{key}.json.
	BaseURL string
	// Timeout bounds one whole manifest request, and one whole chunk (from
	// OpenChunk to the end of its body). 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxManifestBytes caps a manifest body (decompressed); 0 means
	// DefaultMaxManifestBytes.
	MaxManifestBytes int64
	// MaxListBytes refuses manifest entries larger than this (too_large);
	// 0 means DefaultMaxListBytes.
	MaxListBytes int64
	// MaxClockSkew is how far ahead of Now an entry's creationTime may be;
	// 0 means fetcher.DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	UserAgent    string
	// Transport overrides the HTTP transport; nil means
	// fetcher.NewTransport(64, nil). Whatever it is, the Client sets
	// Accept-Encoding itself, so no transport adds transparent gzip.
	Transport http.RoundTripper
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
}

const (
	// DefaultTimeout is Options.Timeout's default (FETCH_TIMEOUT's).
	DefaultTimeout = 30 * time.Second
	// DefaultMaxListBytes is Options.MaxListBytes's default: 256 MiB, about
	// 26 million ids, half of Redis's largest string.
	DefaultMaxListBytes = 256 << 20
)

// Client fetches manifests and list chunks. It is safe for concurrent use.
type Client struct {
	base     *url.URL // nil when unusable (baseErr says why)
	baseErr  error
	timeout  time.Duration
	maxMan   int64
	maxList  int64
	skew     time.Duration
	now      func() time.Time
	ua       string
	rt       http.RoundTripper
	manHdr   http.Header // shared read-only by every manifest request
	chunkHdr http.Header // template; each chunk request adds its Range
}

// New returns a Client.
func New(o Options) *Client {
	c := &Client{
		timeout: o.Timeout,
		maxMan:  o.MaxManifestBytes,
		maxList: o.MaxListBytes,
		skew:    o.MaxClockSkew,
		now:     o.Now,
		ua:      o.UserAgent,
		rt:      o.Transport,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxMan <= 0 {
		c.maxMan = DefaultMaxManifestBytes
	}
	if c.maxList <= 0 {
		c.maxList = DefaultMaxListBytes
	}
	if c.skew <= 0 {
		c.skew = fetcher.DefaultMaxClockSkew
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rt == nil {
		c.rt = fetcher.NewTransport(64, nil)
	}
	c.manHdr = http.Header{"User-Agent": {o.UserAgent}, "Accept-Encoding": {"gzip"}}
	c.base, c.baseErr = url.Parse(strings.TrimRight(o.BaseURL, "/"))
	if c.baseErr == nil && (c.base.Scheme != "http" && c.base.Scheme != "https" || c.base.Host == "") {
		c.base, c.baseErr = nil, errors.New("the API base URL needs an http(s) scheme and a host")
	}
	return c
}

// Result is the outcome of FetchManifest.
type Result struct {
	// Outcome is fetcher's classification (never NoUpdate): Updated,
	// Unauthorized, RateLimited, Transient or Rejected.
	Outcome fetcher.Outcome
	// Label is the bounded metric label, one of ManifestLabels.
	Label string
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// Manifest is the parsed and screened manifest when Outcome is Updated.
	// Entries refused one by one are in Manifest.Refused.
	Manifest Manifest
	// RetryAfter is the server's Retry-After on an answer other than 200,
	// within [0, fetcher.MaxRetryAfterHint].
	RetryAfter time.Duration
	// Err describes a failure; it never contains the SDK key. A refused
	// body is a *ManifestError.
	Err error

	class string // "timeout", "canceled" or "network" for a transport failure
}

// ManifestLabels is every Result.Label: the "outcome" label of an ID-list
// manifest fetch counter. The values mean what fetcher.Labels' do.
var ManifestLabels = []string{
	"updated",            // a manifest was parsed (some entries may be refused)
	"unauthorized",       // 401 or 403
	"http_429",           // rate limited
	"http_408",           // the server timed the request out
	"http_5xx",           // 500-599
	"http_4xx",           // any other 4xx
	"http_3xx",           // a redirect: never followed, the key is in the path
	"http_other",         // any other status but 200
	"timeout",            // no whole answer within Timeout
	"network",            // refused, reset, TLS, a body shorter than announced, no usable base URL
	"canceled",           // the caller canceled
	"invalid_manifest",   // a 200 whose body is not a JSON object (ManifestError reasons)
	"unsupported_format", // a Content-Encoding other than gzip or identity
	"too_large",          // more than MaxManifestBytes, announced or decompressed
}

// manifestRequest is GET {base}/v1/get_id_lists/{key}.json. keys.Parse admits
// only letters, digits, '-' and '_', which need no escaping in a path.
func (c *Client) manifestRequest(ctx context.Context, k keys.SDKKey) (*http.Request, error) {
	if c.baseErr != nil {
		return nil, c.baseErr
	}
	u := *c.base
	u.Path = u.Path + "/v1/get_id_lists/" + k.Reveal() + ".json"
	if u.RawPath != "" {
		u.RawPath = u.RawPath + "/v1/get_id_lists/" + k.Reveal() + ".json"
	}
	u.RawQuery, u.Fragment = "", ""
	req := &http.Request{
		Method: http.MethodGet, URL: &u, Host: u.Host, Header: c.manHdr,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
	return req.WithContext(ctx), nil
}

// FetchManifest downloads and parses k's ID-list manifest with
// GET {BaseURL}/v1/get_id_lists/{key}.json, the CDN form that server-core and
// the Java SDK use by default (the key in the path, no header, gzip accepted;
// the POST /v1/get_id_lists form with a STATSIG-API-KEY header belongs to the
// statsigapi.net API host and is not used). Entries are
// screened against MaxListBytes, the clock (creationTime at most
// MaxClockSkew ahead) and the key rule: an entry whose url carries the key
// but points to another origin than BaseURL is refused (key_in_url).
func (c *Client) FetchManifest(ctx context.Context, k keys.SDKKey) Result {
	r := c.fetchManifest(ctx, k)
	r.Label = manifestLabel(r)
	var me *ManifestError
	switch {
	case errors.As(r.Err, &me):
		r.Err = &ManifestError{Reason: me.Reason, Detail: redact(k, me.Detail)}
	case r.Err != nil:
		r.Err = errors.New(redact(k, r.Err.Error()))
	}
	return r
}

func (c *Client) fetchManifest(ctx context.Context, k keys.SDKKey) Result {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.manifestRequest(ctx, k)
	if err != nil {
		return Result{Outcome: fetcher.Transient, Err: err, class: "network"}
	}
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return transportFailure(ctx, err)
	}
	defer resp.Body.Close()
	if st := resp.StatusCode; st != http.StatusOK {
		drain(resp.Body)
		r := statusFailure(st)
		r.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), c.now())
		return r
	}
	ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	if ce != "" && ce != "identity" && ce != "gzip" {
		drain(resp.Body)
		return Result{Outcome: fetcher.Rejected, Status: 200, Err: fmt.Errorf("manifest came with Content-Encoding %q, which was not asked for", ce)}
	}
	if resp.ContentLength > c.maxMan && ce != "gzip" {
		return tooLarge(fmt.Sprintf("announced %d bytes, more than the cap of %d", resp.ContentLength, c.maxMan))
	}
	body, err := readCapped(resp.Body, c.maxMan)
	if err != nil {
		if err == errTooLarge {
			return tooLarge(fmt.Sprintf("more than the cap of %d bytes", c.maxMan))
		}
		return transportFailure(ctx, fmt.Errorf("reading the manifest: %w", err))
	}
	if ce == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err == nil {
			body, err = readCapped(zr, c.maxMan)
		}
		switch {
		case err == errTooLarge:
			return tooLarge(fmt.Sprintf("more than the cap of %d bytes once decompressed", c.maxMan))
		case err != nil:
			return Result{Outcome: fetcher.Rejected, Status: 200, Err: &ManifestError{Reason: "bad_encoding", Detail: "gzip: " + err.Error()}}
		}
	}
	m, err := ParseManifest(body, c.maxMan)
	if err != nil {
		return Result{Outcome: fetcher.Rejected, Status: 200, Err: err}
	}
	m = m.Screen(Limits{MaxListBytes: c.maxList, Now: c.now(), MaxClockSkew: c.skew})
	m = c.screenKey(m, k)
	return Result{Outcome: fetcher.Updated, Status: 200, Manifest: m}
}

// screenKey refuses (key_in_url) every entry whose URL would carry k to
// another origin than the API's, and removes k from every refusal's text.
func (c *Client) screenKey(m Manifest, k keys.SDKKey) Manifest {
	for name, e := range m.Entries {
		if containsKey(k, name) {
			delete(m.Entries, name)
			m.refuse(name, "bad_name", "the list name holds the SDK key")
			continue
		}
		if c.keyLeaks(k, e.URL) {
			delete(m.Entries, name)
			m.refuse(name, "key_in_url", "the url carries the SDK key to another origin than STATSIG_API_URL")
		}
	}
	for i := range m.Refused {
		m.Refused[i].Name = redact(k, m.Refused[i].Name)
		m.Refused[i].Detail = redact(k, m.Refused[i].Detail)
	}
	m.sortRefused()
	return m
}

// keyLeaks reports whether fetching raw would send k somewhere else than the
// API origin: the URL holds the key (as it is, or percent-decoded) and its
// scheme, host or port differ from BaseURL's. An unparsable URL counts as a
// leak when it holds the key at all.
func (c *Client) keyLeaks(k keys.SDKKey, raw string) bool {
	if !containsKey(k, raw) {
		return false
	}
	u, err := url.Parse(raw)
	return err != nil || c.base == nil || !sameOrigin(u, c.base)
}

func containsKey(k keys.SDKKey, s string) bool {
	secret := k.Reveal()
	if secret == "" {
		return false
	}
	if strings.Contains(s, secret) {
		return true
	}
	if d, err := url.PathUnescape(s); err == nil && strings.Contains(d, secret) {
		return true
	}
	if d, err := url.QueryUnescape(s); err == nil && strings.Contains(d, secret) {
		return true
	}
	return false
}

// sameOrigin compares scheme, host (case-insensitively) and port, the
// scheme's default port standing for an absent one.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		effectivePort(a) == effectivePort(b)
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

func tooLarge(detail string) Result {
	return Result{Outcome: fetcher.Rejected, Status: 200, Err: &ManifestError{Reason: "too_large", Detail: detail}}
}

var errTooLarge = errors.New("body too large")

// readCapped reads r to the end, failing with errTooLarge past limit bytes.
// It reserves nothing from what a server announces: the buffer grows with
// the bytes that actually arrive (a manifest is small).
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

// statusFailure is the Result of an answer other than 200.
func statusFailure(st int) Result {
	switch {
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return Result{Outcome: fetcher.Unauthorized, Status: st, Err: fmt.Errorf("API answered %d: key is invalid, revoked or not a server key", st)}
	case st == http.StatusTooManyRequests:
		return Result{Outcome: fetcher.RateLimited, Status: st, Err: errors.New("API answered 429: rate limited")}
	case st == http.StatusRequestTimeout || st >= 500 && st <= 599 && st != http.StatusNotImplemented:
		return Result{Outcome: fetcher.Transient, Status: st, Err: fmt.Errorf("API answered %d", st)}
	}
	return Result{Outcome: fetcher.Rejected, Status: st, Err: fmt.Errorf("API answered %d", st)}
}

// transportFailure is the Result of a request that got no (whole) answer.
func transportFailure(ctx context.Context, err error) Result {
	return Result{Outcome: fetcher.Transient, Err: stripURL(err), class: transportClass(ctx, err)}
}

// stripURL drops the *url.Error wrapper, whose message repeats the URL (the
// manifest's holds the key; a list's may hold a signature).
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// transportClass is "timeout", "canceled" or "network": the request's
// context says which of the first two it was, if either.
func transportClass(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return "canceled"
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "network"
}

func manifestLabel(r Result) string {
	switch r.Outcome {
	case fetcher.Updated:
		return "updated"
	case fetcher.Unauthorized:
		return "unauthorized"
	}
	if r.Status != 0 && r.Status != 200 {
		return fetcher.StatusLabel(r.Status)
	}
	var me *ManifestError
	if errors.As(r.Err, &me) {
		if me.Reason == "too_large" {
			return "too_large"
		}
		return "invalid_manifest"
	}
	if r.Status == 200 {
		return "unsupported_format"
	}
	if r.class != "" {
		return r.class
	}
	return "network"
}

// redact replaces k (and its escaped forms) in s by its redacted name.
func redact(k keys.SDKKey, s string) string {
	if k.IsZero() {
		return s
	}
	s = strings.ReplaceAll(s, k.Reveal(), k.Redacted())
	return strings.ReplaceAll(s, url.PathEscape(k.Reveal()), k.Redacted())
}

// drain reads what is left of a small body (at most 64 KiB) so that the
// connection can be reused; a bigger one is dropped with its connection.
func drain(r io.Reader) {
	_, _ = io.CopyN(io.Discard, r, 64<<10)
}

// retryAfter reads a Retry-After value as a wait from now, within
// [0, fetcher.MaxRetryAfterHint]; anything unreadable or past means 0.
func retryAfter(s string, now time.Time) time.Duration {
	s = strings.Trim(s, " \t")
	if s == "" {
		return 0
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil || isDigits(s) {
		if err != nil || n > uint64(fetcher.MaxRetryAfterHint/time.Second) {
			return fetcher.MaxRetryAfterHint
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(s)
	switch {
	case err != nil || !t.After(now):
		return 0
	case t.After(now.Add(fetcher.MaxRetryAfterHint)):
		return fetcher.MaxRetryAfterHint
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
