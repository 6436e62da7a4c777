// Package fakecdn is an HTTP imitation of the Statsig CDN's
// download_config_specs and ID-list endpoints (idlists.go) for tests and benchmarks: conditional
// responses by sinceTime, the x-since-time and x-cache-hit headers, gzip,
// 401/403 for unknown or revoked keys, fault knobs for every failure the
// worker must survive, and a log of the requests it received.
package fakecdn

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Fault makes the fake misbehave for a key (or for all keys). The zero value
// is a well-behaved CDN.
type Fault struct {
	Status            int           // answer this status with a JSON error body
	RetryAfter        string        // Retry-After header with Status
	Delay             time.Duration // wait before answering (honours client cancellation)
	Reset             bool          // close the connection without an answer
	Truncate          bool          // announce the full length, send half, close
	InvalidJSON       bool          // a full-looking body that is not JSON
	OlderTime         bool          // has_updates:true with a time 1000 ms older than the lcut
	NoSinceTimeHeader bool          // leave out x-since-time
	NoCacheHitHeader  bool          // leave out x-cache-hit
	WrongHashedKey    bool          // hashed_sdk_key_used of another key
	IgnoreSinceTime   bool          // a full body even when sinceTime ≥ lcut
	Protobuf          bool          // application/octet-stream + statsig-br
	Delta             bool          // x-deltas-used: true
	WrongVersion      bool          // serve the other version's body
	Pad               int           // append this many spaces inside the body

	// Header sets extra response headers on every answer for the key,
	// replacing the fake's own (X-Since-Time, X-Cache-Hit, Content-Type …);
	// an empty value removes the header.
	Header map[string]string `json:",omitempty"`
	// Body, when not nil, is the whole answer, sent byte for byte whatever
	// sinceTime says: with status Status (200 when 0), Content-Type
	// ContentType (application/json when empty) and, when set,
	// Content-Encoding ContentEncoding. It is never compressed by the fake,
	// so a test can serve a gzip stream of its own making (a bomb, a lying
	// trailer, a corrupt stream) or an HTML error page.
	Body            []byte `json:",omitempty"`
	ContentType     string `json:",omitempty"`
	ContentEncoding string `json:",omitempty"`
	// FutureTime serves the key as if its payload were dated FutureOffset
	// ahead of the fake's clock: a full has_updates:true body with that
	// time, and that time in x-since-time (a CDN whose clock is wrong).
	FutureTime bool `json:",omitempty"`
}

// FutureOffset is how far ahead of the clock a FutureTime payload is dated.
const FutureOffset = 24 * time.Hour

// Request is one logged request.
type Request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Key                    string
	Version                keys.Version
	SinceTime              int64 // -1 when absent or unparsable
	At                     time.Time
}

type keyState struct {
	project  Project
	revoked  int // 0, 401 or 403
	bodies   map[keys.Version][]byte
	gzipped  map[keys.Version][]byte
	bodyLcut int64
	idLists  map[string]*idList // by name
}

// Server is the fake. Use it as an http.Handler (httptest.NewServer(s)).
type Server struct {
	mu       sync.Mutex
	keys     map[string]*keyState
	faults   map[string]Fault // by key; "*" for every key
	noGzip   bool
	logLimit int
	log      []Request
	counts   map[string]int
	idFiles  map[string]*idFile     // by fileID
	idFaults map[string]IDListFault // by key; "*" for every key
	idSeq    int
}

// New returns a fake CDN that knows no keys yet.
func New() *Server {
	return &Server{keys: map[string]*keyState{}, faults: map[string]Fault{}, logLimit: 100000, counts: map[string]int{},
		idFiles: map[string]*idFile{}, idFaults: map[string]IDListFault{}}
}

// SetProject makes k known with project p, replacing what was there.
func (s *Server) SetProject(k keys.SDKKey, p Project) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.keys[k.Reveal()]
	if st == nil {
		st = &keyState{}
		s.keys[k.Reveal()] = st
	}
	st.project = p
	st.bodies, st.gzipped = nil, nil
}

// Change bumps k's lcut by step milliseconds (at least 1) and increments its
// Value, the way a config change in the Statsig console does; it returns the
// new project.
func (s *Server) Change(k keys.SDKKey, step int64) Project {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.keys[k.Reveal()]
	if step < 1 {
		step = 1
	}
	st.project.Lcut += step
	st.project.Value++
	st.bodies, st.gzipped = nil, nil
	return st.project
}

// Project returns k's current project.
func (s *Server) Project(k keys.SDKKey) Project {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[k.Reveal()].project
}

// Revoke makes k answer status (401 or 403) until Restore.
func (s *Server) Revoke(k keys.SDKKey, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[k.Reveal()].revoked = status
}

