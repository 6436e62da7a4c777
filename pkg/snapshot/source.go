package snapshot

// The offline source (STATSIG_API_URL=file:///path/archive.tar.gz): an
// archive served to the worker's own CDN clients as if it were the CDN, so
// that run and once, the poller, leader election, readiness, metrics and
// status work unchanged with no network at all.
//
// The archive is verified whole (Verify) before anything of it is served,
// then extracted into a private directory (Walk, which checks every member
// again as it streams), and requests are answered from those files: memory
// holds the index, never the payloads. A newer archive at the same path
// replaces the served one only once it verified and extracted whole; a
// refused one leaves the served one in place.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// SourceBaseURL is the base URL the worker's clients use in offline mode. No
// request to it leaves the process: Source answers them all. The .invalid
// top-level domain never resolves (RFC 2606).
const SourceBaseURL = "http://snapshot.invalid"

// Source is an http.RoundTripper answering the CDN's endpoints from an
// archive file:
//
//	GET /v{1,2}/download_config_specs/{key}.json[?sinceTime=N]
//	GET /v1/get_id_lists/{key}.json
//	GET /id_list_files/{key id}/{fileID}/{name}   (Range: bytes=N- honoured)
//
// A key the archive lacks is answered 404 (an error, never "unauthorized":
// DELETE_ON_UNAUTHORIZED must not delete what an incomplete archive lacks);
// before any archive was loaded every request is answered 503.
type Source struct {
	path   string
	limits func() Limits
	log    zerolog.Logger
	tmp    string // parent of the extraction directories

	mu      sync.RWMutex
	cur     *served
	prev    *served   // the archive served before cur: removed at the next swap, so that requests begun on it finish
	stamp   fileStamp // of the file last tried, loaded or refused
	lastErr error
}

type served struct {
	dir string
	v   *Verified
}

// fileStamp tells one version of the file from another: a replaced file
// (a rename over it, a ConfigMap's symlink swap) has another size or
// modification time.
type fileStamp struct {
	size  int64
	mtime int64 // unix ns
}

func stampOf(fi os.FileInfo) fileStamp {
	return fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

// NewSource returns a Source for the archive at path; nothing is read until
// Reload. limits gives the verification limits for each load (the configured
// keys, MAX_PAYLOAD_BYTES, the clock). Extracted archives live in a
// directory under tmpDir ("" for the system's).
func NewSource(path string, limits func() Limits, tmpDir string, log zerolog.Logger) (*Source, error) {
	tmp, err := os.MkdirTemp(tmpDir, "statsig-populator-snapshot-")
	if err != nil {
		return nil, fmt.Errorf("offline source: %w", err)
	}
	return &Source{path: path, limits: limits, log: log, tmp: tmp}, nil
}

// Close removes the extracted files.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = nil
	return os.RemoveAll(s.tmp)
}

// Loaded reports what is served: the archive's creation time and its key
// count; ok is false before the first archive loaded.
func (s *Source) Loaded() (created time.Time, keyCount int, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cur == nil {
		return time.Time{}, 0, false
	}
	return s.cur.v.Manifest.CreatedAt, len(s.cur.v.Keys), true
}

// Reload loads the archive if the file changed since the last attempt (or
// was never tried): it verifies and extracts it, and serves it only then.
// changed reports whether a new archive is now served; err why the file was
// refused (the archive served before, if any, stays).
func (s *Source) Reload() (changed bool, err error) {
	st, err := os.Stat(s.path)
	if err != nil {
		return false, s.refused(fileStamp{}, fmt.Errorf("offline source: %w", unwrapPath(err)))
	}
	stamp := stampOf(st)
	s.mu.RLock()
	same := stamp == s.stamp
	s.mu.RUnlock()
	if same {
		return false, nil
	}
	next, err := s.load()
	if err != nil {
		var me *MemberError
		if !errors.As(err, &me) {
			// Not the archive's fault (a full disk, a read cut short):
			// try this file again at the next check.
			stamp = fileStamp{}
		}
		return false, s.refused(stamp, err)
	}
	s.mu.Lock()
	old := s.prev
	s.prev, s.cur, s.stamp, s.lastErr = s.cur, next, stamp, nil
	s.mu.Unlock()
	if old != nil {
		_ = os.RemoveAll(old.dir)
	}
	s.log.Info().Time("created_at", next.v.Manifest.CreatedAt).Int("keys", len(next.v.Keys)).Int64("bytes", next.v.Bytes).
		Msg("offline source: archive loaded")
	return true, nil
}

