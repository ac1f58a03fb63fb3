package pca

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// The tenant's tag keys and the resource-instance queries by tag.
//
// Every answer lists resources newest first (creation order, as the
// lists' default), whichever way it is computed:
//
//   - no tag condition: the store pages the resources themselves (a name
//     match is its common-name filter) and each listed one's tags are
//     read;
//   - tag conditions: the tenant's tag sets are read and matched, each
//     matching set's resource is read (which also drops the tags of a
//     resource that is gone), then sorted and paged here; this costs the
//     tenant's tagged resources, not all of them;
//   - without_any_tag: the tagged resources are read as above, the total
//     is the store's count of resources less the tagged ones, and a page
//     is a walk of the resources in creation order skipping the tagged.

// MatchResourceName is the one key a filter's matches take: a
// case-insensitive substring of the resource's name (its common name).
const MatchResourceName = "resource_name"

// TagFilter is one key of a tag condition: resources holding the key,
// with one of Values when Values is not empty.
type TagFilter struct {
	Key    string
	Values []string
}

// TagQuery selects resources by tag. Tags combine with AND, a key's
// values with OR; WithoutAnyTag selects the resources without tags and
// ignores Tags. Limit and Offset page the answer.
type TagQuery struct {
	Tags          []TagFilter
	Matches       []Tag
	WithoutAnyTag bool
	Limit, Offset int
}

// TaggedResource is one resource of a query's answer: its id, name and
// tags, and the resource as its show route shows it (CA for CAs,
// Certificate for certificates).
type TaggedResource struct {
	ID          string
	Name        string
	Tags        []Tag
	CA          *CA
	Certificate *Certificate
}

// TagKey is one key of the tenant's tags and every value it has.
type TagKey struct {
	Key    string
	Values []string
}

// checkTagQuery applies the filter rules and returns the name to match
// ("" for none).
func checkTagQuery(q TagQuery) (string, error) {
	if !q.WithoutAnyTag {
		if len(q.Tags) > MaxTagsPerResource {
			return "", badTag("tags", fmt.Sprintf("must hold at most %d keys", MaxTagsPerResource))
		}
		keys := make(map[string]bool, len(q.Tags))
		for i, t := range q.Tags {
			f := fmt.Sprintf("tags[%d]", i)
			if err := checkTagKey(f+".key", t.Key, true); err != nil {
				return "", err
			}
			if keys[t.Key] {
				return "", badTag(f+".key", "names a key given earlier in the request")
			}
			keys[t.Key] = true
			if len(t.Values) > maxFilterValues {
				return "", badTag(f+".values", fmt.Sprintf("must hold at most %d values", maxFilterValues))
			}
			vals := make(map[string]bool, len(t.Values))
			for j, v := range t.Values {
				vf := fmt.Sprintf("%s.values[%d]", f, j)
				if err := checkTagValue(vf, v, true); err != nil {
					return "", err
				}
				if vals[v] {
					return "", badTag(vf, "names a value given earlier for this key")
				}
				vals[v] = true
			}
		}
	}
	name := ""
	for i, m := range q.Matches {
		f := fmt.Sprintf("matches[%d]", i)
		if m.Key != MatchResourceName {
			return "", refused(ReasonBadParameter, f+".key", nil, "must be "+MatchResourceName)
		}
		if i > 0 {
			return "", refused(ReasonBadParameter, f+".key", nil, "names a key given earlier in the request")
		}
		if !utf8.ValidString(m.Value) || utf8.RuneCountInString(m.Value) > maxTagValueLen {
			return "", refused(ReasonBadParameter, f+".value", nil, fmt.Sprintf("must be text of at most %d characters", maxTagValueLen))
		}
		for _, r := range m.Value {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				return "", refused(ReasonBadParameter, f+".value", nil, "must be printable text")
			}
		}
		name = m.Value
	}
	return name, nil
}

