// Package storekit holds the backend-independent parts of the store
// contract: validation, JSON normalisation, query evaluation over loaded
// records, cursors and event chaining. Both backends use it so that the
// conformance suite sees one behaviour.
package storekit

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hsmca/hsmca/store"
)

// Invalid wraps store.ErrInvalid with a reason.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", store.ErrInvalid, fmt.Sprintf(format, args...))
}

// CheckName validates a kind or tenant: both become parts of backend keys,
// so the Redis key separator and the hash-tag braces are reserved.
func CheckName(what, s string) error {
	if s == "" {
		return Invalid("empty %s", what)
	}
	if len(s) > 256 {
		return Invalid("%s longer than 256 bytes", what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == ':' || r == '{' || r == '}' {
			return Invalid("%s %q contains a reserved character", what, s)
		}
	}
	return nil
}

// CheckKey validates an id or unique key.
func CheckKey(what, s string) error {
	if s == "" {
		return Invalid("empty %s", what)
	}
	if len(s) > 1024 {
		return Invalid("%s longer than 1024 bytes", what)
	}
	return nil
}

// CheckRef validates the (kind, tenant, id) triple of a lookup.
func CheckRef(kind, tenant, id string) error {
	if err := CheckName("kind", kind); err != nil {
		return err
	}
	if err := CheckName("tenant", tenant); err != nil {
		return err
	}
	return CheckKey("id", id)
}

// CheckRecord validates a record about to be written and returns its Data
// in stored form and its unique keys without duplicates.
func CheckRecord(rec *store.Record) (json.RawMessage, []string, error) {
	if rec == nil {
		return nil, nil, Invalid("nil record")
	}
	if err := CheckRef(rec.Kind, rec.Tenant, rec.ID); err != nil {
		return nil, nil, err
	}
	var uniq []string
	for _, u := range rec.Unique {
		if err := CheckKey("unique key", u); err != nil {
			return nil, nil, err
		}
		if !slices.Contains(uniq, u) {
			uniq = append(uniq, u)
		}
	}
	data, err := NormalizeJSON(rec.Data)
	if err != nil {
		return nil, nil, Invalid("record data: %v", err)
	}
	return data, uniq, nil
}

// CheckOpts validates write options. Update passes allowQuota false.
func CheckOpts(opts store.WriteOpts, allowQuota bool) error {
	if opts.Quota != nil {
		if !allowQuota {
			return Invalid("update takes no quota")
		}
		if opts.Quota.Resource == "" {
			return Invalid("quota without resource")
		}
	}
	return nil
}

// NoEvent refuses WriteOpts.Event and WriteOpts.Guard where a write does
// not take them.
func NoEvent(opts store.WriteOpts) error {
	if opts.Event != nil {
		return Invalid("this write takes no event record")
	}
	if opts.Guard != nil {
		return Invalid("this write takes no guard")
	}
	return nil
}

// CheckGuard validates a guard (nil: none) of a write in tenant.
func CheckGuard(tenant string, g *store.Guard) error {
	if g == nil {
		return nil
	}
	if (g.Tenant != "" && g.Tenant != tenant) || g.Throttle != nil || g.And != nil {
		return Invalid("guard on another tenant's record, with a rate limit or chained: not taken by this store")
	}
	return CheckRef(g.Kind, tenant, g.ID)
}

// maxGuardChain bounds the guards chained to one event (Guard.And).
const maxGuardChain = 4

// CheckCredentialGuards validates the guards of n events of tenant on a
// store that takes credential guards (store.CredentialGuards): one chain
// per event, nil or naming records, each counting a valid rate limit or
// none.
func CheckCredentialGuards(tenant string, n int, guards []*store.Guard) error {
	if len(guards) != n {
		return Invalid("%d guards for %d events", len(guards), n)
	}
	for _, g := range guards {
		for depth := 0; g != nil; g, depth = g.And, depth+1 {
			if depth == maxGuardChain {
				return Invalid("more than %d guards chained to one event", maxGuardChain)
			}
			t := tenant
			if g.Tenant != "" {
				t = g.Tenant
			}
			if err := CheckRef(g.Kind, t, g.ID); err != nil {
				return err
			}
			if r := g.Throttle; r != nil {
				if err := store.CheckThrottle(r.Key, r.Rate, r.Burst); err != nil {
					return Invalid("guard rate limit: key %q, rate %v, burst %d", r.Key, r.Rate, r.Burst)
				}
			}
		}
	}
	return nil
}

// CheckEventGuards validates the guards of n events of tenant
// (store.GuardedEvents): one per event, nil or naming a record.
func CheckEventGuards(tenant string, n int, guards []*store.Guard) error {
	if len(guards) != n {
		return Invalid("%d guards for %d events", len(guards), n)
	}
	for _, g := range guards {
		if err := CheckGuard(tenant, g); err != nil {
			return err
		}
	}
	return nil
}

// GuardFailed is Create's answer when its guard does not hold.
func GuardFailed(g *store.Guard) error {
	return fmt.Errorf("%w: %s %s is no longer at version %d", store.ErrVersionConflict, g.Kind, g.ID, g.Version)
}

// CheckIntent validates an intent and fills in its creation time.
func CheckIntent(in *store.Intent, now time.Time) (*store.Intent, error) {
	if in == nil {
		return nil, Invalid("nil intent")
	}
	if err := CheckKey("intent id", in.ID); err != nil {
		return nil, err
	}
	if err := CheckName("intent tenant", in.Tenant); err != nil {
		return nil, err
	}
	cp := *in
	if cp.Created.IsZero() {
		cp.Created = now
	}
	if len(cp.Data) > 0 {
		d, err := NormalizeJSON(cp.Data)
		if err != nil {
			return nil, Invalid("intent data: %v", err)
		}
		cp.Data = d
	}
	return &cp, nil
}

// NormalizeJSON returns raw in the form encoding/json emits it when it
// marshals a json.RawMessage (compacted, HTML characters escaped). Stored
// documents are marshalled that way, so normalising first makes what a
// caller hashes equal to what any later reader sees. Empty means null.
//
// Documents the daemon encodes itself are already in that form; they are
// recognised in one pass (normalForm) and copied, and only the others go
// through encoding/json.
func NormalizeJSON(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 {
		return json.RawMessage("null"), nil
	}
	if normalForm(raw) {
		return bytes.Clone(raw), nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Now is the store's clock: UTC without a monotonic reading, so that a
// time survives a JSON round trip unchanged.
func Now() time.Time { return time.Now().UTC() }

// Mode is the paging style of a query.
type Mode int

// Paging styles, see store.Query.
const (
	CursorMode Mode = iota
	OffsetMode
)

// Plan is a validated query. In cursor mode with Resume set, the walk
// continues past Cursor: seq > Cursor ascending, seq < Cursor descending.
type Plan struct {
	Mode   Mode
	Resume bool
	Cursor uint64
}

// CheckQuery validates q and decodes its cursor.
func CheckQuery(q store.Query) (Plan, error) {
	if err := CheckName("kind", q.Kind); err != nil {
		return Plan{}, err
	}
	if err := CheckName("tenant", q.Tenant); err != nil {
		return Plan{}, err
	}
	if q.Limit < 0 || q.Offset < 0 {
		return Plan{}, Invalid("negative limit or offset")
	}
	for _, f := range q.Filters {
		if f.Match < store.Equal || f.Match > store.AtLeast {
			return Plan{}, Invalid("filter on %q: unknown match %d", f.Field, f.Match)
		}
	}
	if q.SortBy != "" || q.Offset > 0 || q.OffsetPaging {
		if q.Cursor != "" {
			return Plan{}, Invalid("cursor with offset paging")
		}
		return Plan{Mode: OffsetMode}, nil
	}
	if q.Cursor == "" {
		return Plan{Mode: CursorMode}, nil
	}
	seq, desc, err := decodeCursor(q.Cursor)
	if err != nil {
		return Plan{}, err
	}
	if desc != q.Desc {
		return Plan{}, Invalid("cursor belongs to a query with another order")
	}
	return Plan{Mode: CursorMode, Resume: true, Cursor: seq}, nil
}

// EncodeCursor makes the NextCursor that resumes after seq. The cursor is
// opaque to callers; it carries the direction so that a
// cursor of an ascending walk cannot silently continue a descending one.
func EncodeCursor(seq uint64, desc bool) string {
	d := "a"
	if desc {
		d = "d"
	}
	return base64.RawURLEncoding.EncodeToString([]byte("c1" + d + strconv.FormatUint(seq, 10)))
}

func decodeCursor(c string) (uint64, bool, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 4 || string(b[:2]) != "c1" || (b[2] != 'a' && b[2] != 'd') {
		return 0, false, Invalid("malformed cursor")
	}
	seq, err := strconv.ParseUint(string(b[3:]), 10, 64)
	if err != nil || seq == 0 {
		return 0, false, Invalid("malformed cursor")
	}
	return seq, b[2] == 'd', nil
}

// Matches reports whether rec passes every filter.
func Matches(rec *store.Record, filters []store.Filter) bool {
	for _, f := range filters {
		if !MatchValue(rec.Fields[f.Field], f) {
			return false
		}
	}
	return true
}

// MatchValue reports whether a field value passes one filter.
func MatchValue(v string, f store.Filter) bool {
	switch f.Match {
	case store.Equal:
		return v == f.Value
	case store.Contains:
		return ContainsFold(v, f.Value)
	case store.Less:
		return v < f.Value
	case store.AtLeast:
		return v >= f.Value
	}
	return false
}

// Finish applies what every answer shares: an offset-paging query with
// NoTotal gets Total -1 whichever path answered it.
func Finish(q store.Query, p Plan, page *store.Page) *store.Page {
	if page != nil && p.Mode == OffsetMode && q.NoTotal {
		page.Total = -1
	}
	return page
}

// OffsetPage answers an offset-paging query from every record of the kind.
func OffsetPage(all []store.Record, q store.Query) *store.Page {
	matched := make([]store.Record, 0, len(all))
	for i := range all {
		if Matches(&all[i], q.Filters) {
			matched = append(matched, all[i])
		}
	}
	slices.SortFunc(matched, func(a, b store.Record) int {
		c := 0
		if q.SortBy != "" {
			c = strings.Compare(a.Fields[q.SortBy], b.Fields[q.SortBy])
		}
		if c == 0 {
			c = cmp.Compare(a.Seq, b.Seq)
		}
		if q.Desc {
			c = -c
		}
		return c
	})
	page := &store.Page{Total: len(matched), Records: []store.Record{}}
	if q.Offset >= len(matched) {
		return page
	}
	matched = matched[q.Offset:]
	if q.Limit > 0 && len(matched) > q.Limit {
		matched = matched[:q.Limit]
	}
	page.Records = matched
	return page
}

// ChainEvents links data onto a chain whose head is (prevSeq, prevHash).
// Every item must already be normalised (see NormalizeJSON).
func ChainEvents(tenant string, prevSeq uint64, prevHash string, data []json.RawMessage, now time.Time) []store.Event {
	out := make([]store.Event, len(data))
	for i, d := range data {
		seq := prevSeq + uint64(i) + 1
		h := store.ChainHash(prevHash, seq, now, d)
		out[i] = store.Event{Tenant: tenant, Seq: seq, Time: now, PrevHash: prevHash, Hash: h, Data: d}
		prevHash = h
	}
	return out
}

// NormalizeEvents validates and normalises the data of an append.
func NormalizeEvents(tenant string, data []json.RawMessage) ([]json.RawMessage, error) {
	if err := CheckName("tenant", tenant); err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(data))
	for i, d := range data {
		n, err := NormalizeJSON(d)
		if err != nil {
			return nil, Invalid("event %d data: %v", i, err)
		}
		out[i] = n
	}
	return out, nil
}

// SortIntents gives ListIntents a stable order: oldest first, then by id.
func SortIntents(ins []store.Intent) {
	slices.SortFunc(ins, func(a, b store.Intent) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// Fetch reads up to n entries of the seq index in walk order (descending
// when the query is), starting after seq from (or at the first entry when
// resume is false), and returns the records they name. last is the seq of
// the last entry read and more reports whether the index may continue past
// it (n entries were read). A backend that reads the index and the records
// in separate steps may return fewer records than entries when some were
// deleted in between.
type Fetch func(from uint64, resume bool, n int) (recs []store.Record, last uint64, more bool, err error)

// CursorPage answers a cursor-paging query by walking the seq index. Without
// filters it reads Limit+1 entries; with filters it reads in chunks until a
// page and one more match are found or the index is exhausted.
func CursorPage(q store.Query, p Plan, fetch Fetch) (*store.Page, error) {
	chunk := q.Limit + 1
	if q.Limit == 0 || len(q.Filters) > 0 {
		chunk = max(chunk, 256)
	}
	return cursorPage(q, p, fetch, chunk)
}

// cursorPage is CursorPage with the size of the first read given; later
// reads grow fourfold up to 1024 entries.
func cursorPage(q store.Query, p Plan, fetch Fetch, chunk int) (*store.Page, error) {
	if q.Limit == 0 {
		chunk = max(chunk, 256)
	}
	from, resume := p.Cursor, p.Resume
	page := &store.Page{Total: -1, Records: []store.Record{}}
	for {
		recs, last, more, err := fetch(from, resume, chunk)
		if err != nil {
			return nil, err
		}
		for i := range recs {
			if !Matches(&recs[i], q.Filters) {
				continue
			}
			if q.Limit > 0 && len(page.Records) == q.Limit {
				// One more match exists beyond this page.
				page.NextCursor = EncodeCursor(page.Records[q.Limit-1].Seq, q.Desc)
				return page, nil
			}
			page.Records = append(page.Records, recs[i])
		}
		if !more {
			return page, nil
		}
		from, resume = last, true
		chunk = max(chunk, min(chunk*4, 1024))
	}
}