// Restore undoes Revoke.
func (s *Server) Restore(k keys.SDKKey) { s.Revoke(k, 0) }

// SetFault sets the fault for key k; the zero SDKKey means every key.
func (s *Server) SetFault(k keys.SDKKey, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[faultKey(k)] = f
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[string]Fault{}
}

func faultKey(k keys.SDKKey) string {
	if k.IsZero() {
		return "*"
	}
	return k.Reveal()
}

// DisableGzip makes the fake answer uncompressed even when gzip is accepted.
func (s *Server) DisableGzip(off bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noGzip = off
}

// SetLogLimit caps the request log (0 disables it), for long benchmarks.
func (s *Server) SetLogLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logLimit = n
	if len(s.log) > n {
		s.log = s.log[:n]
	}
}

// Requests returns a copy of the request log.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// DCSRequests returns the logged download_config_specs requests only (no
// ID-list manifest or file requests).
func (s *Server) DCSRequests() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Version != "" {
			out = append(out, r)
		}
	}
	return out
}

// RequestsFor returns the logged DCS requests for k and v.
func (s *Server) RequestsFor(k keys.SDKKey, v keys.Version) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Key == k.Reveal() && r.Version == v {
			out = append(out, r)
		}
	}
	return out
}

// Count returns how many responses of a kind were sent: "full", "no_update",
// "unauthorized", "fault", "unknown".
func (s *Server) Count(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[kind]
}

// ResetLog clears the request log and counters.
func (s *Server) ResetLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
	s.counts = map[string]int{}
}

// ServeHTTP implements GET /{v1|v2}/download_config_specs/{key}.json.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.serveIDLists(w, r) {
		return
	}
	v, key, ok := parsePath(r.URL.Path)
	if r.Method != http.MethodGet || !ok {
		http.NotFound(w, r)
		return
	}
	since := int64(-1)
	if q := r.URL.Query().Get("sinceTime"); q != "" {
		if n, err := strconv.ParseInt(q, 10, 64); err == nil {
			since = n
		}
	}

	s.mu.Lock()
	if len(s.log) < s.logLimit {
		s.log = append(s.log, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(),
			Key: key, Version: v, SinceTime: since, At: time.Now()})
	}
	st := s.keys[key]
	f, hasFault := s.faults[key]
	if !hasFault {
		f = s.faults["*"]
	}
	var (
		lcut    int64
		body    []byte
		gzipped []byte
		revoked int
	)
	if st != nil {
		revoked = st.revoked
		lcut = st.project.Lcut
		body, gzipped = s.bodyLocked(key, st, v, f.WrongVersion)
	}
	noGzip := s.noGzip
	s.mu.Unlock()
	if f.FutureTime {
		lcut = time.Now().Add(FutureOffset).UnixMilli()
	}
	if len(f.Header) > 0 {
		w = &extraHeaders{ResponseWriter: w, h: f.Header}
	}

	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case f.Reset:
		s.count("fault")
		hijackClose(w)
		return
	case f.Body != nil:
		s.count("fault")
		h := w.Header()
		h.Set("Content-Type", "application/json")
		if f.ContentType != "" {
			h.Set("Content-Type", f.ContentType)
		}
		if f.ContentEncoding != "" {
			h.Set("Content-Encoding", f.ContentEncoding)
		}
		if f.RetryAfter != "" {
			h.Set("Retry-After", f.RetryAfter)
		}
		h.Set("Content-Length", strconv.Itoa(len(f.Body)))
		w.WriteHeader(cmp.Or(f.Status, http.StatusOK))
		_, _ = w.Write(f.Body)
		return
	case f.Status != 0:
		s.count("fault")
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		writeError(w, f.Status)
		return
	case st == nil:
		s.count("unknown")
		writeError(w, http.StatusUnauthorized)
		return
	case revoked != 0:
		s.count("unauthorized")
		writeError(w, revoked)
		return
	}

	h := w.Header()
	h.Set("Content-Type", "application/json")
	if !f.NoSinceTimeHeader {
		h.Set("X-Since-Time", strconv.FormatInt(lcut, 10))
	}
	if since >= lcut && !f.IgnoreSinceTime {
		s.count("no_update")
		if !f.NoCacheHitHeader {
			h.Set("X-Cache-Hit", "true")
		}
		_, _ = w.Write([]byte(NoUpdateBody))
		return
	}
	s.count("full")
	if !f.NoCacheHitHeader {
		h.Set("X-Cache-Hit", "false")
	}
	faulty := f.InvalidJSON || f.OlderTime || f.WrongHashedKey || f.Pad > 0 || f.FutureTime
	switch {
	case f.Protobuf:
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Encoding", "statsig-br")
		_, _ = w.Write([]byte{0x1b, 0x2c, 0x00, 0x01}) // not a real brotli stream: it must be refused unread
		return
	case f.Delta:
		h.Set("X-Deltas-Used", "true")
	}
	if faulty {
		body = s.faultyBody(key, v, lcut, body, f)
		gzipped = nil
	}
	if f.Truncate {
		h.Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body[:len(body)/2])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		hijackClose(w)
		return
	}
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") && !noGzip {
		if gzipped == nil {
			gzipped = gzipBytes(body)
		}
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", strconv.Itoa(len(gzipped)))
		_, _ = w.Write(gzipped)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// bodyLocked returns the cached body (and its gzip form) of key for v.
