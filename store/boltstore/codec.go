package boltstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hsmca/hsmca/store"
)

// Records are kept in a compact binary form: reading a record is on the
// path of nearly every request (the API token, the key or CA, the
// certificate shown), and decoding the JSON envelope cost more than the
// bolt lookup itself, since encoding/json scans the whole document, the
// record's own JSON data included, before decoding it. The data stays the
// engine's JSON, stored as given.
//
// Layout: the format byte, then uvarint-length-prefixed strings and
// uvarint numbers: kind, tenant, id, the unique keys (count, then each),
// the fields (count, then key and value, keys sorted), seq, version,
// created and updated (Unix nanoseconds, zigzag varints), then the data.
// Records written before this form are JSON, which starts with '{'; both
// are read.
const recordFormat1 = 0x01

var errCorrupt = errors.New("bolt store: corrupt record")

// encodeRecord never fails; the error keeps the shape of json.Marshal.
func encodeRecord(r *store.Record) ([]byte, error) {
	n := 64 + len(r.Kind) + len(r.Tenant) + len(r.ID) + len(r.Data)
	for _, u := range r.Unique {
		n += len(u) + 2
	}
	for k, v := range r.Fields {
		n += len(k) + len(v) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, recordFormat1)
	b = appendString(b, r.Kind)
	b = appendString(b, r.Tenant)
	b = appendString(b, r.ID)
	b = binary.AppendUvarint(b, uint64(len(r.Unique)))
	for _, u := range r.Unique {
		b = appendString(b, u)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Fields)))
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, r.Fields[k])
	}
	b = binary.AppendUvarint(b, r.Seq)
	b = binary.AppendUvarint(b, r.Version)
	b = binary.AppendVarint(b, timeNanos(r.Created))
	b = binary.AppendVarint(b, timeNanos(r.Updated))
	return appendString(b, string(r.Data)), nil
}

func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeRecord reads a stored record in either form.
func decodeRecord(b []byte) (*store.Record, error) {
	if len(b) > 0 && b[0] == '{' {
		var r store.Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%w: %w", errCorrupt, err)
		}
		return &r, nil
	}
	if len(b) == 0 || b[0] != recordFormat1 {
		return nil, fmt.Errorf("%w: unknown format", errCorrupt)
	}
	d := decoder{b: b[1:]}
	r := &store.Record{Kind: d.str(), Tenant: d.str(), ID: d.str()}
	if n := d.count(); n > 0 {
		r.Unique = make([]string, n)
		for i := range r.Unique {
			r.Unique[i] = d.str()
		}
	}
	if n := d.count(); n > 0 {
		r.Fields = make(map[string]string, n)
		for range n {
			k := d.str()
			r.Fields[k] = d.str()
		}
	}
	r.Seq, r.Version = d.uvarint(), d.uvarint()
	r.Created, r.Updated = nanosTime(d.varint()), nanosTime(d.varint())
	if data := d.bytes(); data != nil {
		r.Data = json.RawMessage(data)
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, fmt.Errorf("%w: truncated or trailing bytes", errCorrupt)
	}
	return r, nil
}

// recordVersion is decodeRecord(b).Version, and its error, without
// building the record: the compact form is checked throughout but only
// read up to the version.
func recordVersion(b []byte) (uint64, error) {
	if len(b) == 0 || b[0] != recordFormat1 {
		r, err := decodeRecord(b)
		if err != nil {
			return 0, err
		}
		return r.Version, nil
	}
	d := decoder{b: b[1:]}
	d.skip()
	d.skip()
	d.skip()
	for n := d.count(); n > 0; n-- {
		d.skip()
	}
	for n := d.count(); n > 0; n-- {
		d.skip()
		d.skip()
	}
	d.uvarint()
	v := d.uvarint()
	d.varint()
	d.varint()
	d.skip()
	if d.err != nil || len(d.b) != 0 {
		return 0, fmt.Errorf("%w: truncated or trailing bytes", errCorrupt)
	}
	return v, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 { return readVarint(d, binary.Uvarint) }

func (d *decoder) varint() int64 { return readVarint(d, binary.Varint) }

func readVarint[T int64 | uint64](d *decoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count no larger than the bytes left could hold.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errCorrupt
		return 0
	}
	return int(n)
}

// bytes returns a copy: bolt's memory is valid only inside its
// transaction.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errCorrupt
		return nil
	}
	out := make([]byte, n)
	copy(out, d.b[:n])
	d.b = d.b[n:]
	return out
}

// skip passes over a length-prefixed string.
func (d *decoder) skip() {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errCorrupt
		return
	}
	d.b = d.b[n:]
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
