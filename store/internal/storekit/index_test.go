package storekit

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

// memIndex is an IndexAccess over records in memory that counts what a
// plan reads.
type memIndex struct {
	recs    map[string]store.Record
	entries map[string][]string // field -> sorted entry keys + id
	loaded  int                 // records read
	scanned int                 // index entries read
}

func newMemIndex(recs []store.Record, fields ...string) *memIndex {
	m := &memIndex{recs: map[string]store.Record{}, entries: map[string][]string{}}
	for _, r := range recs {
		m.recs[r.ID] = r
		for _, f := range fields {
			m.entries[f] = append(m.entries[f], EntryKey(r.Fields[f], r.Seq)+r.ID)
		}
	}
	for _, es := range m.entries {
		slices.Sort(es)
	}
	return m
}

func (m *memIndex) inRange(e string, r Range) bool {
	return e >= r.Lo && (r.Hi == "" || e < r.Hi)
}

func (m *memIndex) Scan(field string, r Range, desc bool, skip, _ int, fn func(Entry) bool) error {
	es := slices.Clone(m.entries[field])
	if desc {
		slices.Reverse(es)
	}
	for _, e := range es {
		if !m.inRange(e, r) {
			continue
		}
		m.scanned++
		if skip > 0 {
			skip--
			continue
		}
		pe, err := ParseEntry(e)
		if err != nil {
			return err
		}
		if !fn(pe) {
			return nil
		}
	}
	return nil
}

func (m *memIndex) Count(field string, r Range) (int, error) {
	n := 0
	for _, e := range m.entries[field] {
		if m.inRange(e, r) {
			n++
		}
	}
	return n, nil
}

func (m *memIndex) Load(ids []string) ([]store.Record, error) {
	var out []store.Record
	for _, id := range ids {
		if r, ok := m.recs[id]; ok {
			m.loaded++
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memIndex) Len() (int, error) { return len(m.recs), nil }

// The index-served plans read the page's records, not the kind's: one in
// a hundred is revoked, most of the rest valid.
func TestIndexedPlansReadOnlyThePage(t *testing.T) {
	var recs []store.Record
	for i := 1; i <= 2000; i++ {
		status := "ISSUED"
		if i%100 == 0 {
			status = "REVOKED"
		}
		na := fmt.Sprintf("%04d", (i*37)%2000)
		recs = append(recs, store.Record{ID: fmt.Sprintf("r%04d", i), Seq: uint64(i),
			Fields: map[string]string{"status": status, "not_after": na, "expiry": status + "/" + na,
				"cn": fmt.Sprintf("host-%d.example", i%50)}})
	}
	indexed := func(f string) bool { return f != "other" }
	cases := []struct {
		name     string
		q        store.Query
		maxLoads int
		total    int
	}{
		{"equal, offset paging", store.Query{Filters: []store.Filter{{Field: "status", Value: "REVOKED"}}, Limit: 10, OffsetPaging: true, Desc: true}, 10, 20},
		{"equal, deep offset", store.Query{Filters: []store.Filter{{Field: "status", Value: "ISSUED"}}, Limit: 10, Offset: 1500}, 10, 1980},
		{"sorted by an indexed field", store.Query{SortBy: "not_after", Limit: 10}, 10, 2000},
		{"range sorted by its field", store.Query{SortBy: "expiry", Limit: 10, Filters: []store.Filter{
			{Field: "expiry", Value: "ISSUED/1000", Match: store.AtLeast}, {Field: "expiry", Value: "ISSUED0", Match: store.Less}}}, 10, 990},
		{"range in creation order", store.Query{Limit: 10, OffsetPaging: true, Filters: []store.Filter{
			{Field: "expiry", Value: "ISSUED/", Match: store.AtLeast}, {Field: "expiry", Value: "ISSUED/0100", Match: store.Less}}}, 10, 99},
		{"contains on keys", store.Query{Limit: 10, OffsetPaging: true, Filters: []store.Filter{{Field: "cn", Value: "HOST-7.", Match: store.Contains}}}, 10, 40},
		{"equal walk without total", store.Query{Limit: 10, OffsetPaging: true, NoTotal: true, Filters: []store.Filter{
			{Field: "status", Value: "ISSUED"}, {Field: "expiry", Value: "ISSUED/0100", Match: store.AtLeast}}}, 60, -1},
		{"equal and a sort on another field", store.Query{SortBy: "cn", Limit: 10, Filters: []store.Filter{{Field: "status", Value: "REVOKED"}}}, 20, 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemIndex(recs, "status", "not_after", "expiry", "cn")
			q := tc.q
			q.Kind, q.Tenant = "k", "t"
			p, err := CheckQuery(q)
			require.NoError(t, err)
			page, ok, err := IndexedList(q, p, indexed, m)
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, tc.total, page.Total)
			assert.LessOrEqual(t, m.loaded, tc.maxLoads, "records read")
			// The same answer as evaluating every record.
			all := make([]store.Record, 0, len(recs))
			all = append(all, recs...)
			want := OffsetPage(all, q)
			got := make([]string, len(page.Records))
			for i, r := range page.Records {
				got[i] = r.ID
			}
			exp := make([]string, len(want.Records))
			for i, r := range want.Records {
				exp[i] = r.ID
			}
			assert.Equal(t, exp, got)
		})
	}
	// A filter on an unindexed field alone is not the indexes' to answer.
	m := newMemIndex(recs, "status")
	q := store.Query{Kind: "k", Tenant: "t", Filters: []store.Filter{{Field: "other", Value: "x"}}}
	p, err := CheckQuery(q)
	require.NoError(t, err)
	_, ok, err := IndexedList(q, p, indexed, m)
	require.NoError(t, err)
	assert.False(t, ok)
	assert.True(t, strings.HasPrefix(EntryKey("a\x00b", 1), "a\x00\xffb\x00\x01"))
}
