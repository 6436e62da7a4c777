package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Limits bound what a reader accepts.
type Limits struct {
	// MaxMemberBytes refuses a payload, list or ID-list manifest larger than
	// this (MAX_PAYLOAD_BYTES); <= 0 means 256 MiB.
	MaxMemberBytes int64
	// MaxManifestBytes bounds snapshot.json; <= 0 means
	// DefaultMaxManifestBytes.
	MaxManifestBytes int64
	// MaxMembers bounds the member count; <= 0 means DefaultMaxMembers.
	MaxMembers int
	// Now and MaxClockSkew refuse a payload dated more than MaxClockSkew
	// ahead of Now, as the worker does (it would pin the key). A zero Now
	// skips the check.
	Now          time.Time
	MaxClockSkew time.Duration
	// Key maps a key id to the SDK key, when the reader knows it (the
	// configured keys): a payload of a known key must carry that key's
	// hashed_sdk_key_used (when it carries one at all). A payload of an
	// unknown key is checked for everything else.
	Key func(id string) (keys.SDKKey, bool)
}

func (l Limits) maxMember() int64 {
	if l.MaxMemberBytes <= 0 {
		return 256 << 20
	}
	return l.MaxMemberBytes
}

// MemberError is a member that failed verification: Path names it (cut to
// 160 bytes), Err says why. Path is "" for a failure of the archive as a
// whole (not gzip, no manifest).
type MemberError struct {
	Path string
	Err  error
}

func (e *MemberError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("member %q: %v", e.Path, e.Err)
}

func (e *MemberError) Unwrap() error { return e.Err }

func fail(path string, format string, args ...any) error {
	return &MemberError{Path: cut(path), Err: fmt.Errorf(format, args...)}
}

// Key is one SDK key's content in a verified archive.
type Key struct {
	ID       string
	Payloads map[keys.Version]Member
	// IDListManifest is nil when the archive holds no ID lists for the key.
	IDListManifest *Member
	// Lists are the ID lists, by name.
	Lists map[string]Member
}

// Verified is an archive whose every member was read, digested and validated.
type Verified struct {
	Manifest Manifest
	// Keys by id, and their ids sorted.
	Keys map[string]*Key
	IDs  []string
	// Bytes is the sum of the members' sizes.
	Bytes  int64
	byPath map[string]Member
}

// observed is what the verification pass saw of one member.
type observed struct {
	p      parsed
	size   int64
	sha    string
	time   int64                    // a payload's time
	hashed string                   // a payload's hashed_sdk_key_used, "" when none
	lists  map[string]idlists.Entry // an ID-list manifest's entries
}

