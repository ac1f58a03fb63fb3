package pca_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

func tagLeaf(t *testing.T, e *pca.Service, issuer, cn string) string {
	t.Helper()
	return mkLeaf(t, e, issuer, cn, pca.Validity{Type: "DAY", Value: 30})
}

func listTags(t *testing.T, e *pca.Service, target pca.TagTarget, id string) []pca.Tag {
	t.Helper()
	tags, err := e.ListTags(pcaCtx(), "t1", target, id)
	require.NoError(t, err)
	require.NotNil(t, tags)
	return tags
}

// Tags are set, overwritten in place, listed in the order their keys
// were first set, and deleted by key (and value when one is given); the
// same on CAs and certificates, of the tenant only.
func TestPCATagsOnCAsAndCertificates(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			e, _, _ := newPCAEngine(t, backend)
			ctx := pcaCtx()
			root := mkRoot(t, e, "Tag Root")
			leaf := tagLeaf(t, e, root, "tagged.example.com")
			for _, tc := range []struct {
				target pca.TagTarget
				id     string
			}{{pca.TagCAs, root}, {pca.TagCertificates, leaf}} {
				assert.Empty(t, listTags(t, e, tc.target, tc.id))
				require.NoError(t, e.CreateTags(ctx, "t1", tc.target, tc.id,
					[]pca.Tag{{Key: "env", Value: "prod"}, {Key: "team", Value: "pki"}, {Key: "费用", Value: ""}}))
				require.NoError(t, e.CreateTag(ctx, "t1", tc.target, tc.id, pca.Tag{Key: "env", Value: "staging"}))
				require.NoError(t, e.CreateTags(ctx, "t1", tc.target, tc.id, []pca.Tag{{Key: "team", Value: "pki"}}),
					"setting what is there already is no error")
				assert.Equal(t, []pca.Tag{{Key: "env", Value: "staging"}, {Key: "team", Value: "pki"}, {Key: "费用", Value: ""}},
					listTags(t, e, tc.target, tc.id))

				require.NoError(t, e.DeleteTags(ctx, "t1", tc.target, tc.id, []pca.Tag{{Key: "team", Value: "other"}}))
				assert.Len(t, listTags(t, e, tc.target, tc.id), 3, "a value that differs deletes nothing")
				require.NoError(t, e.DeleteTags(ctx, "t1", tc.target, tc.id,
					[]pca.Tag{{Key: "team"}, {Key: "absent", Value: "x"}, {Key: "not*a*valid*key"}}))
				assert.Equal(t, []pca.Tag{{Key: "env", Value: "staging"}, {Key: "费用", Value: ""}}, listTags(t, e, tc.target, tc.id))
				require.NoError(t, e.DeleteTags(ctx, "t1", tc.target, tc.id, []pca.Tag{{Key: "env"}, {Key: "费用"}}))
				assert.Empty(t, listTags(t, e, tc.target, tc.id))
				require.NoError(t, e.DeleteTags(ctx, "t1", tc.target, tc.id, []pca.Tag{{Key: "env"}}), "idempotent")

				other := signer.WithCaller(context.Background(), signer.Caller{Tenant: "t2", Principal: "token:other"})
				for _, err := range []error{
					e.CreateTag(other, "t2", tc.target, tc.id, pca.Tag{Key: "k", Value: "v"}),
					e.DeleteTags(other, "t2", tc.target, tc.id, []pca.Tag{{Key: "k"}}),
					func() error { _, err := e.ListTags(other, "t2", tc.target, tc.id); return err }(),
					e.CreateTag(ctx, "t1", tc.target, uuid.NewString(), pca.Tag{Key: "k", Value: "v"}),
					e.CreateTag(ctx, "t1", tc.target, "not-an-id", pca.Tag{Key: "k", Value: "v"}),
				} {
					assert.Equal(t, pca.ReasonNotFound, signer.ReasonOf(err), "%v", err)
				}
			}
			// Tags of a CA and of a certificate are apart.
			require.NoError(t, e.CreateTag(ctx, "t1", pca.TagCAs, root, pca.Tag{Key: "only", Value: "ca"}))
			assert.Empty(t, listTags(t, e, pca.TagCertificates, leaf))
			_, err := e.ListTags(ctx, "t1", pca.TagCertificates, root)
			assert.Equal(t, pca.ReasonNotFound, signer.ReasonOf(err), "a CA's id names no certificate")
		})
	}
}

