package fakecdn

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// ID lists. The fake serves, per key, the manifest
//
//	GET /v1/get_id_lists/{key}.json  → {"name": {"name","size","url","creationTime","fileID"}, …}
//
// and each list file at GET /id_list_files/{fileID}, honouring Range as a CDN
// does (206 with Content-Range; 416 beyond the end). A list file is
// append-only for one fileID; recreating it gives a new fileID and drops the
// old file (its URL answers 404 from then on).

// IDListManifestPath is the manifest endpoint's prefix; the key and ".json"
// follow.
const IDListManifestPath = "/v1/get_id_lists/"

// IDListFilePath is the prefix of every list file's URL; the fileID follows.
const IDListFilePath = "/id_list_files/"

// IDListFault makes the ID-list endpoints misbehave for a key (or for every
// key, set with "*"). The zero value is a well-behaved CDN.
type IDListFault struct {
	// ManifestStatus answers the manifest with this status and a JSON error.
	ManifestStatus int
	// ManifestBody, when not nil, is the manifest answer, byte for byte (200).
	ManifestBody []byte
	// FileStatus answers every list file download with this status.
	FileStatus int
	// FileBadSeek serves a range answer starting one byte before the one
	// asked for (labelled as asked): the chunk's first byte is a '\n'.
	FileBadSeek bool
	// FileShort announces the whole range but sends only half of it, then
	// closes the connection.
	FileShort bool
	// FileNoRange ignores Range and answers 200 with the whole file.
	FileNoRange bool
	// ShrinkSize makes the manifest announce every list ShrinkSize bytes
	// shorter than it is (same fileID): a size that went backwards.
	ShrinkSize int64
}

// idList is one list of a key.
type idList struct {
	fileID       string
	creationTime int64
}

// idFile is one incarnation of a list file.
type idFile struct {
	content []byte
}

// IDListEntry is what the manifest says of a list.
type IDListEntry struct {
	Name         string `json:"name"`
	Size         int64  `json:"size"`
	URL          string `json:"url"`
	CreationTime int64  `json:"creationTime"`
	FileID       string `json:"fileID"`
}

// PutIDList makes k's list name hold content under fileID and creationTime,
// replacing whatever the list was. The key must be known (SetProject).
func (s *Server) PutIDList(k keys.SDKKey, name, fileID string, creationTime int64, content []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mustKeyLocked(k)
	if old, ok := st.idLists[name]; ok && old.fileID != fileID {
		delete(s.idFiles, old.fileID)
	}
	if st.idLists == nil {
		st.idLists = map[string]*idList{}
	}
	st.idLists[name] = &idList{fileID: fileID, creationTime: creationTime}
	s.idFiles[fileID] = &idFile{content: append([]byte(nil), content...)}
}

// AppendIDList appends more to k's list name (same fileID), as Statsig does
// when IDs are added to or removed from a list.
func (s *Server) AppendIDList(k keys.SDKKey, name string, more []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.mustKeyLocked(k).idLists[name]
	if l == nil {
		panic("fakecdn: AppendIDList of an unknown list " + name)
	}
	f := s.idFiles[l.fileID]
	f.content = append(f.content, more...)
}

// RecreateIDList replaces k's list name by a new file holding content, with a
// new fileID and a creationTime one second after the old one (or now, if
// later); the old file's URL answers 404 from then on. It returns the new
// fileID.
func (s *Server) RecreateIDList(k keys.SDKKey, name string, content []byte) string {
	s.mu.Lock()
	st := s.mustKeyLocked(k)
	created := time.Now().UnixMilli()
	if l := st.idLists[name]; l != nil && l.creationTime+1000 > created {
		created = l.creationTime + 1000
	}
	s.idSeq++
	fileID := fmt.Sprintf("file%d-%d", s.idSeq, created)
	s.mu.Unlock()
	s.PutIDList(k, name, fileID, created, content)
	return fileID
}

// RemoveIDList takes k's list name out of the manifest and deletes its file.
func (s *Server) RemoveIDList(k keys.SDKKey, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mustKeyLocked(k)
	if l := st.idLists[name]; l != nil {
		delete(s.idFiles, l.fileID)
		delete(st.idLists, name)
	}
}

// IDList returns k's list name as the manifest announces it (URL relative to
// the fake's root) and its content; ok is false when there is no such list.
func (s *Server) IDList(k keys.SDKKey, name string) (e IDListEntry, content []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.keys[k.Reveal()]
	if st == nil || st.idLists[name] == nil {
		return IDListEntry{}, nil, false
	}
	l := st.idLists[name]
	f := s.idFiles[l.fileID]
	return IDListEntry{Name: name, Size: int64(len(f.content)), URL: IDListFilePath + l.fileID,
		CreationTime: l.creationTime, FileID: l.fileID}, append([]byte(nil), f.content...), true
}

// SetIDListFault sets the ID-list fault for k ("*" faults every key when k is
// the zero SDKKey).
func (s *Server) SetIDListFault(k keys.SDKKey, f IDListFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idFaults[faultKey(k)] = f
}

// ClearIDListFaults removes every ID-list fault.
func (s *Server) ClearIDListFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idFaults = map[string]IDListFault{}
}

func (s *Server) mustKeyLocked(k keys.SDKKey) *keyState {
	st := s.keys[k.Reveal()]
	if st == nil {
		panic("fakecdn: ID list for a key without a project; call SetProject first")
	}
	return st
}