// Verify reads the whole archive once: every member's digest, every payload
// with the worker's own rules (fetcher.Validate: JSON, has_updates, time,
// hashed_sdk_key_used, shape; the clock skew), every ID list (non-empty
// "+id"/"-id" lines) and ID-list manifest (idlists.ParseManifest, no entry
// refused, each list present with the announced size and fileID), and the
// manifest against all of them. It holds one payload at a time. Nothing is
// trusted until it returns nil; the error is a *MemberError naming the member
// that failed.
func Verify(r io.Reader, l Limits) (*Verified, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, &MemberError{Err: fmt.Errorf("not a gzip stream: %w", err)}
	}
	// One gzip member only: anything appended to the archive is refused
	// below rather than read as more tar.
	gz.Multistream(false)
	tr := tar.NewReader(gz)
	maxMembers := l.MaxMembers
	if maxMembers <= 0 {
		maxMembers = DefaultMaxMembers
	}
	maxManifest := l.MaxManifestBytes
	if maxManifest <= 0 {
		maxManifest = DefaultMaxManifestBytes
	}
	seen := map[string]*observed{}
	var (
		manifest *Manifest
		buf      bytes.Buffer // the one payload in memory, reused
		last     string
	)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fail(after(last), "the archive is damaged or truncated: %v", err)
		}
		name := hdr.Name
		last = name
		if manifest != nil {
			return nil, fail(name, "a member after %s: the manifest must be last", ManifestPath)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fail(name, "not a regular file (tar type %q)", hdr.Typeflag)
		}
		if seen[name] != nil {
			return nil, fail(name, "duplicate member")
		}
		if len(seen) >= maxMembers {
			return nil, fail(name, "more than %d members", maxMembers)
		}
		p, err := parsePath(name)
		if err != nil {
			return nil, &MemberError{Err: err}
		}
		if hdr.Size < 0 {
			return nil, fail(name, "negative size")
		}
		if name == ManifestPath {
			if hdr.Size > maxManifest {
				return nil, fail(name, "%d bytes, more than the limit of %d", hdr.Size, maxManifest)
			}
			b, err := readExactly(tr, hdr.Size, &buf)
			if err != nil {
				return nil, fail(name, "%v", err)
			}
			m, err := parseManifest(b)
			if err != nil {
				return nil, fail(name, "%v", err)
			}
			manifest = &m
			continue
		}
		if hdr.Size > l.maxMember() {
			return nil, fail(name, "%d bytes, more than MAX_PAYLOAD_BYTES (%d)", hdr.Size, l.maxMember())
		}
		o := &observed{p: p, size: hdr.Size}
		switch p.kind {
		case KindIDList:
			h := sha256.New()
			if err := checkList(io.TeeReader(tr, h), hdr.Size); err != nil {
				return nil, fail(name, "%v", err)
			}
			o.sha = hex.EncodeToString(h.Sum(nil))
		default:
			b, err := readExactly(tr, hdr.Size, &buf)
			if err != nil {
				return nil, fail(name, "%v", err)
			}
			sum := sha256.Sum256(b)
			o.sha = hex.EncodeToString(sum[:])
			if p.kind == KindPayload {
				err = checkPayload(o, b, l)
			} else {
				err = checkIDManifest(o, b, l.maxMember())
			}
			if err != nil {
				return nil, fail(name, "%v", err)
			}
		}
		seen[name] = o
	}
	// The gzip trailer (CRC-32 and length) is checked only when the stream
	// is read to its end: read what little follows the tar's end marker.
	if n, err := io.Copy(io.Discard, io.LimitReader(gz, 1<<20)); err != nil {
		return nil, fail(after(last), "the archive is damaged or truncated: %v", err)
	} else if n >= 1<<20 {
		return nil, &MemberError{Err: errors.New("more than 1 MiB of data after the end of the tar")}
	}
	if manifest == nil {
		return nil, fail(ManifestPath, "missing: the archive is truncated or not a populator snapshot")
	}
	return match(manifest, seen)
}

// after names where a read failed: in or after the last member read.
func after(last string) string {
	if last == "" {
		return "(first member)"
	}
	return last
}

// readExactly reads n bytes into buf (reset) and returns them.
func readExactly(r io.Reader, n int64, buf *bytes.Buffer) ([]byte, error) {
	buf.Reset()
	buf.Grow(int(n))
	got, err := io.Copy(buf, io.LimitReader(r, n))
	if err != nil {
		return nil, fmt.Errorf("the archive is damaged or truncated: %w", err)
	}
	if got != n {
		return nil, fmt.Errorf("truncated: %d of %d bytes", got, n)
	}
	return buf.Bytes(), nil
}

func parseManifest(b []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("not a valid manifest: %v", err)
	}
	if dec.More() {
		return Manifest{}, errors.New("not a valid manifest: data after the JSON object")
	}
	if m.Format != Format {
		return Manifest{}, fmt.Errorf("format %d, this populator reads format %d", m.Format, Format)
	}
	return m, nil
}

// checkPayload validates a payload as the worker validates what it fetches.
func checkPayload(o *observed, b []byte, l Limits) error {
	hashed, known := "", false
	if l.Key != nil {
		if k, ok := l.Key(o.p.id); ok {
			hashed, known = k.HashedSDKKeyUsed(), true
		}
	}
	if !known {
		// The key is not known here: accept whatever djb2 the payload
		// names, and check everything else.
		var top struct {
			H *string `json:"hashed_sdk_key_used"`
		}
		if err := json.Unmarshal(b, &top); err == nil && top.H != nil {
			hashed = *top.H
		}
	}
	meta, err := fetcher.Validate(b, o.p.version, hashed)
	if err != nil {
		return err
	}
	if !l.Now.IsZero() {
		if err := fetcher.CheckTime(meta.Time, l.Now, l.MaxClockSkew); err != nil {
			return err
		}
	}
	o.time, o.hashed = meta.Time, hashed
	return nil
}