// Huawei's rules for keys and values, and the 20-tag limit counted on the
// result of a request, which is applied whole or not at all.
func TestPCATagRules(t *testing.T) {
	e, _, _ := newPCAEngine(t, "bolt")
	ctx := pcaCtx()
	root := mkRoot(t, e, "Rules Root")
	long := func(n int, r string) string { return strings.Repeat(r, n) }
	for _, ok := range []pca.Tag{
		{Key: long(128, "k"), Value: long(255, "v")}, {Key: long(128, "键"), Value: long(255, "值")},
		{Key: "a_b.c:d=e+f-g@h i", Value: "a_b.c:d/e=f+g-h@i j"}, {Key: "Ärger ñandú", Value: ""}, {Key: "x", Value: " padded "},
	} {
		assert.NoError(t, e.CreateTag(ctx, "t1", pca.TagCAs, root, ok), "%q=%q", ok.Key, ok.Value)
	}
	require.NoError(t, e.DeleteTags(ctx, "t1", pca.TagCAs, root, listTags(t, e, pca.TagCAs, root)))
	for name, tags := range map[string][]pca.Tag{
		"empty key":              {{Key: "", Value: "v"}},
		"key of 129":             {{Key: long(129, "k")}},
		"value of 256":           {{Key: "k", Value: long(256, "v")}},
		"reserved prefix":        {{Key: "_sys_enterprise", Value: "v"}},
		"leading space":          {{Key: " k"}},
		"trailing space":         {{Key: "k "}},
		"slash in a key":         {{Key: "a/b"}},
		"asterisk":               {{Key: "a*b"}},
		"control in a value":     {{Key: "k", Value: "a\nb"}},
		"invalid UTF-8":          {{Key: "k\xff"}},
		"bidi override":          {{Key: "k\u202e"}},
		"a key twice":            {{Key: "k", Value: "1"}, {Key: "k", Value: "2"}},
		"no tags":                {},
		"21 tags in one request": manyTags("r", 21),
	} {
		err := e.CreateTags(ctx, "t1", pca.TagCAs, root, tags)
		assert.Equal(t, pca.ReasonBadTag, signer.ReasonOf(err), "%s: %v", name, err)
		assert.Equal(t, signer.KindInvalid, signer.KindOf(err), name)
	}
	assert.Equal(t, pca.ReasonBadTag, signer.ReasonOf(e.DeleteTags(ctx, "t1", pca.TagCAs, root, []pca.Tag{{Key: "k"}, {Key: "k"}})))
	assert.Equal(t, pca.ReasonBadTag, signer.ReasonOf(e.DeleteTags(ctx, "t1", pca.TagCAs, root, nil)))

	require.NoError(t, e.CreateTags(ctx, "t1", pca.TagCAs, root, manyTags("a", 19)))
	err := e.CreateTags(ctx, "t1", pca.TagCAs, root, []pca.Tag{{Key: "new1"}, {Key: "new2"}})
	assert.Equal(t, pca.ReasonTagLimit, signer.ReasonOf(err))
	assert.Equal(t, signer.KindQuotaExceeded, signer.KindOf(err))
	assert.Len(t, listTags(t, e, pca.TagCAs, root), 19, "a refused batch writes nothing")
	require.NoError(t, e.CreateTags(ctx, "t1", pca.TagCAs, root, []pca.Tag{{Key: "a-00", Value: "changed"}, {Key: "new1"}}),
		"a known key counts once")
	require.NoError(t, e.CreateTag(ctx, "t1", pca.TagCAs, root, pca.Tag{Key: "new1", Value: "again"}), "overwriting at 20 is fine")
	assert.Equal(t, pca.ReasonTagLimit, signer.ReasonOf(e.CreateTag(ctx, "t1", pca.TagCAs, root, pca.Tag{Key: "new2"})))
	tags := listTags(t, e, pca.TagCAs, root)
	assert.Len(t, tags, 20)
	assert.Equal(t, pca.Tag{Key: "a-00", Value: "changed"}, tags[0])
}