// nameMatches is the store's Contains match (case-insensitive substring).
func nameMatches(name, match string) bool {
	return match == "" || strings.Contains(strings.ToLower(name), strings.ToLower(match))
}

func nameFilters(match string) []store.Filter {
	if match == "" {
		return nil
	}
	return []store.Filter{{Field: "common_name", Value: match, Match: store.Contains}}
}

// tagsMatch says whether tags meet every condition of want.
func tagsMatch(tags []Tag, want []TagFilter) bool {
	for _, w := range want {
		i := tagIndex(tags, w.Key)
		if i < 0 || (len(w.Values) > 0 && !slices.Contains(w.Values, tags[i].Value)) {
			return false
		}
	}
	return true
}

// FilterResources lists the tenant's CAs or certificates that meet q,
// with the total of those that do.
func (s *Service) FilterResources(ctx context.Context, tenant string, target TagTarget, q TagQuery) ([]TaggedResource, int, error) {
	tg := targetOf(target)
	op := s.core.Start(ctx, tenant, tg.event+"_FILTER")
	out, total, err := s.filterResources(ctx, tenant, tg, q, false)
	return out, total, op.Done("", err)
}

// CountResources counts the tenant's CAs or certificates that meet q
// (its Limit and Offset play no part).
func (s *Service) CountResources(ctx context.Context, tenant string, target TagTarget, q TagQuery) (int, error) {
	tg := targetOf(target)
	op := s.core.Start(ctx, tenant, tg.event+"_COUNT")
	_, total, err := s.filterResources(ctx, tenant, tg, q, true)
	return total, op.Done("", err)
}

func (s *Service) filterResources(ctx context.Context, tenant string, tg tagTarget, q TagQuery, countOnly bool) ([]TaggedResource, int, error) {
	name, err := checkTagQuery(q)
	if err != nil {
		return nil, 0, err
	}
	if q.Limit < 0 || q.Offset < 0 {
		return nil, 0, refused(ReasonBadParameter, "limit", nil, "limit and offset must not be negative")
	}
	if tg.resourceKind == RecordCA {
		s.sweepTenant(ctx, tenant)
	}
	switch {
	case q.WithoutAnyTag:
		return s.untaggedResources(ctx, tenant, tg, name, q, countOnly)
	case len(q.Tags) > 0:
		return s.taggedResources(ctx, tenant, tg, name, q, countOnly)
	}
	return s.allResources(ctx, tenant, tg, name, q, countOnly)
}