// checkIDManifest parses an ID-list manifest as the worker parses the CDN's,
// and refuses one with a single unusable entry: the worker never stores one.
func checkIDManifest(o *observed, b []byte, max int64) error {
	m, err := idlists.ParseManifest(b, max)
	if err != nil {
		return err
	}
	if len(m.Refused) > 0 {
		r := m.Refused[0]
		return fmt.Errorf("ID list %q refused: %s %s", r.Name, r.Reason, r.Detail)
	}
	o.lists = m.Entries
	return nil
}

// checkList streams one list (exactly size bytes) and checks that it is
// non-empty "+id\n" / "-id\n" lines, as the SDKs parse it and the worker
// stores it. Nothing is kept.
func checkList(r io.Reader, size int64) error {
	if size == 0 {
		return errors.New("an empty ID list (the worker never stores one)")
	}
	var (
		chunk   [32 << 10]byte
		read    int64
		lineLen int64 // bytes of the current line so far
	)
	for read < size {
		n, err := r.Read(chunk[:min(int64(len(chunk)), size-read)])
		for _, c := range chunk[:n] {
			switch {
			case lineLen == 0 && c != '+' && c != '-':
				return fmt.Errorf("line at byte %d does not start with + or -", read)
			case c == '\n' && lineLen < 2:
				return fmt.Errorf("an empty id at byte %d", read)
			case c == '\n':
				lineLen = 0
			default:
				lineLen++
			}
			read++
		}
		if err == io.EOF && read < size {
			return fmt.Errorf("truncated: %d of %d bytes", read, size)
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("the archive is damaged or truncated: %w", err)
		}
	}
	if lineLen != 0 {
		return errors.New("the last line has no trailing newline")
	}
	return nil
}

// match checks the manifest against what was read: the same members, sizes
// and digests, payload lcuts equal to their time, ID lists equal to what
// their key's ID-list manifest announces.
func match(m *Manifest, seen map[string]*observed) (*Verified, error) {
	v := &Verified{Manifest: *m, Keys: map[string]*Key{}, byPath: map[string]Member{}}
	for _, mem := range m.Members {
		if _, dup := v.byPath[mem.Path]; dup {
			return nil, fail(ManifestPath, "lists %q twice", cut(mem.Path))
		}
		o := seen[mem.Path]
		if o == nil {
			if _, err := parsePath(mem.Path); err != nil {
				return nil, fail(ManifestPath, "%v", err)
			}
			return nil, fail(mem.Path, "listed in %s but not in the archive", ManifestPath)
		}
		if mem.Kind != o.p.kind {
			return nil, fail(mem.Path, "kind %q in the manifest, %q by its path", mem.Kind, o.p.kind)
		}
		if mem.Size != o.size {
			return nil, fail(mem.Path, "%d bytes in the archive, %d in the manifest", o.size, mem.Size)
		}
		if mem.SHA256 != o.sha {
			return nil, fail(mem.Path, "SHA-256 %s does not match the manifest's %s", o.sha, cut(mem.SHA256))
		}
		k := v.Keys[o.p.id]
		if k == nil {
			k = &Key{ID: o.p.id, Payloads: map[keys.Version]Member{}, Lists: map[string]Member{}}
			v.Keys[o.p.id] = k
		}
		switch o.p.kind {
		case KindPayload:
			if mem.Lcut != o.time {
				return nil, fail(mem.Path, "lcut %d in the manifest, but the payload's time is %d", mem.Lcut, o.time)
			}
			k.Payloads[o.p.version] = mem
		case KindIDList:
			if mem.FileID == "" {
				return nil, fail(mem.Path, "no fileID in the manifest")
			}
			k.Lists[o.p.name] = mem
		case KindIDListManifest:
			if mem.Marker <= 0 {
				return nil, fail(mem.Path, "no marker in the manifest")
			}
			mm := mem
			k.IDListManifest = &mm
		}
		v.byPath[mem.Path] = mem
		v.Bytes += mem.Size
	}
	for path := range seen {
		if _, ok := v.byPath[path]; !ok {
			return nil, fail(path, "not listed in %s", ManifestPath)
		}
	}
	for id, k := range v.Keys {
		var announced map[string]idlists.Entry
		if k.IDListManifest != nil {
			announced = seen[k.IDListManifest.Path].lists
		}
		for name, mem := range k.Lists {
			e, ok := announced[name]
			switch {
			case !ok:
				return nil, fail(mem.Path, "not announced by %s", IDListManifestPath(id))
			case e.Size != mem.Size:
				return nil, fail(mem.Path, "%d bytes, %s announces %d", mem.Size, IDListManifestPath(id), e.Size)
			case e.FileID != mem.FileID:
				return nil, fail(mem.Path, "fileID differs from the one %s announces", IDListManifestPath(id))
			}
		}
		for name := range announced {
			if _, ok := k.Lists[name]; !ok {
				return nil, fail(IDListPath(id, name), "announced by %s but not in the archive", IDListManifestPath(id))
			}
		}
		v.IDs = append(v.IDs, id)
	}
	sort.Strings(v.IDs)
	return v, nil
}