func (s *Server) idFaultLocked(key string) IDListFault {
	if f, ok := s.idFaults[key]; ok {
		return f
	}
	return s.idFaults["*"]
}

// serveIDLists answers the ID-list endpoints; it reports false for any other
// path.
func (s *Server) serveIDLists(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case strings.HasPrefix(r.URL.Path, IDListManifestPath):
		key := strings.TrimPrefix(r.URL.Path, IDListManifestPath)
		if !strings.HasSuffix(key, ".json") || strings.Contains(key, "/") {
			http.NotFound(w, r)
			return true
		}
		s.serveManifest(w, r, strings.TrimSuffix(key, ".json"))
		return true
	case strings.HasPrefix(r.URL.Path, IDListFilePath):
		s.serveIDFile(w, r, strings.TrimPrefix(r.URL.Path, IDListFilePath))
		return true
	}
	return false
}

func (s *Server) logLocked(r *http.Request, key string) {
	if len(s.log) < s.logLimit {
		s.log = append(s.log, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(),
			Key: key, SinceTime: -1, At: time.Now()})
	}
}

func (s *Server) serveManifest(w http.ResponseWriter, r *http.Request, key string) {
	s.mu.Lock()
	s.logLocked(r, key)
	st := s.keys[key]
	f := s.idFaultLocked(key)
	var revoked int
	entries := map[string]IDListEntry{}
	if st != nil {
		revoked = st.revoked
		base := "http://" + r.Host
		for name, l := range st.idLists {
			size := int64(len(s.idFiles[l.fileID].content)) - f.ShrinkSize
			if size < 0 {
				size = 0
			}
			entries[name] = IDListEntry{Name: name, Size: size, URL: base + IDListFilePath + l.fileID,
				CreationTime: l.creationTime, FileID: l.fileID}
		}
	}
	s.mu.Unlock()
	switch {
	case r.Method != http.MethodGet:
		http.NotFound(w, r)
	case f.ManifestBody != nil:
		s.count("id_lists_fault")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(f.ManifestBody)
	case f.ManifestStatus != 0:
		s.count("id_lists_fault")
		writeError(w, f.ManifestStatus)
	case st == nil:
		s.count("id_lists_unknown")
		writeError(w, http.StatusUnauthorized)
	case revoked != 0:
		s.count("id_lists_unauthorized")
		writeError(w, revoked)
	default:
		s.count("id_lists")
		body, _ := json.Marshal(entries)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			gz := gzipBytes(body)
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Length", strconv.Itoa(len(gz)))
			_, _ = w.Write(gz)
			return
		}
		_, _ = w.Write(body)
	}
}

func (s *Server) serveIDFile(w http.ResponseWriter, r *http.Request, fileID string) {
	s.mu.Lock()
	s.logLocked(r, "")
	var content []byte
	file := s.idFiles[fileID]
	if file != nil {
		content = append([]byte(nil), file.content...)
	}
	// A file's faults are its key's.
	var f IDListFault
	for key, st := range s.keys {
		for _, l := range st.idLists {
			if l.fileID == fileID {
				f = s.idFaultLocked(key)
			}
		}
	}
	if file == nil {
		f = s.idFaults["*"]
	}
	s.mu.Unlock()
	switch {
	case r.Method != http.MethodGet:
		http.NotFound(w, r)
		return
	case f.FileStatus != 0:
		s.count("id_list_file_fault")
		writeError(w, f.FileStatus)
		return
	case file == nil:
		s.count("id_list_file_missing")
		http.NotFound(w, r)
		return
	}
	s.count("id_list_file")
	w.Header().Set("Content-Type", "text/plain")
	first, ok := rangeStart(r.Header.Get("Range"))
	switch {
	case f.FileNoRange || !ok:
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		_, _ = w.Write(content)
	case first >= int64(len(content)):
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(content)))
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
	default:
		from := first
		if f.FileBadSeek && from > 0 {
			from--
		}
		part := content[from:]
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, first+int64(len(part))-1, len(content)))
		w.Header().Set("Content-Length", strconv.Itoa(len(part)))
		w.WriteHeader(http.StatusPartialContent)
		if f.FileShort {
			_, _ = w.Write(part[:len(part)/2])
			if fl, ok := w.(http.Flusher); ok {
				fl.Flush()
			}
			hijackClose(w)
			return
		}
		_, _ = w.Write(part)
	}
}

// rangeStart reads "bytes=N-" (the only form the worker sends); ok is false
// for anything else, which is then answered with the whole file.
func rangeStart(h string) (int64, bool) {
	rest, found := strings.CutPrefix(h, "bytes=")
	if !found {
		return 0, false
	}
	num, found := strings.CutSuffix(rest, "-")
	if !found {
		return 0, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	return n, err == nil && n >= 0
}

// SampleIDList is a list file of n lines "+<8 chars>\n" (10 bytes each),
// deterministic for seed: the shape of a real list.
func SampleIDList(seed, n int) []byte {
	var b bytes.Buffer
	b.Grow(n * 10)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	x := uint64(seed)*0x9E3779B97F4A7C15 + 1
	for i := 0; i < n; i++ {
		b.WriteByte('+')
		for j := 0; j < 8; j++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			b.WriteByte(alphabet[x%64])
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}
