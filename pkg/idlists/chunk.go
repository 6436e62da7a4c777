package idlists

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// ChunkError is a chunk refused for what it holds or how it was framed: a
// bad chunk. Nothing of it may be stored; the caller counts it in
// Stored.BadChunks, and after MaxBadChunks in a row Decide asks for the
// whole file. Reason is one of ChunkReasons.
type ChunkError struct {
	Reason string
	Detail string
}

func (e *ChunkError) Error() string {
	if e.Detail == "" {
		return "bad ID-list chunk: " + e.Reason
	}
	return "bad ID-list chunk: " + e.Reason + ": " + e.Detail
}

// ChunkReasons is every ChunkError.Reason: a bounded metric label.
var ChunkReasons = []string{
	// bad_first_byte: the chunk's first byte is neither '+' nor '-' (the
	// offset does not fall on a line start of this file).
	"bad_first_byte",
	// no_trailing_newline: the chunk's last byte is not '\n' (a line cut in
	// the middle).
	"no_trailing_newline",
	// short: fewer bytes than the manifest announced arrived, or a
	// Content-Length or Content-Range announced fewer; also a body that
	// ended before its Content-Length.
	"short",
	// bad_content_range: a 206 whose Content-Range is missing, unreadable,
	// does not start at the requested offset or disagrees with its
	// Content-Length.
	"bad_content_range",
	// misaligned: a 200 (whole file) answer whose byte before the offset is
	// not '\n': the stored prefix is not a prefix of this file.
	"misaligned",
	// compressed: a Content-Encoding other than identity, although none was
	// accepted: the byte counts would not be the file's.
	"compressed",
	// range_not_satisfiable: 416; the file is shorter than the stored
	// prefix, so the stored list no longer matches it.
	"range_not_satisfiable",
}

// FetchError is a chunk that could not be had for reasons other than its
// content: no answer, an HTTP status, or a request OpenChunk refused to send.
// It is not a bad chunk. Label is one of ChunkLabels.
type FetchError struct {
	Label  string
	Status int // the HTTP status, 0 when none came
	Err    error
}

func (e *FetchError) Error() string {
	return "ID-list download failed (" + e.Label + "): " + e.Err.Error()
}
func (e *FetchError) Unwrap() error { return e.Err }

// ChunkLabels is every value ChunkLabel returns: the "outcome" label of an
// ID-list download counter.
var ChunkLabels = []string{
	"ok",         // the chunk arrived whole and valid
	"bad_chunk",  // a *ChunkError (ChunkReasons says why)
	"refused",    // OpenChunk sent nothing: the entry's URL is unusable or would carry the key elsewhere, or the offset is outside the file
	"http_429",   // rate limited
	"http_408",   // the server timed the request out
	"http_5xx",   // 500-599
	"http_4xx",   // any other 4xx but 416 (401 and 403 included: a list URL's refusal says nothing about the SDK key)
	"http_3xx",   // a redirect: never followed
	"http_other", // any other status but 200, 206 and 416
	"timeout",    // no whole chunk within Options.Timeout
	"network",    // refused, reset, TLS
	"canceled",   // the caller canceled
}

// ChunkLabel is the member of ChunkLabels that err (from OpenChunk or a
// Chunk's Read) falls under; nil and io.EOF are "ok".
func ChunkLabel(err error) string {
	var ce *ChunkError
	var fe *FetchError
	switch {
	case err == nil || err == io.EOF:
		return "ok"
	case errors.As(err, &ce):
		return "bad_chunk"
	case errors.As(err, &fe):
		return fe.Label
	}
	return "network"
}

// IsBadChunk reports whether err is a *ChunkError.
func IsBadChunk(err error) bool {
	var ce *ChunkError
	return errors.As(err, &ce)
}

// Chunk is the body of one list download, bytes [Offset, Offset+Length) of
// the file, read through a validator. Read returns exactly Length bytes and
// then io.EOF, or fails with a *ChunkError or a *FetchError:
//
//   - the first byte must be '+' or '-' (checked before any byte is handed
//     out: a chunk with a bad first byte yields no bytes);
//   - the last byte must be '\n' (the error comes instead of the final
//     bytes, with the earlier bytes already handed out);
//   - fewer than Length bytes is a *ChunkError "short".
//
// So the caller must stage what it reads (a temporary Redis key, say) and
// commit it only after Read returned io.EOF; on any error, discard the stage.
// Only one buffer's worth of bytes is in memory at a time: a 10 MB first
// load costs what the caller's copy buffer costs.
//
// Close must be called; it ends the request (Options.Timeout bounds it from
// OpenChunk on). A Chunk is not safe for concurrent use.
type Chunk struct {
	// Offset and Length are what Read delivers: the file's bytes from Offset,
	// Length of them (the entry's size minus the offset).
	Offset, Length int64
	// Status is 206 (a range answer) or 200 (the whole file, of which the
	// first Offset bytes were skipped).
	Status int
	// Skipped is the number of bytes read and dropped from a 200 answer.
	Skipped int64

	body   io.ReadCloser
	ctx    context.Context
	cancel context.CancelFunc
	k      keys.SDKKey
	read   int64
	err    error // sticky
	closed bool
}