func manyTags(prefix string, n int) []pca.Tag {
	out := make([]pca.Tag, n)
	for i := range out {
		out[i] = pca.Tag{Key: fmt.Sprintf("%s-%02d", prefix, i), Value: "v"}
	}
	return out
}

// Writers racing on one resource never take it past 20 tags, and every
// tag a writer was told it set is there (no lost update), on both stores.
func TestPCATagLimitUnderConcurrency(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			e, _, _ := newPCAEngine(t, backend)
			ctx := pcaCtx()
			root := mkRoot(t, e, "Race Root")
			const writers = 16
			errs := make([]error, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() {
					errs[i] = e.CreateTags(ctx, "t1", pca.TagCAs, root,
						[]pca.Tag{{Key: fmt.Sprintf("w%02d-a", i)}, {Key: fmt.Sprintf("w%02d-b", i)}})
				})
			}
			wg.Wait()
			var set []string
			busy := 0
			for i, err := range errs {
				switch signer.ReasonOf(err) {
				case "":
					require.NoError(t, err)
					set = append(set, fmt.Sprintf("w%02d-a", i), fmt.Sprintf("w%02d-b", i))
				case pca.ReasonTagLimit:
				case pca.ReasonBusy:
					busy++
				default:
					t.Fatalf("writer %d: %v", i, err)
				}
			}
			var got []string
			for _, tg := range listTags(t, e, pca.TagCAs, root) {
				got = append(got, tg.Key)
			}
			slices.Sort(got)
			assert.Equal(t, set, got, "the tags are exactly those acknowledged")
			assert.LessOrEqual(t, len(got), pca.MaxTagsPerResource)
			if busy == 0 {
				assert.Len(t, got, pca.MaxTagsPerResource, "the writers that came first filled the resource")
			}
			t.Logf("%d writers set their tags, %d were told to retry", len(set)/2, busy)
		})
	}
}

// A certificate's deletion and a CA's purge take their tags with them.
func TestPCATagsGoWithTheirResource(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			e, st, _ := newPCAEngine(t, backend)
			ctx := pcaCtx()
			root := mkRoot(t, e, "Gone Root")
			leaf := tagLeaf(t, e, root, "gone.example.com")
			pending := mkSub(t, e, "Gone Pending", "", pca.Validity{}, 0)
			require.NoError(t, e.CreateTag(ctx, "t1", pca.TagCertificates, leaf, pca.Tag{Key: "leaf", Value: "1"}))
			require.NoError(t, e.CreateTag(ctx, "t1", pca.TagCAs, pending, pca.Tag{Key: "pending", Value: "1"}))
			require.NoError(t, e.CreateTag(ctx, "t1", pca.TagCAs, root, pca.Tag{Key: "root", Value: "1"}))

			require.NoError(t, e.DeleteCertificate(ctx, "t1", leaf))
			require.NoError(t, e.DeleteCA(ctx, "t1", pending, 0)) // PENDING: purged at once
			_, err := st.Get(ctx, pca.RecordCertTags, "t1", leaf)
			assert.ErrorIs(t, err, store.ErrNotFound)
			_, err = st.Get(ctx, pca.RecordCATags, "t1", pending)
			assert.ErrorIs(t, err, store.ErrNotFound)
			keys, err := e.TagKeys(ctx, "t1", pca.TagCAs)
			require.NoError(t, err)
			assert.Equal(t, []pca.TagKey{{Key: "root", Values: []string{"1"}}}, keys)
			keys, err = e.TagKeys(ctx, "t1", pca.TagCertificates)
			require.NoError(t, err)
			assert.Empty(t, keys)
		})
	}
}

