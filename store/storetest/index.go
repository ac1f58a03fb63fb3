package storetest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

// Reopen closes the store it returned last (if any) and opens the same
// store again with the given index declaration.
type Reopen func(t *testing.T, ixs []store.Index) store.Store

// IndexOpener makes the Reopen of one fresh, empty store.
type IndexOpener func(t *testing.T) Reopen

const ixKind = "doc"

// testIndexes are declared on fields a, b and n of ixKind; field c is not.
var testIndexes = []store.Index{{Kind: ixKind, Field: "a"}, {Kind: ixKind, Field: "b"}, {Kind: ixKind, Field: "n"}}

// RunIndexed checks that a store with indexes answers every query as a
// plain in-memory model does, on each planned path, and that indexes are
// kept by every write, built at open for records written without them and
// filled by BulkCreate.
func RunIndexed(t *testing.T, open IndexOpener) {
	t.Run("RandomModel", func(t *testing.T) {
		t.Parallel()
		for seed := range uint64(6) {
			reopen := open(t)
			s := reopen(t, testIndexes)
			m := newModel(seed)
			for range 3 {
				m.mutate(t, s, 60)
				m.checkQueries(t, s, 120)
			}
			s.Close()
		}
	})
	t.Run("BackfillAtOpen", func(t *testing.T) {
		t.Parallel()
		reopen := open(t)
		s := reopen(t, nil)
		m := newModel(42)
		m.mutate(t, s, 150)
		s = reopen(t, testIndexes)
		m.checkQueries(t, s, 150)
		// Dropped while records change, then declared again: rebuilt,
		// not trusted.
		m.mutate(t, s, 40)
		s = reopen(t, testIndexes[:1])
		m.mutate(t, s, 80)
		s = reopen(t, testIndexes)
		m.checkQueries(t, s, 150)
		m.mutate(t, s, 40)
		m.checkQueries(t, s, 60)
		s.Close()
	})
	t.Run("BulkCreateKeepsIndexes", func(t *testing.T) {
		t.Parallel()
		reopen := open(t)
		s := reopen(t, testIndexes)
		bs, ok := s.(BulkStore)
		if !ok {
			t.Fatalf("%s store has no BulkCreate", s.Backend())
		}
		m := newModel(7)
		for tn := range 2 {
			tenant := fmt.Sprintf("t%d", tn)
			var recs []store.Record
			for i := range 120 {
				recs = append(recs, store.Record{Kind: ixKind, Tenant: tenant, ID: fmt.Sprintf("bulk%03d", i),
					Fields: m.fields(), Data: json.RawMessage(`{}`)})
			}
			require.NoError(t, bs.BulkCreate(context.Background(), recs, store.Quota{}))
			for i := range recs {
				got, err := s.Get(context.Background(), ixKind, tenant, recs[i].ID)
				require.NoError(t, err)
				m.recs[tenant][got.ID] = *got
			}
		}
		m.checkQueries(t, s, 150)
		m.mutate(t, s, 60)
		m.checkQueries(t, s, 100)
		s.Close()
	})
}

// model is what the store should hold, per tenant.
type model struct {
	rnd  *rand.Rand
	recs map[string]map[string]store.Record
	next int
}

func newModel(seed uint64) *model {
	return &model{rnd: rand.New(rand.NewPCG(seed, seed*7+1)),
		recs: map[string]map[string]store.Record{"t0": {}, "t1": {}}}
}

var (
	// Values meant to catch ordering slips: a prefix of another, a NUL
	// inside, bytes above 0x7f, and the empty value a missing field has.
	aValues = []string{"", "x", "xy", "x\x00y", "x\x00", "y", "Z", "\u00ff", "xx"}
	bValues = []string{"b1", "b2", "b3"}
	cValues = []string{"red", "green", "blue"}
)

func (m *model) pick(vs []string) string { return vs[m.rnd.IntN(len(vs))] }