// allResources answers a query without tag conditions from the store's
// paging of the resources.
func (s *Service) allResources(ctx context.Context, tenant string, tg tagTarget, name string, q TagQuery, countOnly bool) ([]TaggedResource, int, error) {
	sq := store.Query{Kind: tg.resourceKind, Tenant: tenant, Filters: nameFilters(name), OffsetPaging: true,
		Desc: true, Offset: q.Offset, Limit: q.Limit}
	if countOnly || q.Limit == 0 {
		sq.Limit = 1 // only the total is wanted
	}
	page, err := s.store.List(ctx, sq)
	if err != nil {
		return nil, 0, signer.StoreErr(err, tg.what)
	}
	if countOnly || q.Limit == 0 {
		return []TaggedResource{}, page.Total, nil
	}
	out := make([]TaggedResource, 0, len(page.Records))
	for i := range page.Records {
		rec := &page.Records[i]
		tags, err := s.tagsOf(ctx, tg, tenant, rec.ID)
		if err != nil {
			return nil, 0, err
		}
		r, err := s.taggedResource(tg, rec, tags)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	return out, page.Total, nil
}

// tagsOf reads the tags of one resource known to exist.
func (s *Service) tagsOf(ctx context.Context, tg tagTarget, tenant, id string) ([]Tag, error) {
	rec, err := s.store.Get(ctx, tg.tagKind, tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return []Tag{}, nil
	}
	if err != nil {
		return nil, signer.StoreErr(err, "tags")
	}
	tags, err := decodeTags(rec.Data)
	if err != nil {
		return nil, signer.StoreErr(err, "tags")
	}
	if tags == nil {
		tags = []Tag{}
	}
	return tags, nil
}

// taggedResources answers a query with tag conditions: the matching tag
// sets whose resources exist, newest resource first.
func (s *Service) taggedResources(ctx context.Context, tenant string, tg tagTarget, name string, q TagQuery, countOnly bool) ([]TaggedResource, int, error) {
	live, err := s.liveTagSets(ctx, tenant, tg, func(tags []Tag) bool { return tagsMatch(tags, q.Tags) })
	if err != nil {
		return nil, 0, err
	}
	hits := make([]TaggedResource, 0, len(live))
	seqs := make(map[string]uint64, len(live))
	for _, l := range live {
		r, err := s.taggedResource(tg, l.rec, l.tags)
		if err != nil {
			return nil, 0, err
		}
		if nameMatches(r.Name, name) {
			hits = append(hits, r)
			seqs[r.ID] = l.rec.Seq
		}
	}
	total := len(hits)
	if countOnly {
		return []TaggedResource{}, total, nil
	}
	slices.SortFunc(hits, func(a, b TaggedResource) int { return cmp.Compare(seqs[b.ID], seqs[a.ID]) })
	from := min(q.Offset, total)
	to := min(from+q.Limit, total)
	return hits[from:to], total, nil
}

// untaggedPageChunk is how many resources one store read of an untagged
// walk takes.
const untaggedPageChunk = 200

// untaggedResources answers without_any_tag: the resources with no tag,
// newest first.
func (s *Service) untaggedResources(ctx context.Context, tenant string, tg tagTarget, name string, q TagQuery, countOnly bool) ([]TaggedResource, int, error) {
	live, err := s.liveTagSets(ctx, tenant, tg, nil)
	if err != nil {
		return nil, 0, err
	}
	tagged := make(map[string]bool, len(live))
	taggedMatching := 0
	for _, l := range live {
		tagged[l.rec.ID] = true
		n, err := resourceName(tg, l.rec)
		if err != nil {
			return nil, 0, err
		}
		if nameMatches(n, name) {
			taggedMatching++
		}
	}
	count, err := s.store.List(ctx, store.Query{Kind: tg.resourceKind, Tenant: tenant, Filters: nameFilters(name),
		OffsetPaging: true, Limit: 1})
	if err != nil {
		return nil, 0, signer.StoreErr(err, tg.what)
	}
	total := max(0, count.Total-taggedMatching)
	out := []TaggedResource{}
	if countOnly || q.Limit == 0 || q.Offset >= total {
		return out, total, nil
	}
	skip := q.Offset
	cursor := ""
	for {
		page, err := s.store.List(ctx, store.Query{Kind: tg.resourceKind, Tenant: tenant, Filters: nameFilters(name),
			Desc: true, Limit: untaggedPageChunk, Cursor: cursor})
		if err != nil {
			return nil, 0, signer.StoreErr(err, tg.what)
		}
		for i := range page.Records {
			rec := &page.Records[i]
			if tagged[rec.ID] {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			r, err := s.taggedResource(tg, rec, []Tag{})
			if err != nil {
				return nil, 0, err
			}
			if out = append(out, r); len(out) == q.Limit {
				return out, total, nil
			}
		}
		if page.NextCursor == "" {
			return out, total, nil
		}
		cursor = page.NextCursor
	}
}

// TagKeys lists the keys of the tags on the tenant's CAs or
// certificates, each with every value it has, in key and value order.
func (s *Service) TagKeys(ctx context.Context, tenant string, target TagTarget) ([]TagKey, error) {
	tg := targetOf(target)
	op := s.core.Start(ctx, tenant, tg.event+"_KEYS_RETRIEVE")
	out, err := s.tagKeys(ctx, tenant, tg)
	return out, op.Done("", err)
}

func (s *Service) tagKeys(ctx context.Context, tenant string, tg tagTarget) ([]TagKey, error) {
	if tg.resourceKind == RecordCA {
		s.sweepTenant(ctx, tenant)
	}
	live, err := s.liveTagSets(ctx, tenant, tg, nil)
	if err != nil {
		return nil, err
	}
	values := map[string]map[string]bool{}
	for _, l := range live {
		for _, t := range l.tags {
			if values[t.Key] == nil {
				values[t.Key] = map[string]bool{}
			}
			values[t.Key][t.Value] = true
		}
	}
	out := make([]TagKey, 0, len(values))
	for k, vs := range values {
		tk := TagKey{Key: k, Values: make([]string, 0, len(vs))}
		for v := range vs {
			tk.Values = append(tk.Values, v)
		}
		slices.Sort(tk.Values)
		out = append(out, tk)
	}
	slices.SortFunc(out, func(a, b TagKey) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// liveSet is a non-empty tag set with its resource's record.
type liveSet struct {
	rec  *store.Record
	tags []Tag
}

// liveTagReaders bounds the concurrent resource reads of liveTagSets.
const liveTagReaders = 8

// liveTagSets reads the tenant's non-empty tag sets that keep accepts
// (nil: all) and the record of each one's resource. The tags of a
// resource that is gone (a deletion cut short between its two steps) are
// removed and left out.
func (s *Service) liveTagSets(ctx context.Context, tenant string, tg tagTarget, keep func([]Tag) bool) ([]liveSet, error) {
	page, err := s.store.List(ctx, store.Query{Kind: tg.tagKind, Tenant: tenant})
	if err != nil {
		return nil, signer.StoreErr(err, "tags")
	}
	sets := make([]liveSet, 0, len(page.Records))
	ids := make([]string, 0, len(page.Records))
	for i := range page.Records {
		tags, err := decodeTags(page.Records[i].Data)
		if err != nil {
			return nil, signer.StoreErr(err, "tags")
		}
		if len(tags) == 0 || (keep != nil && !keep(tags)) {
			continue
		}
		sets = append(sets, liveSet{tags: tags})
		ids = append(ids, page.Records[i].ID)
	}
	errs := make([]error, len(sets))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(liveTagReaders, len(sets)) {
		wg.Go(func() {
			for i := range next {
				rec, err := s.store.Get(ctx, tg.resourceKind, tenant, ids[i])
				switch {
				case errors.Is(err, store.ErrNotFound):
					s.forgetTags(ctx, tg.tagKind, tenant, ids[i])
				case err != nil:
					errs[i] = signer.StoreErr(err, tg.what)
				default:
					sets[i].rec = rec
				}
			}
		})
	}
	for i := range sets {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	out := sets[:0]
	for _, l := range sets {
		if l.rec != nil {
			out = append(out, l)
		}
	}
	return out, nil
}

// resourceName is the name a match compares: the common name.
func resourceName(tg tagTarget, rec *store.Record) (string, error) {
	var v struct {
		DN DistinguishedName `json:"distinguished_name"`
	}
	if err := json.Unmarshal(rec.Data, &v); err != nil {
		return "", signer.StoreErr(err, tg.what)
	}
	return v.DN.CommonName, nil
}

// taggedResource shapes one resource of an answer.
func (s *Service) taggedResource(tg tagTarget, rec *store.Record, tags []Tag) (TaggedResource, error) {
	out := TaggedResource{ID: rec.ID, Tags: tags}
	if tg.resourceKind == RecordCA {
		var c caRecord
		if err := json.Unmarshal(rec.Data, &c); err != nil {
			return out, signer.StoreErr(err, "CA")
		}
		out.CA = s.toCA(rec, &c)
		out.Name = c.DN.CommonName
		return out, nil
	}
	var c certSummary
	if err := json.Unmarshal(rec.Data, &c); err != nil {
		return out, signer.StoreErr(err, "certificate")
	}
	out.Certificate = toCertAt(rec.ID, &c, s.now())
	out.Name = c.DN.CommonName
	return out, nil
}