// Tags whose resource is gone (a deletion cut short after its first step)
// count nowhere and are removed by the reads that meet them.
func TestPCATagOrphansAreSkippedAndRemoved(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			e, st, _ := newPCAEngine(t, backend)
			ctx := pcaCtx()
			root := mkRoot(t, e, "Orphan Root")
			leaf := tagLeaf(t, e, root, "kept.example.com")
			untagged := tagLeaf(t, e, root, "plain.example.com")
			require.NoError(t, e.CreateTag(ctx, "t1", pca.TagCertificates, leaf, pca.Tag{Key: "env", Value: "prod"}))
			orphan := func() string {
				id := uuid.NewString()
				data, _ := json.Marshal(map[string]any{"tags": []pca.Tag{{Key: "env", Value: "prod"}, {Key: "ghost", Value: "1"}}})
				require.NoError(t, st.Create(ctx, &store.Record{Kind: pca.RecordCertTags, Tenant: "t1", ID: id, Data: data}, store.WriteOpts{}))
				return id
			}

			ghost := orphan()
			keys, err := e.TagKeys(ctx, "t1", pca.TagCertificates)
			require.NoError(t, err)
			assert.Equal(t, []pca.TagKey{{Key: "env", Values: []string{"prod"}}}, keys)
			_, err = st.Get(ctx, pca.RecordCertTags, "t1", ghost)
			assert.ErrorIs(t, err, store.ErrNotFound, "the orphan is removed")

			ghost = orphan()
			list, total, err := e.FilterResources(ctx, "t1", pca.TagCertificates, pca.TagQuery{
				Tags: []pca.TagFilter{{Key: "env", Values: []string{"prod"}}}, Limit: 10})
			require.NoError(t, err)
			assert.Equal(t, 1, total)
			require.Len(t, list, 1)
			assert.Equal(t, leaf, list[0].ID)

			ghost = orphan()
			list, total, err = e.FilterResources(ctx, "t1", pca.TagCertificates, pca.TagQuery{WithoutAnyTag: true, Limit: 10})
			require.NoError(t, err)
			assert.Equal(t, 1, total, "an orphan takes nothing off the untagged count")
			require.Len(t, list, 1)
			assert.Equal(t, untagged, list[0].ID)
			_, err = st.Get(ctx, pca.RecordCertTags, "t1", ghost)
			assert.ErrorIs(t, err, store.ErrNotFound)
		})
	}
}

// tagModel is what the filter should answer, computed from the test's
// own record of each resource.
type tagModel struct {
	ids   []string // creation order
	names map[string]string
	tags  map[string]map[string]string
}

func (m *tagModel) want(q pca.TagQuery) []string {
	var out []string
	for i := len(m.ids) - 1; i >= 0; i-- {
		id := m.ids[i]
		tags := m.tags[id]
		if len(q.Matches) > 0 && !strings.Contains(strings.ToLower(m.names[id]), strings.ToLower(q.Matches[0].Value)) {
			continue
		}
		if q.WithoutAnyTag {
			if len(tags) > 0 {
				continue
			}
		} else {
			ok := true
			for _, f := range q.Tags {
				v, has := tags[f.Key]
				if !has || (len(f.Values) > 0 && !slices.Contains(f.Values, v)) {
					ok = false
				}
			}
			if !ok {
				continue
			}
		}
		out = append(out, id)
	}
	return out
}

