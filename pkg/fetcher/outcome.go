package fetcher

import "strings"

// Labels is every value Result.Label can take: the bounded "outcome" label of
// the fetches_total metric. Every Result carries exactly one of them, so a
// dashboard built on this list sees every fetch.
var Labels = []string{
	// updated: a complete, validated payload (Outcome Updated).
	"updated",
	// no_update: "no updates" to a conditional request (Outcome NoUpdate).
	"no_update",
	// no_update_unconditional: "no updates" to a request without sinceTime,
	// which asked for everything; nothing can be confirmed (Outcome Rejected,
	// InvalidPayloadError reason no_update_unconditional).
	"no_update_unconditional",
	// unauthorized: 401 or 403; the key is invalid, revoked or not a server key.
	"unauthorized",
	// http_429: rate limited.
	"http_429",
	// http_408: the CDN timed the request out.
	"http_408",
	// http_5xx: any status from 500 to 599 (501 included, though it is not retried soon).
	"http_5xx",
	// http_4xx: any other status from 400 to 499.
	"http_4xx",
	// http_3xx: a redirect or 304; never followed, since the key is in the path.
	"http_3xx",
	// http_other: any other status that is not 200: 1xx, 2xx such as 204,
	// and codes of 600 and more.
	"http_other",
	// timeout: no complete answer within FETCH_TIMEOUT (or a transport timeout).
	"timeout",
	// network: the request failed or the answer broke off (connection
	// refused or reset, DNS, TLS, a body shorter than announced). Also a
	// request that could not be built (a base URL without scheme or host).
	"network",
	// canceled: the caller canceled the fetch, on shutdown.
	"canceled",
	// invalid_payload: a 200 whose body must not be stored; the reason is
	// one of InvalidReasons (except no_update_unconditional, labelled alone).
	"invalid_payload",
	// unsupported_format: protobuf, a delta, or a Content-Encoding that was
	// not asked for.
	"unsupported_format",
	// too_large: more than MAX_PAYLOAD_BYTES, announced or decompressed.
	"too_large",
}

// InvalidReasons is every InvalidPayloadError.Reason the package produces: the
// bounded "reason" label of invalid_payloads_total.
var InvalidReasons = []string{
	// no_update: has_updates is not true. Returned by Validate only; Fetch
	// turns it into Outcome NoUpdate or into no_update_unconditional.
	"no_update",
	// no_update_unconditional: "no updates" to a request without sinceTime.
	"no_update_unconditional",
	// not_json: the body is not valid JSON (empty, truncated, garbage).
	"not_json",
	// not_object: valid JSON, but not an object.
	"not_object",
	// bad_time: time is missing, not an integer, not positive or beyond int64.
	"bad_time",
	// future_time: time is further ahead of the worker's clock than
	// MAX_CLOCK_SKEW; storing it would pin the key, since the write guard
	// refuses anything older.
	"future_time",
	// wrong_sdk_key: hashed_sdk_key_used is not djb2 of the key the payload
	// was fetched with.
	"wrong_sdk_key",
	// wrong_version: response_format names the other payload version.
	"wrong_version",
	// wrong_shape: a member the version needs is missing or of the wrong
	// kind (v1 arrays, v2 objects), or the checksum is not a string.
	"wrong_shape",
	// bad_encoding: Content-Encoding gzip, but the bytes that arrived are not
	// a valid gzip stream (bad header, bad CRC or length, truncated deflate
	// data, trailing bytes that are not a gzip member).
	"bad_encoding",
}

// label is the member of Labels that r falls under.
func label(r Result) string {
	switch r.Outcome {
	case Updated:
		return "updated"
	case NoUpdate:
		return "no_update"
	case Unauthorized:
		return "unauthorized"
	}
	if s := r.Status; s != 0 && s != 200 {
		return StatusLabel(s)
	}
	switch c := r.Class; {
	case c == "invalid_payload:no_update_unconditional":
		return "no_update_unconditional"
	case strings.HasPrefix(c, "invalid_payload:"):
		return "invalid_payload"
	case c == "unsupported_format", c == "too_large", c == "timeout", c == "canceled":
		return c
	}
	// "network", and "bad_request": no request could be sent, which is
	// the same to the scheduler as one that got no answer.
	return "network"
}

// StatusLabel is the member of Labels for an answer with HTTP status s other
// than 200: the one mapping of status codes to labels, for every client of
// the CDN (configs and ID lists alike).
func StatusLabel(s int) string {
	switch {
	case s == 401 || s == 403:
		return "unauthorized"
	case s == 429:
		return "http_429"
	case s == 408:
		return "http_408"
	case s >= 500 && s <= 599:
		return "http_5xx"
	case s >= 400 && s <= 499:
		return "http_4xx"
	case s >= 300 && s <= 399:
		return "http_3xx"
	}
	return "http_other"
}