func (m *model) fields() map[string]string {
	f := map[string]string{}
	if m.rnd.IntN(6) > 0 {
		f["a"] = m.pick(aValues)
	}
	if m.rnd.IntN(6) > 0 {
		f["b"] = m.pick(bValues)
	}
	if m.rnd.IntN(8) > 0 {
		f["n"] = fmt.Sprintf("%02d", m.rnd.IntN(20))
	}
	f["c"] = m.pick(cValues)
	return f
}

func (m *model) tenant() string { return fmt.Sprintf("t%d", m.rnd.IntN(2)) }

func (m *model) anyID(tenant string) (string, bool) {
	ids := make([]string, 0, len(m.recs[tenant]))
	for id := range m.recs[tenant] {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return "", false
	}
	slices.Sort(ids)
	return ids[m.rnd.IntN(len(ids))], true
}

// mutate makes n random creates, updates and deletes.
func (m *model) mutate(t *testing.T, s store.Store, n int) {
	t.Helper()
	ctx := context.Background()
	for range n {
		tenant := m.tenant()
		op := m.rnd.IntN(10)
		id, ok := m.anyID(tenant)
		switch {
		case op < 5 || !ok:
			m.next++
			r := &store.Record{Kind: ixKind, Tenant: tenant, ID: fmt.Sprintf("r%04d", m.next),
				Fields: m.fields(), Data: json.RawMessage(`{}`)}
			require.NoError(t, s.Create(ctx, r, store.WriteOpts{}))
			m.recs[tenant][r.ID] = *r
		case op < 8:
			cur := m.recs[tenant][id]
			r := cur
			r.Fields = m.fields()
			if m.rnd.IntN(3) == 0 {
				// Only the unindexed field changes.
				r.Fields = map[string]string{}
				for k, v := range cur.Fields {
					r.Fields[k] = v
				}
				r.Fields["c"] = m.pick(cValues)
			}
			require.NoError(t, s.Update(ctx, &r, store.WriteOpts{}))
			m.recs[tenant][id] = r
		default:
			require.NoError(t, s.Delete(ctx, ixKind, tenant, id, store.WriteOpts{}))
			delete(m.recs[tenant], id)
		}
	}
}

// randomQuery draws a query shaped like one of the planned paths, or not.
func (m *model) randomQuery(tenant string) store.Query {
	q := store.Query{Kind: ixKind, Tenant: tenant, Desc: m.rnd.IntN(2) == 0}
	eq := func(f string, vs []string) store.Filter { return store.Filter{Field: f, Value: m.pick(vs)} }
	num := func() string { return fmt.Sprintf("%02d", m.rnd.IntN(22)) }
	switch m.rnd.IntN(12) {
	case 0: // no filter, maybe sorted
	case 1:
		q.Filters = []store.Filter{eq("a", aValues)}
	case 2:
		q.Filters = []store.Filter{eq("b", bValues), eq("a", aValues)}
	case 3:
		q.Filters = []store.Filter{{Field: "n", Value: num(), Match: store.AtLeast}, {Field: "n", Value: num(), Match: store.Less}}
	case 4:
		q.Filters = []store.Filter{{Field: "n", Value: num(), Match: store.Less}}
	case 5:
		q.Filters = []store.Filter{{Field: "a", Value: m.pick([]string{"x", "X", "y", "\x00", "z"}), Match: store.Contains}}
	case 6:
		q.Filters = []store.Filter{eq("b", bValues), {Field: "n", Value: num(), Match: store.AtLeast}}
	case 7:
		q.Filters = []store.Filter{eq("c", cValues)}
	case 8:
		q.Filters = []store.Filter{eq("b", bValues), eq("c", cValues)}
	case 9:
		q.Filters = []store.Filter{eq("b", bValues), eq("b", bValues)}
	case 10:
		q.Filters = []store.Filter{{Field: "n", Value: num(), Match: store.AtLeast}, eq("c", cValues)}
	case 11:
		q.Filters = []store.Filter{{Field: "a", Value: "x", Match: store.Contains}, {Field: "a", Value: "x", Match: store.AtLeast}}
	}
	switch m.rnd.IntN(5) {
	case 0:
		q.SortBy = "n"
	case 1:
		q.SortBy = "a"
	case 2:
		q.SortBy = "c"
	}
	if q.SortBy != "" && m.rnd.IntN(2) == 0 {
		// Sorting by the filtered field is its own path.
		if len(q.Filters) > 0 {
			q.SortBy = q.Filters[0].Field
		}
	}
	q.Limit = []int{0, 1, 3, 7, 50}[m.rnd.IntN(5)]
	switch m.rnd.IntN(4) {
	case 0:
		q.Offset = m.rnd.IntN(12)
	case 1:
		q.OffsetPaging = q.SortBy == ""
	}
	q.NoTotal = m.rnd.IntN(4) == 0
	return q
}