// The resource-instance queries answer, page after page, exactly the
// resources their conditions select, newest first, with a total and a
// count that agree, for CAs and certificates on both stores.
func TestPCATagFilterPaging(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			e, _, _ := newPCAEngine(t, backend)
			ctx := pcaCtx()
			root := mkRoot(t, e, "Filter Root")
			envs := []string{"prod", "dev", "test", ""}
			models := map[pca.TagTarget]*tagModel{}
			cas := &tagModel{ids: []string{root}, names: map[string]string{root: "Filter Root"}, tags: map[string]map[string]string{}}
			certs := &tagModel{names: map[string]string{}, tags: map[string]map[string]string{}}
			models[pca.TagCAs], models[pca.TagCertificates] = cas, certs
			for i := range 13 {
				name := fmt.Sprintf("web-%02d.example.com", i)
				if i%3 == 0 {
					name = fmt.Sprintf("API-%02d.example.com", i)
				}
				id := tagLeaf(t, e, root, name)
				certs.ids, certs.names[id] = append(certs.ids, id), name
				tags := map[string]string{}
				if env := envs[i%4]; env != "" {
					tags["env"] = env
				}
				if i%2 == 0 {
					tags["team"] = fmt.Sprintf("t%d", i%3)
				}
				var list []pca.Tag
				for k, v := range tags {
					list = append(list, pca.Tag{Key: k, Value: v})
				}
				if len(list) > 0 {
					require.NoError(t, e.CreateTags(ctx, "t1", pca.TagCertificates, id, list))
				}
				certs.tags[id] = tags
			}
			// One certificate whose tags were all deleted counts as untagged.
			require.NoError(t, e.DeleteTags(ctx, "t1", pca.TagCertificates, certs.ids[0], []pca.Tag{{Key: "env"}, {Key: "team"}}))
			certs.tags[certs.ids[0]] = nil
			for i := range 6 {
				name := fmt.Sprintf("Sub %d", i)
				id := mkSub(t, e, name, root, pca.Validity{Type: "YEAR", Value: 1}, 0)
				cas.ids, cas.names[id] = append(cas.ids, id), name
				cas.tags[id] = map[string]string{}
				if i%2 == 1 {
					require.NoError(t, e.CreateTag(ctx, "t1", pca.TagCAs, id, pca.Tag{Key: "env", Value: envs[i%3]}))
					cas.tags[id]["env"] = envs[i%3]
				}
			}
			queries := []pca.TagQuery{
				{},
				{Tags: []pca.TagFilter{{Key: "env", Values: []string{"prod"}}}},
				{Tags: []pca.TagFilter{{Key: "env"}}},
				{Tags: []pca.TagFilter{{Key: "env", Values: []string{"prod", "dev"}}, {Key: "team"}}},
				{Tags: []pca.TagFilter{{Key: "team", Values: []string{"t0"}}}, Matches: []pca.Tag{{Key: "resource_name", Value: "api"}}},
				{Tags: []pca.TagFilter{{Key: "nobody"}}},
				{Matches: []pca.Tag{{Key: "resource_name", Value: "WEB"}}},
				{WithoutAnyTag: true},
				{WithoutAnyTag: true, Tags: []pca.TagFilter{{Key: "env"}}}, // tags are then ignored
				{WithoutAnyTag: true, Matches: []pca.Tag{{Key: "resource_name", Value: "api-"}}},
			}
			for target, m := range models {
				for qi, q := range queries {
					want := m.want(q)
					for _, limit := range []int{1, 4, 50} {
						var got []string
						for offset := 0; offset <= len(want)+limit; offset += limit {
							q.Limit, q.Offset = limit, offset
							page, total, err := e.FilterResources(ctx, "t1", target, q)
							require.NoError(t, err, "query %d", qi)
							assert.Equal(t, len(want), total, "query %d total", qi)
							for _, r := range page {
								got = append(got, r.ID)
								assert.Equal(t, m.names[r.ID], r.Name)
								assert.Len(t, r.Tags, len(m.tags[r.ID]))
								for _, tg := range r.Tags {
									assert.Equal(t, m.tags[r.ID][tg.Key], tg.Value)
								}
								if target == pca.TagCAs {
									require.NotNil(t, r.CA)
									assert.Equal(t, r.ID, r.CA.ID)
								} else {
									require.NotNil(t, r.Certificate)
									assert.Equal(t, r.ID, r.Certificate.ID)
								}
							}
						}
						assert.Equal(t, want, got, "target %d query %d limit %d", target, qi, limit)
					}
					n, err := e.CountResources(ctx, "t1", target, q)
					require.NoError(t, err)
					assert.Equal(t, len(want), n, "target %d query %d count", target, qi)
				}
			}

			for name, q := range map[string]pca.TagQuery{
				"match key":      {Matches: []pca.Tag{{Key: "name", Value: "x"}}},
				"match twice":    {Matches: []pca.Tag{{Key: "resource_name"}, {Key: "resource_name"}}},
				"negative limit": {Limit: -1},
			} {
				_, _, err := e.FilterResources(ctx, "t1", pca.TagCertificates, q)
				assert.Equal(t, pca.ReasonBadParameter, signer.ReasonOf(err), name)
			}
			for name, q := range map[string]pca.TagQuery{
				"key twice":     {Tags: []pca.TagFilter{{Key: "env"}, {Key: "env"}}},
				"value twice":   {Tags: []pca.TagFilter{{Key: "env", Values: []string{"a", "a"}}}},
				"bad key":       {Tags: []pca.TagFilter{{Key: "a*b"}}},
				"21 keys":       {Tags: filters(21)},
				"21 values":     {Tags: []pca.TagFilter{{Key: "env", Values: strings.Split(strings.Repeat("v,", 20)+"w", ",")}}},
				"value too big": {Tags: []pca.TagFilter{{Key: "env", Values: []string{strings.Repeat("v", 256)}}}},
			} {
				_, err := e.CountResources(ctx, "t1", pca.TagCertificates, q)
				assert.Equal(t, pca.ReasonBadTag, signer.ReasonOf(err), name)
			}
		})
	}
}

