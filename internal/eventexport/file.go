package eventexport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// FileSink appends records to a file as JSON lines (signer.ExportLine),
// each batch written and synced before it counts as delivered. The file
// is only appended to: a line cut short by a crash is completed with a
// line feed when the file is opened again (a reader skips it; the record
// is written again whole), and records the file already ends with are
// not written twice.
type FileSink struct {
	path    string
	f       *os.File
	settled map[string]uint64
	last    map[string]uint64 // newest record of each tenant in the file
}

// tailScan is how much of the file's end is read at open to learn the
// newest record of each tenant it holds.
const tailScan = 4 << 20

// NewFileSink opens (or creates) the file at path.
func NewFileSink(path string) (*FileSink, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	s := &FileSink{path: path, settled: map[string]uint64{}, last: map[string]uint64{}}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if size := fi.Size(); size > 0 {
		off := max(size-tailScan, 0)
		buf := make([]byte, size-off)
		if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
			f.Close()
			return err
		}
		if buf[len(buf)-1] != '\n' {
			// A line cut short by a crash: end it, so the next record
			// starts on a line of its own.
			if _, err := f.Write([]byte("\n")); err != nil {
				f.Close()
				return err
			}
			buf = append(buf, '\n')
		}
		sc := bufio.NewScanner(bytes.NewReader(buf))
		sc.Buffer(make([]byte, 64<<10), tailScan)
		for sc.Scan() {
			var ev struct {
				Tenant string `json:"tenant"`
				Seq    uint64 `json:"seq"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Tenant != "" && ev.Seq > s.last[ev.Tenant] {
				s.last[ev.Tenant] = ev.Seq
			}
		}
	}
	s.f = f
	return nil
}

// Send appends evs and syncs the file.
func (s *FileSink) Send(_ context.Context, evs []store.Event) (int, error) {
	if s.f == nil {
		if err := s.open(); err != nil {
			return 0, err
		}
	}
	var buf bytes.Buffer
	for _, ev := range evs {
		if ev.Seq <= s.last[ev.Tenant] {
			continue // already in the file (written before a crash)
		}
		line, err := signer.ExportLine(ev)
		if err != nil {
			return 0, err
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if buf.Len() > 0 {
		if _, err := s.f.Write(buf.Bytes()); err != nil {
			s.f.Close()
			s.f = nil
			return 0, fmt.Errorf("write %s: %w", s.path, err)
		}
		if err := s.f.Sync(); err != nil {
			s.f.Close()
			s.f = nil
			return 0, fmt.Errorf("sync %s: %w", s.path, err)
		}
	}
	last := evs[len(evs)-1]
	if last.Seq > s.last[last.Tenant] {
		s.last[last.Tenant] = last.Seq
	}
	s.settled[last.Tenant] = last.Seq
	return len(evs), nil
}

// Settled returns what was written and synced.
func (s *FileSink) Settled(time.Time) (map[string]uint64, error) {
	out := s.settled
	s.settled = map[string]uint64{}
	return out, nil
}

// Reset does nothing: a synced record is delivered.
func (s *FileSink) Reset() {}

// Close closes the file.
func (s *FileSink) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