// refused records a failed attempt (logged once per file version).
func (s *Source) refused(stamp fileStamp, err error) error {
	s.mu.Lock()
	repeat := s.lastErr != nil && s.lastErr.Error() == err.Error()
	s.stamp, s.lastErr = stamp, err
	serving := s.cur != nil
	s.mu.Unlock()
	if !repeat {
		s.log.Error().Err(err).Bool("serving_previous", serving).Msg("offline source: archive refused; nothing of it is used")
	}
	return err
}

// load verifies the file and extracts it into a new directory.
func (s *Source) load() (*served, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("offline source: %w", unwrapPath(err))
	}
	defer f.Close()
	v, err := Verify(f, s.limits())
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(s.tmp, "archive-")
	if err != nil {
		return nil, err
	}
	err = Walk(f, v, func(it Item) error {
		// Paths were checked by Verify: "keys/<hex id>/…" with valid names.
		dst := filepath.Join(dir, filepath.FromSlash(it.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if it.List != nil {
			_, err = io.Copy(out, it.List)
		} else {
			_, err = out.Write(it.Body)
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &served{dir: dir, v: v}, nil
}

// Watch reloads every period until ctx ends: a replaced archive is served
// within a period of being complete on disk.
func (s *Source) Watch(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = s.Reload()
		}
	}
}

// RoundTrip answers one request from the served archive.
func (s *Source) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	cur := s.cur
	s.mu.RUnlock()
	if cur == nil {
		return respond(req, http.StatusServiceUnavailable, nil, []byte(`{"message":"no snapshot archive loaded yet"}`)), nil
	}
	if req.Method != http.MethodGet {
		return respond(req, http.StatusMethodNotAllowed, nil, nil), nil
	}
	p := req.URL.Path
	for _, v := range []keys.Version{keys.V1, keys.V2} {
		if rest, ok := strings.CutPrefix(p, v.DCSPath()+"/"); ok {
			return s.payload(req, cur, v, strings.TrimSuffix(rest, ".json"))
		}
	}
	if rest, ok := strings.CutPrefix(p, "/v1/get_id_lists/"); ok {
		return s.idManifest(req, cur, strings.TrimSuffix(rest, ".json"))
	}
	if rest, ok := strings.CutPrefix(p, "/id_list_files/"); ok {
		return s.idFile(req, cur, rest)
	}
	return respond(req, http.StatusNotFound, nil, nil), nil
}

// keyOf finds the archive's entry for the key in a request path.
func keyOf(cur *served, raw string) (*Key, bool) {
	k, err := keys.Parse(raw)
	if err != nil {
		return nil, false
	}
	e, ok := cur.v.Keys[KeyID(k)]
	return e, ok
}

func (s *Source) payload(req *http.Request, cur *served, v keys.Version, rawKey string) (*http.Response, error) {
	e, ok := keyOf(cur, rawKey)
	if !ok {
		return respond(req, http.StatusNotFound, nil, []byte(`{"message":"key not in the snapshot archive"}`)), nil
	}
	m, ok := e.Payloads[v]
	if !ok {
		return respond(req, http.StatusNotFound, nil, []byte(`{"message":"version not in the snapshot archive"}`)), nil
	}
	h := http.Header{"X-Since-Time": {strconv.FormatInt(m.Lcut, 10)}}
	if since, err := strconv.ParseInt(req.URL.Query().Get("sinceTime"), 10, 64); err == nil && since >= m.Lcut {
		return respond(req, http.StatusOK, h, []byte(`{"has_updates":false}`)), nil
	}
	f, err := os.Open(filepath.Join(cur.dir, filepath.FromSlash(m.Path)))
	if err != nil {
		return nil, err
	}
	return respondFile(req, http.StatusOK, h, f, m.Size), nil
}

func (s *Source) idManifest(req *http.Request, cur *served, rawKey string) (*http.Response, error) {
	e, ok := keyOf(cur, rawKey)
	if !ok {
		return respond(req, http.StatusNotFound, nil, []byte(`{"message":"key not in the snapshot archive"}`)), nil
	}
	if e.IDListManifest == nil {
		// Not "no lists": an archive made without ID lists says nothing
		// about them, and an empty manifest would delete every stored list.
		return respond(req, http.StatusNotFound, nil, []byte(`{"message":"no ID lists for this key in the snapshot archive"}`)), nil
	}
	b, err := os.ReadFile(filepath.Join(cur.dir, filepath.FromSlash(e.IDListManifest.Path)))
	if err != nil {
		return nil, err
	}
	var m map[string]idlists.Entry
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err // verified at load: cannot happen short of a changed file
	}
	// The lists are served here: point each entry at this source, on the
	// same origin as the manifest (the client fetches no other).
	entries := make([]idlists.Entry, 0, len(m))
	for name, en := range m {
		en.Name = name
		en.URL = SourceBaseURL + "/id_list_files/" + e.ID + "/" + url.PathEscape(en.FileID) + "/" + name
		entries = append(entries, en)
	}
	return respond(req, http.StatusOK, nil, idlists.MarshalManifest(entries)), nil
}