func filters(n int) []pca.TagFilter {
	out := make([]pca.TagFilter, n)
	for i := range out {
		out[i] = pca.TagFilter{Key: fmt.Sprintf("k%d", i)}
	}
	return out
}

// hookStore runs beforeTagWrite just before a certificate's tags are
// written: what a deletion racing the write looks like.
type hookStore struct {
	store.Store
	beforeTagWrite func()
}

func (h *hookStore) Create(ctx context.Context, rec *store.Record, o store.WriteOpts) error {
	if rec.Kind == pca.RecordCertTags && h.beforeTagWrite != nil {
		f := h.beforeTagWrite
		h.beforeTagWrite = nil
		f()
	}
	return h.Store.Create(ctx, rec, o)
}

// A certificate deleted between a tag request's check and its write
// leaves no tags: the request answers not-found and removes what it wrote.
func TestPCATagWriteRacingADeletion(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			var hs *hookStore
			e := pca.New(newPCACoreOver(t, backend, func(st store.Store) store.Store {
				hs = &hookStore{Store: st}
				return hs
			}))
			st := hs.Store
			ctx := pcaCtx()
			root := mkRoot(t, e, "Race Delete Root")
			leaf := tagLeaf(t, e, root, "raced.example.com")
			hs.beforeTagWrite = func() { require.NoError(t, e.DeleteCertificate(ctx, "t1", leaf)) }
			err := e.CreateTag(ctx, "t1", pca.TagCertificates, leaf, pca.Tag{Key: "k", Value: "v"})
			assert.Equal(t, pca.ReasonNotFound, signer.ReasonOf(err), "%v", err)
			_, err = st.Get(ctx, pca.RecordCertTags, "t1", leaf)
			assert.ErrorIs(t, err, store.ErrNotFound, "no tags outlive their certificate")
		})
	}
}

// newPCACoreOver is a core whose store is wrap(the backend's store).
func newPCACoreOver(t *testing.T, backend string, wrap func(store.Store) store.Store) *signer.Core {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	var st store.Store
	switch backend {
	case "bolt":
		st, err = boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	case "redis":
		st, err = redisstore.Open(context.Background(), testenv.StartRedis(t).URL(), redisstore.Options{})
	}
	require.NoError(t, err)
	core := signer.New(signer.Options{Families: []signer.Family{pca.Family()}, Store: wrap(st), HSM: h})
	t.Cleanup(func() { core.Close(); st.Close() })
	return core
}