// Item is one member handed over by Walk, already checked against the
// verified archive.
type Item struct {
	Member
	KeyID   string
	Version keys.Version // payloads
	Name    string       // ID lists
	// Body holds a payload or an ID-list manifest; valid only during the
	// callback.
	Body []byte
	// List streams an ID list. It returns io.EOF only after the list's
	// last byte has matched the verified digest, and an error instead when
	// it does not: commit what was staged only after reading io.EOF.
	List io.Reader
}

// Walk reads the archive again (the same bytes Verify read, typically the
// same file from its start) and calls fn for every member but the manifest,
// in archive order: for each key its payloads, then its lists, then its
// ID-list manifest. Every member is checked against v before fn sees it (a
// payload or manifest whole, a list as it streams): an archive that changed
// since Verify stops the walk at the first member that differs, with a
// *MemberError. fn's error stops the walk too and is returned as it is.
func Walk(r io.Reader, v *Verified, fn func(Item) error) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return &MemberError{Err: fmt.Errorf("not a gzip stream: %w", err)}
	}
	gz.Multistream(false)
	tr := tar.NewReader(gz)
	var buf bytes.Buffer
	done := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return &MemberError{Err: fmt.Errorf("the archive is damaged or truncated: %w", err)}
		}
		if hdr.Name == ManifestPath {
			continue
		}
		mem, ok := v.byPath[hdr.Name]
		if !ok || hdr.Size != mem.Size || hdr.Typeflag != tar.TypeReg {
			return fail(hdr.Name, "changed since it was verified")
		}
		p, _ := parsePath(hdr.Name)
		it := Item{Member: mem, KeyID: p.id, Version: p.version, Name: p.name}
		if p.kind == KindIDList {
			lr := &listReader{r: io.LimitReader(tr, mem.Size), h: sha256.New(), want: mem.SHA256, path: mem.Path}
			it.List = lr
			if err := fn(it); err != nil {
				return err
			}
			// Whatever fn left unread is read here, so that the tar
			// moves on; its digest no longer matters.
		} else {
			b, err := readExactly(tr, mem.Size, &buf)
			if err != nil {
				return fail(hdr.Name, "%v", err)
			}
			sum := sha256.Sum256(b)
			if hex.EncodeToString(sum[:]) != mem.SHA256 {
				return fail(hdr.Name, "changed since it was verified")
			}
			it.Body = b
			if err := fn(it); err != nil {
				return err
			}
		}
		done++
	}
	if done != len(v.byPath) {
		return &MemberError{Err: fmt.Errorf("the archive changed since it was verified: %d of %d members read", done, len(v.byPath))}
	}
	return nil
}

// listReader streams an ID list and withholds io.EOF until the digest matched.
type listReader struct {
	r    io.Reader
	h    hash.Hash
	want string
	path string
	err  error
}

func (l *listReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	l.h.Write(p[:n])
	if err == io.EOF {
		if hex.EncodeToString(l.h.Sum(nil)) != l.want {
			l.err = fail(l.path, "changed since it was verified")
			return n, l.err
		}
		l.err = io.EOF
	} else if err != nil {
		l.err = fail(l.path, "the archive is damaged or truncated: %v", err)
		return n, l.err
	}
	return n, err
}