func (s *Source) idFile(req *http.Request, cur *served, rest string) (*http.Response, error) {
	// {key id}/{fileID}/{name}: a request for a file the served archive no
	// longer holds (replaced since its manifest was read) is 404, never
	// another file's bytes under the old entry.
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) != 3 {
		return respond(req, http.StatusNotFound, nil, nil), nil
	}
	id, name := parts[0], parts[2]
	fileID, err := url.PathUnescape(parts[1])
	e, known := cur.v.Keys[id]
	if err != nil || !known {
		return respond(req, http.StatusNotFound, nil, nil), nil
	}
	m, ok := e.Lists[name]
	if !ok || m.FileID != fileID {
		return respond(req, http.StatusNotFound, nil, nil), nil
	}
	from := int64(0)
	if r := req.Header.Get("Range"); r != "" {
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r, "bytes="), "-"), 10, 64)
		if err != nil || n < 0 || !strings.HasPrefix(r, "bytes=") || !strings.HasSuffix(r, "-") {
			return respond(req, http.StatusBadRequest, nil, nil), nil
		}
		if n >= m.Size {
			return respond(req, http.StatusRequestedRangeNotSatisfiable, http.Header{"Content-Range": {fmt.Sprintf("bytes */%d", m.Size)}}, nil), nil
		}
		from = n
	}
	f, err := os.Open(filepath.Join(cur.dir, filepath.FromSlash(m.Path)))
	if err != nil {
		return nil, err
	}
	if from == 0 && req.Header.Get("Range") == "" {
		return respondFile(req, http.StatusOK, http.Header{"Content-Type": {"text/plain"}}, f, m.Size), nil
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	h := http.Header{"Content-Type": {"text/plain"}, "Content-Range": {fmt.Sprintf("bytes %d-%d/%d", from, m.Size-1, m.Size)}}
	return respondFile(req, http.StatusPartialContent, h, f, m.Size-from), nil
}

func respond(req *http.Request, status int, h http.Header, body []byte) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	return &http.Response{Status: strconv.Itoa(status) + " " + http.StatusText(status), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Body: io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)), Request: req}
}

func respondFile(req *http.Request, status int, h http.Header, f *os.File, n int64) *http.Response {
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	return &http.Response{Status: strconv.Itoa(status) + " " + http.StatusText(status), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: struct {
			io.Reader
			io.Closer
		}{io.LimitReader(f, n), f},
		ContentLength: n, Request: req}
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
