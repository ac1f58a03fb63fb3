package storekit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hsmca/hsmca/store"
)

// Index entries are byte strings ordered by (field value, seq):
//
//	escape(value) + "\x00\x01" + seq as 16 hex digits [+ id]
//
// escape doubles every 0x00 of the value as 0x00 0xff, so the first
// "\x00\x01" is the end of the value and a value that is a prefix of
// another sorts first; fixed-width hex makes byte order seq order. Bolt
// keys end after the seq (the id is the value); Redis sorted-set members
// (all scored 0, compared as bytes) carry the id after it.

const valueEnd = "\x00\x01"

// Declared is the set of indexed fields of each kind.
type Declared map[string]map[string]bool

// Declare checks a declaration and returns it as a set.
func Declare(ixs []store.Index) (Declared, error) {
	d := Declared{}
	for _, ix := range ixs {
		if err := CheckName("index kind", ix.Kind); err != nil {
			return nil, err
		}
		if err := CheckName("index field", ix.Field); err != nil {
			return nil, err
		}
		if d[ix.Kind] == nil {
			d[ix.Kind] = map[string]bool{}
		}
		d[ix.Kind][ix.Field] = true
	}
	return d, nil
}

// Fields lists the indexed fields of kind in a stable order.
func (d Declared) Fields(kind string) []string {
	out := make([]string, 0, len(d[kind]))
	for f := range d[kind] {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// Has reports whether (kind, field) is indexed.
func (d Declared) Has(kind, field string) bool { return d[kind][field] }

// ValuePrefix is the start of every entry of value. A value that is not
// UTF-8 is taken as a JSON round trip leaves it, as the stored record has
// it.
func ValuePrefix(value string) string {
	if !utf8.ValidString(value) {
		b, _ := json.Marshal(value)
		_ = json.Unmarshal(b, &value)
	}
	return strings.ReplaceAll(value, "\x00", "\x00\xff") + valueEnd
}

// EntryKey is the entry of (value, seq) without the id.
func EntryKey(value string, seq uint64) string {
	return ValuePrefix(value) + SeqHex(seq)
}

// SeqHex is the fixed-width form of seq in entries.
func SeqHex(seq uint64) string { return fmt.Sprintf("%016x", seq) }

// Entry is one parsed index entry.
type Entry struct {
	Value string
	Seq   uint64
	ID    string
}

// ParseEntry splits an entry into value, seq and whatever follows the seq
// (the id of a Redis member, empty for a bolt key).
func ParseEntry(e string) (Entry, error) {
	i := strings.Index(e, valueEnd)
	if i < 0 || len(e) < i+2+16 {
		return Entry{}, fmt.Errorf("store: malformed index entry %q", e)
	}
	seq, err := strconv.ParseUint(e[i+2:i+18], 16, 64)
	if err != nil {
		return Entry{}, fmt.Errorf("store: malformed index entry %q", e)
	}
	return Entry{Value: strings.ReplaceAll(e[:i], "\x00\xff", "\x00"), Seq: seq, ID: e[i+18:]}, nil
}

// Range selects the entries e with Lo <= e < Hi; an empty Hi has no upper
// bound.
type Range struct{ Lo, Hi string }

// OneValue reports whether r holds exactly the entries of one value (an
// Equal filter's range) and returns that value's prefix.
func (r Range) OneValue() (string, bool) {
	n := len(r.Lo)
	if n < 2 || r.Lo[n-2:] != valueEnd || r.Hi != r.Lo[:n-1]+"\x02" {
		return "", false
	}
	return r.Lo, true
}

// Empty reports whether no entry can lie in r.
func (r Range) Empty() bool { return r.Hi != "" && r.Lo >= r.Hi }

func (r Range) narrow(lo, hi string) Range {
	if lo > r.Lo {
		r.Lo = lo
	}
	if hi != "" && (r.Hi == "" || hi < r.Hi) {
		r.Hi = hi
	}
	return r
}

// fieldRange is the index range the filters of one field allow; pure
// reports that they are Equal filters only, so the range holds the
// entries of one value in seq order.
func fieldRange(fs []store.Filter) (r Range, pure bool) {
	pure = len(fs) > 0
	for _, f := range fs {
		p := ValuePrefix(f.Value)
		switch f.Match {
		case store.Equal:
			r = r.narrow(p, p[:len(p)-1]+"\x02")
		case store.Less:
			r = r.narrow("", p)
			pure = false
		case store.AtLeast:
			r = r.narrow(p, "")
			pure = false
		default:
			pure = false
		}
	}
	return r, pure
}

func hasContains(fs []store.Filter) bool {
	return slices.ContainsFunc(fs, func(f store.Filter) bool { return f.Match == store.Contains })
}

func valueMatches(v string, fs []store.Filter) bool {
	for _, f := range fs {
		if !MatchValue(v, f) {
			return false
		}
	}
	return true
}

// IndexAccess reads the indexes and records of one (tenant, kind).
type IndexAccess interface {
	// Scan calls fn for the entries of field's index in r, in entry order
	// (reversed when desc), after skipping skip of them, until fn answers
	// false. hint is how many entries the caller expects to need (0:
	// unknown), so that a backend reading in chunks can size the first.
	Scan(field string, r Range, desc bool, skip, hint int, fn func(Entry) bool) error
	// Count counts the entries of field's index in r.
	Count(field string, r Range) (int, error)
	// Load reads the records of ids in that order, leaving out those that
	// no longer exist.
	Load(ids []string) ([]store.Record, error)
	// Len is the number of records of the kind (every record has one
	// entry in each index).
	Len() (int, error)
}

// IndexedList answers q from the indexes of its kind when a plan of
// store.Query's list applies; ok is false when the caller must answer it
// another way (no filters in creation order, or no indexed field).
func IndexedList(q store.Query, p Plan, indexed func(field string) bool, ix IndexAccess) (page *store.Page, ok bool, err error) {
	if len(q.Filters) == 0 && q.SortBy == "" {
		return nil, false, nil
	}
	var fields []string
	by := map[string][]store.Filter{}
	for _, f := range q.Filters {
		if by[f.Field] == nil {
			fields = append(fields, f.Field)
		}
		by[f.Field] = append(by[f.Field], f)
	}
	if q.SortBy != "" && indexed(q.SortBy) && (len(fields) == 0 || (len(fields) == 1 && fields[0] == q.SortBy)) {
		page, err = sortedByIndex(q, by[q.SortBy], ix)
		return page, true, err
	}
	if q.SortBy == "" && len(fields) == 1 && indexed(fields[0]) {
		f := fields[0]
		if r, pure := fieldRange(by[f]); pure {
			page, err = equalPage(q, p, f, r, ix)
		} else {
			page, err = keysPage(q, p, f, by[f], ix)
		}
		return page, true, err
	}
	wantTotal := p.Mode == OffsetMode && !q.NoTotal
	var driver string
	driverRank := 0
	for _, f := range fields {
		if !indexed(f) {
			continue
		}
		r, pure := fieldRange(by[f])
		rank := 1
		switch {
		case pure:
			rank = 3
		case r != Range{}:
			rank = 2
		}
		if rank > driverRank {
			driver, driverRank = f, rank
		}
	}
	switch {
	case driver == "":
		return nil, false, nil
	case driverRank == 3 && q.SortBy == "" && !wantTotal:
		page, err = walkPage(q, p, driver, ix)
	default:
		page, err = candidatesPage(q, p, driver, by[driver], ix)
	}
	return page, true, err
}

// loadChecked reads ids and keeps the records that still pass every
// filter: an entry read before a concurrent write may be stale.
func loadChecked(ix IndexAccess, ids []string, filters []store.Filter) ([]store.Record, error) {
	out := []store.Record{}
	for chunk := range slices.Chunk(ids, 1000) {
		recs, err := ix.Load(chunk)
		if err != nil {
			return nil, err
		}
		for i := range recs {
			if Matches(&recs[i], filters) {
				out = append(out, recs[i])
			}
		}
	}
	return out, nil
}

// sortedByIndex walks the index of SortBy, whose own filters are all.
func sortedByIndex(q store.Query, fs []store.Filter, ix IndexAccess) (*store.Page, error) {
	r, _ := fieldRange(fs)
	page := &store.Page{Records: []store.Record{}, Total: -1}
	if r.Empty() {
		page.Total = 0
		return page, nil
	}
	var ids []string
	full := func() bool { return q.Limit > 0 && len(ids) >= q.Limit }
	if !hasContains(fs) {
		if !q.NoTotal {
			count := func() (int, error) { return ix.Count(q.SortBy, r) }
			if len(fs) == 0 {
				count = ix.Len
			}
			n, err := count()
			if err != nil {
				return nil, err
			}
			page.Total = n
		}
		err := ix.Scan(q.SortBy, r, q.Desc, q.Offset, q.Limit, func(e Entry) bool {
			ids = append(ids, e.ID)
			return !full()
		})
		if err != nil {
			return nil, err
		}
	} else {
		n := 0
		err := ix.Scan(q.SortBy, r, q.Desc, 0, 0, func(e Entry) bool {
			if !valueMatches(e.Value, fs) {
				return true
			}
			n++
			if n > q.Offset && !full() {
				ids = append(ids, e.ID)
			}
			return !q.NoTotal || !full()
		})
		if err != nil {
			return nil, err
		}
		if !q.NoTotal {
			page.Total = n
		}
	}
	recs, err := loadChecked(ix, ids, q.Filters)
	if err != nil {
		return nil, err
	}
	page.Records = recs
	return page, nil
}

// resumeRange narrows the range of one value's entries to those after a
// cursor's seq in walk order.
func resumeRange(r Range, value string, p Plan, desc bool) Range {
	if !p.Resume {
		return r
	}
	if desc {
		return r.narrow("", EntryKey(value, p.Cursor))
	}
	return r.narrow(EntryKey(value, p.Cursor+1), "")
}

// equalPage pages one value's entries, which are in seq order.
func equalPage(q store.Query, p Plan, field string, r Range, ix IndexAccess) (*store.Page, error) {
	page := &store.Page{Records: []store.Record{}, Total: -1}
	if r.Empty() {
		if p.Mode == OffsetMode {
			page.Total = 0
		}
		return page, nil
	}
	value := q.Filters[0].Value
	var ids []string
	if p.Mode == OffsetMode {
		if !q.NoTotal {
			n, err := ix.Count(field, r)
			if err != nil {
				return nil, err
			}
			page.Total = n
		}
		err := ix.Scan(field, r, q.Desc, q.Offset, q.Limit, func(e Entry) bool {
			ids = append(ids, e.ID)
			return q.Limit == 0 || len(ids) < q.Limit
		})
		if err != nil {
			return nil, err
		}
	} else {
		var es []Entry
		err := ix.Scan(field, resumeRange(r, value, p, q.Desc), q.Desc, 0, q.Limit+1, func(e Entry) bool {
			es = append(es, e)
			return q.Limit == 0 || len(es) <= q.Limit
		})
		if err != nil {
			return nil, err
		}
		if q.Limit > 0 && len(es) > q.Limit {
			es = es[:q.Limit]
			page.NextCursor = EncodeCursor(es[q.Limit-1].Seq, q.Desc)
		}
		for _, e := range es {
			ids = append(ids, e.ID)
		}
	}
	recs, err := loadChecked(ix, ids, q.Filters)
	if err != nil {
		return nil, err
	}
	page.Records = recs
	return page, nil
}

// keysPage answers creation order from the keys of one field's range:
// every passing entry's (seq, id), sorted, then only the page's records.
func keysPage(q store.Query, p Plan, field string, fs []store.Filter, ix IndexAccess) (*store.Page, error) {
	es, err := collect(field, fs, ix)
	if err != nil {
		return nil, err
	}
	sortEntries(es, q.Desc)
	page := &store.Page{Records: []store.Record{}, Total: -1}
	if p.Mode == OffsetMode {
		page.Total = len(es)
		es = es[min(q.Offset, len(es)):]
		if q.Limit > 0 && len(es) > q.Limit {
			es = es[:q.Limit]
		}
	} else {
		if p.Resume {
			i, _ := slices.BinarySearchFunc(es, p.Cursor, func(e Entry, c uint64) int {
				if q.Desc {
					return -cmp.Compare(e.Seq, c)
				}
				return cmp.Compare(e.Seq, c)
			})
			for i < len(es) && es[i].Seq == p.Cursor {
				i++
			}
			es = es[i:]
		}
		if q.Limit > 0 && len(es) > q.Limit {
			es = es[:q.Limit]
			page.NextCursor = EncodeCursor(es[q.Limit-1].Seq, q.Desc)
		}
	}
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	if page.Records, err = loadChecked(ix, ids, q.Filters); err != nil {
		return nil, err
	}
	return page, nil
}

// collect gathers the entries of field's index that its filters pass.
func collect(field string, fs []store.Filter, ix IndexAccess) ([]Entry, error) {
	r, _ := fieldRange(fs)
	if r.Empty() {
		return nil, nil
	}
	var es []Entry
	err := ix.Scan(field, r, false, 0, 0, func(e Entry) bool {
		if valueMatches(e.Value, fs) {
			es = append(es, e)
		}
		return true
	})
	return es, err
}

func sortEntries(es []Entry, desc bool) {
	slices.SortFunc(es, func(a, b Entry) int {
		if desc {
			return cmp.Compare(b.Seq, a.Seq)
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
}

// walkPage walks one value's entries of the driver field in seq order,
// reading records chunk by chunk until the page is full.
func walkPage(q store.Query, p Plan, driver string, ix IndexAccess) (*store.Page, error) {
	var value string
	for _, f := range q.Filters {
		if f.Field == driver {
			value = f.Value
			break
		}
	}
	base, _ := fieldRange([]store.Filter{{Field: driver, Value: value}})
	fetch := func(from uint64, resume bool, n int) ([]store.Record, uint64, bool, error) {
		r := resumeRange(base, value, Plan{Resume: resume, Cursor: from}, q.Desc)
		var es []Entry
		err := ix.Scan(driver, r, q.Desc, 0, n, func(e Entry) bool {
			es = append(es, e)
			return len(es) < n
		})
		if err != nil || len(es) == 0 {
			return nil, 0, false, err
		}
		ids := make([]string, len(es))
		for i, e := range es {
			ids[i] = e.ID
		}
		recs, err := ix.Load(ids)
		return recs, es[len(es)-1].Seq, len(es) == n, err
	}
	// Most candidates are expected to match: the first read is the page
	// and one more, later ones grow.
	if p.Mode == CursorMode {
		return cursorPage(q, p, fetch, q.Limit+1)
	}
	q2 := q
	q2.Limit = q.Offset + q.Limit
	if q.Limit == 0 {
		q2.Limit = 0
	}
	page, err := cursorPage(q2, Plan{Mode: CursorMode}, fetch, q2.Limit+1)
	if err != nil {
		return nil, err
	}
	page.Records = page.Records[min(q.Offset, len(page.Records)):]
	page.NextCursor, page.Total = "", -1
	return page, nil
}

// candidatesPage reads every record whose driver key passes the driver's
// filters and answers the query over them in memory.
func candidatesPage(q store.Query, p Plan, driver string, fs []store.Filter, ix IndexAccess) (*store.Page, error) {
	es, err := collect(driver, fs, ix)
	if err != nil {
		return nil, err
	}
	sortEntries(es, false)
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	recs, err := loadChecked(ix, ids, q.Filters)
	if err != nil {
		return nil, err
	}
	if p.Mode == OffsetMode {
		return OffsetPage(recs, q), nil
	}
	return CursorPage(q, p, SliceFetch(recs, q.Desc))
}

// SliceFetch walks records already in memory in seq order (reversed when
// desc), as a Fetch for CursorPage.
func SliceFetch(recs []store.Record, desc bool) Fetch {
	slices.SortFunc(recs, func(a, b store.Record) int {
		if desc {
			return cmp.Compare(b.Seq, a.Seq)
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	return func(from uint64, resume bool, n int) ([]store.Record, uint64, bool, error) {
		i := 0
		if resume {
			i = sort.Search(len(recs), func(j int) bool {
				if desc {
					return recs[j].Seq < from
				}
				return recs[j].Seq > from
			})
		}
		out := recs[i:min(i+n, len(recs))]
		var last uint64
		if len(out) > 0 {
			last = out[len(out)-1].Seq
		}
		return out, last, i+n < len(recs), nil
	}
}
