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
	"io"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// WriterOptions describe the archive being written.
type WriterOptions struct {
	// CreatedAt is recorded in the manifest and as every member's mtime
	// (zero: now).
	CreatedAt     time.Time
	WorkerVersion string
	Source        string
}

// Writer streams an archive. Members are written as they are added; the
// manifest is written by Close. A Writer is not safe for concurrent use.
type Writer struct {
	gz      *gzip.Writer
	tw      *tar.Writer
	m       Manifest
	seen    map[string]bool
	err     error // sticky: a failed write leaves a tar that must not be finished
	modTime time.Time
}

// NewWriter starts an archive on w. Nothing is written until the first
// member; Close must be called to finish it.
func NewWriter(w io.Writer, o WriterOptions) *Writer {
	created := o.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	created = created.UTC().Truncate(time.Second)
	gz, _ := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	return &Writer{
		gz:      gz,
		tw:      tar.NewWriter(gz),
		m:       Manifest{Format: Format, CreatedAt: created, WorkerVersion: o.WorkerVersion, Source: o.Source, Members: []Member{}},
		seen:    map[string]bool{},
		modTime: created,
	}
}

// AddPayload adds k's payload of version v (its id from KeyID) with its lcut.
// The caller validates it first; body is not kept.
func (w *Writer) AddPayload(id string, v keys.Version, body []byte, lcut int64) error {
	if v != keys.V1 && v != keys.V2 {
		return fmt.Errorf("unknown version %q", v)
	}
	return w.add(Member{Path: PayloadPath(id, v), Kind: KindPayload, Lcut: lcut}, int64(len(body)), bytesReader(body))
}

// AddIDList adds one ID list, streaming exactly size bytes from r: the list
// is never held in memory. Add a key's lists before its manifest.
func (w *Writer) AddIDList(id, name, fileID string, size int64, r io.Reader) error {
	if fileID == "" {
		return fmt.Errorf("ID list %q: empty fileID", name)
	}
	return w.add(Member{Path: IDListPath(id, name), Kind: KindIDList, FileID: fileID}, size, r)
}

// AddIDListManifest adds a key's ID-list manifest (the JSON the SDKs read)
// and its change marker.
func (w *Writer) AddIDListManifest(id string, manifestJSON []byte, marker int64) error {
	return w.add(Member{Path: IDListManifestPath(id), Kind: KindIDListManifest, Marker: marker}, int64(len(manifestJSON)), bytesReader(manifestJSON))
}

func (w *Writer) add(m Member, size int64, r io.Reader) error {
	if w.err != nil {
		return w.err
	}
	if _, err := parsePath(m.Path); err != nil {
		return err
	}
	if w.seen[m.Path] {
		return fmt.Errorf("member %q added twice", m.Path)
	}
	w.seen[m.Path] = true
	if err := w.tw.WriteHeader(w.header(m.Path, size)); err != nil {
		w.err = err
		return err
	}
	h := sha256.New()
	n, err := io.Copy(w.tw, io.TeeReader(io.LimitReader(r, size), h))
	if err == nil && n != size {
		err = fmt.Errorf("member %q: %d bytes announced, %d read", m.Path, size, n)
	}
	if err != nil {
		w.err = err
		return err
	}
	m.Size, m.SHA256 = size, hex.EncodeToString(h.Sum(nil))
	w.m.Members = append(w.m.Members, m)
	return nil
}

// header is a plain file's header: fixed owner and mode, so that two exports
// of the same content differ only in the creation time.
func (w *Writer) header(name string, size int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: w.modTime}
}

// Members is how many members have been added.
func (w *Writer) Members() int { return len(w.m.Members) }

// Close writes the manifest and finishes the tar and gzip streams. It does
// not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	b, err := json.MarshalIndent(w.m, "", " ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := w.tw.WriteHeader(w.header(ManifestPath, int64(len(b)))); err != nil {
		return err
	}
	if _, err := w.tw.Write(b); err != nil {
		return err
	}
	w.err = errors.New("snapshot writer closed")
	if err := w.tw.Close(); err != nil {
		return err
	}
	return w.gz.Close()
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