// expect is the model's answer: every match in order.
func (m *model) expect(q store.Query) []store.Record {
	var out []store.Record
	for _, r := range m.recs[q.Tenant] {
		ok := true
		for _, f := range q.Filters {
			v := r.Fields[f.Field]
			switch f.Match {
			case store.Equal:
				ok = ok && v == f.Value
			case store.Less:
				ok = ok && v < f.Value
			case store.AtLeast:
				ok = ok && v >= f.Value
			case store.Contains:
				ok = ok && strings.Contains(strings.ToLower(v), strings.ToLower(f.Value))
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b store.Record) int {
		c := strings.Compare(a.Fields[q.SortBy], b.Fields[q.SortBy])
		if q.SortBy == "" || c == 0 {
			c = cmp.Compare(a.Seq, b.Seq)
		}
		if q.Desc {
			c = -c
		}
		return c
	})
	return out
}

func (m *model) checkQueries(t *testing.T, s store.Store, n int) {
	t.Helper()
	for range n {
		q := m.randomQuery(m.tenant())
		want := m.expect(q)
		desc := fmt.Sprintf("%#v", q)
		offsetMode := q.SortBy != "" || q.Offset > 0 || q.OffsetPaging
		if offsetMode {
			page, err := s.List(context.Background(), q)
			require.NoError(t, err, desc)
			wantTotal := len(want)
			if q.NoTotal {
				wantTotal = -1
			}
			require.Equal(t, wantTotal, page.Total, desc)
			exp := want[min(q.Offset, len(want)):]
			if q.Limit > 0 && len(exp) > q.Limit {
				exp = exp[:q.Limit]
			}
			sameRecords(t, exp, page.Records, desc)
			require.Empty(t, page.NextCursor, desc)
			continue
		}
		var got []store.Record
		for pages := 0; ; pages++ {
			require.Less(t, pages, 1000, desc)
			page, err := s.List(context.Background(), q)
			require.NoError(t, err, desc)
			wantTotal := -1
			if len(q.Filters) == 0 {
				wantTotal = len(m.recs[q.Tenant])
			}
			require.Equal(t, wantTotal, page.Total, desc)
			got = append(got, page.Records...)
			if page.NextCursor == "" {
				break
			}
			require.Len(t, page.Records, q.Limit, "a page before the last is full: %s", desc)
			q.Cursor = page.NextCursor
		}
		sameRecords(t, want, got, desc)
	}
}

func sameRecords(t *testing.T, want, got []store.Record, desc string) {
	t.Helper()
	w := make([]string, len(want))
	for i, r := range want {
		w[i] = fmt.Sprintf("%s %q", r.ID, r.Fields)
	}
	g := make([]string, len(got))
	for i, r := range got {
		g[i] = fmt.Sprintf("%s %q", r.ID, r.Fields)
	}
	require.Equal(t, w, g, desc)
}

// SuiteIndexes declares indexes on the fields the conformance suite
// filters and sorts on, so that a backend can run Run and RunBulk again on
// the index paths.
var SuiteIndexes = []store.Index{
	{Kind: kind, Field: "name"}, {Kind: kind, Field: "status"}, {Kind: kind, Field: "parity"},
	{Kind: "c", Field: "n"}, {Kind: "c", Field: "status"},
}