func (s *Server) bodyLocked(key string, st *keyState, v keys.Version, wrongVersion bool) ([]byte, []byte) {
	if wrongVersion {
		v = map[keys.Version]keys.Version{keys.V1: keys.V2, keys.V2: keys.V1}[v]
	}
	if st.bodies == nil || st.bodyLcut != st.project.Lcut {
		st.bodies, st.gzipped, st.bodyLcut = map[keys.Version][]byte{}, map[keys.Version][]byte{}, st.project.Lcut
	}
	if b, ok := st.bodies[v]; ok {
		return b, st.gzipped[v]
	}
	k := keys.MustParse(key)
	b := V1Body(k, st.project)
	if v == keys.V2 {
		b = V2Body(k, st.project)
	}
	st.bodies[v] = b
	if !s.noGzip {
		st.gzipped[v] = gzipBytes(b)
	}
	return b, st.gzipped[v]
}

func (s *Server) faultyBody(key string, v keys.Version, lcut int64, body []byte, f Fault) []byte {
	k := keys.MustParse(key)
	s.mu.Lock()
	p := s.keys[key].project
	s.mu.Unlock()
	switch {
	case f.InvalidJSON:
		return append(append([]byte(nil), body[:len(body)-1]...), []byte(`,"oops":}`)...)
	case f.OlderTime:
		p.Lcut = lcut - 1000
		p.Value--
	case f.FutureTime:
		p.Lcut = lcut // already FutureOffset ahead
	case f.WrongHashedKey:
		k = keys.MustParse("secret-someone-elses-key")
	}
	out := V1Body(k, p)
	if v == keys.V2 {
		out = V2Body(k, p)
	}
	if f.WrongHashedKey {
		// The payload of the other key, under this key's lcut.
		out = bytes.Replace(out, []byte(fmt.Sprintf(`"time":%d`, p.Lcut)), []byte(fmt.Sprintf(`"time":%d`, lcut)), 1)
	}
	if f.Pad > 0 {
		out = append(out[:len(out)-1], append(bytes.Repeat([]byte(" "), f.Pad), '}')...)
	}
	return out
}

func (s *Server) count(kind string) {
	s.mu.Lock()
	s.counts[kind]++
	s.mu.Unlock()
}

func parsePath(p string) (keys.Version, string, bool) {
	for _, v := range []keys.Version{keys.V1, keys.V2} {
		prefix := v.DCSPath() + "/"
		if strings.HasPrefix(p, prefix) && strings.HasSuffix(p, ".json") {
			key := strings.TrimSuffix(strings.TrimPrefix(p, prefix), ".json")
			if key != "" && !strings.Contains(key, "/") {
				return v, key, true
			}
		}
	}
	return "", "", false
}

func writeError(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"message":%q,"status":%d}`, http.StatusText(status), status)
}

func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// extraHeaders applies a Fault's Header just before the answer's header is
// sent, so that they win over the fake's own.
type extraHeaders struct {
	http.ResponseWriter
	h    map[string]string
	done bool
}

func (w *extraHeaders) apply() {
	if w.done {
		return
	}
	w.done = true
	for k, v := range w.h {
		if v == "" {
			// nil rather than Del: net/http then sends no such header at
			// all, not even a sniffed Content-Type.
			w.ResponseWriter.Header()[http.CanonicalHeaderKey(k)] = nil
		} else {
			w.ResponseWriter.Header().Set(k, v)
		}
	}
}

func (w *extraHeaders) WriteHeader(code int) { w.apply(); w.ResponseWriter.WriteHeader(code) }

func (w *extraHeaders) Write(b []byte) (int, error) { w.apply(); return w.ResponseWriter.Write(b) }

func (w *extraHeaders) Flush() {
	w.apply()
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (w *extraHeaders) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if hj, ok := w.ResponseWriter.(http.Hijacker); ok {
		return hj.Hijack()
	}
	return nil, nil, http.ErrNotSupported
}

func (w *extraHeaders) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}