// OpenChunk requests entry's file from offset (Range: bytes=offset-, no
// compression accepted) and returns a Chunk delivering exactly
// entry.Size-offset bytes. The request carries no SDK key and no statsig
// header; it is sent only if the entry's URL passes the manifest checks and
// would not carry k to another origin than Options.BaseURL. offset must be
// in [0, entry.Size). Redirects are not followed.
//
// Accepted answers: 206 whose Content-Range starts at offset and covers at
// least the wanted bytes (a file that grew since the manifest is cut at the
// manifest's size), with a Content-Length equal to the range; or 200, the
// whole file, whose first offset bytes are read and dropped (the byte just
// before offset must be '\n'). A Content-Length, when present, must cover
// the wanted bytes; without one, the bytes are counted. Errors are
// *ChunkError (a bad chunk) or *FetchError; neither contains k.
func (c *Client) OpenChunk(ctx context.Context, k keys.SDKKey, entry Entry, offset int64) (*Chunk, error) {
	ch, err := c.openChunk(ctx, k, entry, offset)
	if err != nil {
		return nil, redactErr(k, err)
	}
	return ch, nil
}

func (c *Client) openChunk(ctx context.Context, k keys.SDKKey, e Entry, offset int64) (*Chunk, error) {
	switch {
	case offset < 0 || offset >= e.Size:
		return nil, refused("offset %d is outside the file's %d bytes", offset, e.Size)
	case e.Size > c.maxList:
		return nil, refused("size %d is larger than the cap of %d bytes", e.Size, c.maxList)
	case checkURL(e.URL) != "":
		return nil, refused("%s", checkURL(e.URL))
	case c.keyLeaks(k, e.URL):
		return nil, refused("the url carries the SDK key to another origin than STATSIG_API_URL")
	}
	u, err := url.Parse(e.URL)
	if err != nil { // checkURL parsed it already
		return nil, refused("url does not parse")
	}
	u.Fragment, u.RawFragment = "", ""
	want := e.Size - offset

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	req := &http.Request{
		Method: http.MethodGet, URL: u, Host: u.Host,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"User-Agent": {c.ua},
			// Byte counts must be the file's: no gzip, and no transport
			// adds it transparently once the header is set.
			"Accept-Encoding": {"identity"},
			"Range":           {"bytes=" + strconv.FormatInt(offset, 10) + "-"},
		},
	}
	resp, err := c.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		class := transportClass(ctx, err)
		cancel()
		return nil, &FetchError{Label: class, Err: stripURL(err)}
	}
	ch := &Chunk{Offset: offset, Length: want, Status: resp.StatusCode, body: resp.Body, ctx: ctx, cancel: cancel, k: k}
	if err := ch.check(resp); err != nil {
		ch.Close()
		return nil, err
	}
	return ch, nil
}

// check judges the response headers and, for a 200, skips to the offset.
func (ch *Chunk) check(resp *http.Response) error {
	st := resp.StatusCode
	switch st {
	case http.StatusPartialContent, http.StatusOK:
	case http.StatusRequestedRangeNotSatisfiable:
		return &ChunkError{Reason: "range_not_satisfiable", Detail: fmt.Sprintf("416 for bytes=%d-: the file is shorter than what is stored", ch.Offset)}
	default:
		label := fetcher.StatusLabel(st)
		if label == "unauthorized" {
			label = "http_4xx"
		}
		return &FetchError{Label: label, Status: st, Err: fmt.Errorf("list server answered %d", st)}
	}
	if ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); ce != "" && ce != "identity" {
		return &ChunkError{Reason: "compressed", Detail: fmt.Sprintf("Content-Encoding %q although only identity was accepted", ce)}
	}
	cl := resp.ContentLength // -1 when unknown
	if st == http.StatusPartialContent {
		first, last, err := parseContentRange(resp.Header.Get("Content-Range"))
		switch {
		case err != nil:
			return &ChunkError{Reason: "bad_content_range", Detail: err.Error()}
		case first != ch.Offset:
			return &ChunkError{Reason: "bad_content_range", Detail: fmt.Sprintf("range starts at %d, %d was asked for", first, ch.Offset)}
		case cl >= 0 && cl != last-first+1:
			return &ChunkError{Reason: "bad_content_range", Detail: fmt.Sprintf("Content-Length %d for a range of %d bytes", cl, last-first+1)}
		case last-first+1 < ch.Length:
			return &ChunkError{Reason: "short", Detail: fmt.Sprintf("range of %d bytes, %d announced by the manifest", last-first+1, ch.Length)}
		}
		return nil
	}

	// 200: the whole file.
	if cl >= 0 && cl-ch.Offset < ch.Length {
		return &ChunkError{Reason: "short", Detail: fmt.Sprintf("whole file of %d bytes, %d announced by the manifest", cl, ch.Offset+ch.Length)}
	}
	if ch.Offset == 0 {
		return nil
	}
	n, err := io.CopyN(io.Discard, ch.body, ch.Offset-1)
	ch.Skipped = n
	if err == nil {
		var b [1]byte
		var m int
		m, err = io.ReadFull(ch.body, b[:])
		ch.Skipped += int64(m)
		if err == nil && b[0] != '\n' {
			return &ChunkError{Reason: "misaligned", Detail: fmt.Sprintf("byte %d of the whole file is not a newline", ch.Offset-1)}
		}
	}
	if err != nil {
		return ch.readErr(err, fmt.Sprintf("whole file ended after %d bytes, before the offset %d", ch.Skipped, ch.Offset))
	}
	return nil
}

// readErr classifies an error from the body: an early end is a short chunk,
// anything else the transport's.
func (ch *Chunk) readErr(err error, shortDetail string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &ChunkError{Reason: "short", Detail: shortDetail}
	}
	return redactErr(ch.k, &FetchError{Label: transportClass(ch.ctx, err), Err: stripURL(err)})
}

// Read implements io.Reader with the checks described on Chunk.
func (ch *Chunk) Read(p []byte) (int, error) {
	if ch.err != nil {
		return 0, ch.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	left := ch.Length - ch.read
	if left == 0 {
		ch.err = io.EOF
		return 0, io.EOF
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := ch.body.Read(p)
	if n > 0 {
		if ch.read == 0 && p[0] != '+' && p[0] != '-' {
			ch.err = &ChunkError{Reason: "bad_first_byte", Detail: fmt.Sprintf("the chunk at offset %d starts with %q, not '+' or '-'", ch.Offset, p[0])}
			return 0, ch.err
		}
		ch.read += int64(n)
		if ch.read == ch.Length {
			if p[n-1] != '\n' {
				ch.err = &ChunkError{Reason: "no_trailing_newline", Detail: fmt.Sprintf("byte %d is %q, not a newline", ch.Offset+ch.Length-1, p[n-1])}
				return 0, ch.err
			}
			ch.err = io.EOF
			return n, io.EOF
		}
	}
	if err != nil {
		ch.err = ch.readErr(err, fmt.Sprintf("%d of %d bytes arrived", ch.read, ch.Length))
		return n, ch.err
	}
	return n, nil
}

// Close ends the download. A small unread rest (at most 64 KiB) is drained
// so that the connection can be reused.
func (ch *Chunk) Close() error {
	if ch.closed {
		return nil
	}
	ch.closed = true
	drain(ch.body)
	err := ch.body.Close()
	ch.cancel()
	return err
}

// parseContentRange reads "bytes first-last/total" (total may be "*").
func parseContentRange(s string) (first, last int64, err error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q is not a byte range", truncate(s))
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q has no total", truncate(s))
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok || !isDigits(a) || !isDigits(b) {
		return 0, 0, fmt.Errorf("Content-Range %q is not first-last", truncate(s))
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || last < first || last == 1<<63-1 {
		return 0, 0, fmt.Errorf("Content-Range %q is out of range", truncate(s))
	}
	if total != "*" {
		n, err := strconv.ParseInt(total, 10, 64)
		if !isDigits(total) || err != nil || n <= last {
			return 0, 0, fmt.Errorf("Content-Range %q has a total that does not cover the range", truncate(s))
		}
	}
	return first, last, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func refused(format string, args ...any) *FetchError {
	return &FetchError{Label: "refused", Err: fmt.Errorf(format, args...)}
}

// redactErr removes k from err's text, keeping its type.
func redactErr(k keys.SDKKey, err error) error {
	var ce *ChunkError
	var fe *FetchError
	switch {
	case errors.As(err, &ce):
		return &ChunkError{Reason: ce.Reason, Detail: redact(k, ce.Detail)}
	case errors.As(err, &fe):
		return &FetchError{Label: fe.Label, Status: fe.Status, Err: errors.New(redact(k, fe.Err.Error()))}
	}
	return errors.New(redact(k, err.Error()))
}
