package apig_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/apig"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/storetest"
)

// faultHSM fails Delete once when armed: a crash between the commit of a
// replacement and the destruction of the old key looks the same to the
// reconciler.
type faultHSM struct {
	signer.HSM
	failDelete atomic.Bool
}

func (h *faultHSM) Delete(ctx context.Context, id string) error {
	if h.failDelete.CompareAndSwap(true, false) {
		return errors.New("injected: the HSM went away")
	}
	return h.HSM.Delete(ctx, id)
}

// faultStore makes the next Update fail: before writing (refuse or
// ambiguous) or after writing (an answer lost on the way back).
type faultStore struct {
	store.Store
	mode atomic.Value // "", "refuse", "lose-before", "lose-after"
}

func (s *faultStore) Update(ctx context.Context, rec *store.Record, opts store.WriteOpts) error {
	mode, _ := s.mode.Swap("").(string)
	return storetest.FailWrite(mode, store.ErrVersionConflict, func() error { return s.Store.Update(ctx, rec, opts) })
}

type apigEnv struct {
	c  *signer.Core
	s  *apig.Service
	h  *hsm.HSM
	fh *faultHSM
	st *faultStore
	ca *testpki.CA
}

func newAPIGEnv(t *testing.T, quotas map[string]int64) *apigEnv {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	bs, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	a := &apigEnv{h: h, fh: &faultHSM{HSM: h}, st: &faultStore{Store: bs}, ca: testpki.NewCA(t, "apig test CA")}
	a.c = signer.New(signer.Options{Families: []signer.Family{apig.Family()}, Store: a.st, HSM: a.fh, Quotas: quotas})
	a.s = apig.New(a.c)
	t.Cleanup(func() { a.c.Close(); bs.Close() })
	return a
}

func (a *apigEnv) input(t *testing.T, name, host string) apig.Input {
	c := a.ca.Issue(t, testpki.Options{CommonName: host, DNSNames: []string{host}, Server: true})
	return apig.Input{Name: name, CertContent: string(c.PEM()), PrivateKey: c.KeyPEM(t)}
}

func (a *apigEnv) exists(t *testing.T, id string) bool {
	ok, err := a.h.Exists(context.Background(), id)
	require.NoError(t, err)
	return ok
}

func (a *apigEnv) keyOf(t *testing.T, id string) string {
	rec, err := a.st.Get(context.Background(), apig.RecordCertificate, "t1", id)
	require.NoError(t, err)
	return rec.Fields[signer.KeyField]
}

func (a *apigEnv) intents(t *testing.T) []store.Intent {
	in, err := a.st.ListIntents(context.Background())
	require.NoError(t, err)
	return in
}

var ctxT1 = signer.WithCaller(context.Background(), signer.Caller{Tenant: "t1", Principal: "token:test"})

// A replacement interrupted at any point leaves exactly one key: the one
// the record names, after the reconciler has run.
func TestAPIGReplaceKeyCrashPoints(t *testing.T) {
	for _, tc := range []struct {
		name      string
		arm       func(a *apigEnv)
		wantErr   signer.Kind
		committed bool // the record names the new key
		settled   bool // nothing left for the reconciler
	}{
		{"store refuses the update", func(a *apigEnv) { a.st.mode.Store("refuse") }, signer.KindConflict, false, true},
		{"store lost before the update", func(a *apigEnv) { a.st.mode.Store("lose-before") }, signer.KindUnavailable, false, false},
		{"answer lost after the update", func(a *apigEnv) { a.st.mode.Store("lose-after") }, signer.KindUnavailable, true, false},
		{"old key not destroyed", func(a *apigEnv) { a.fh.failDelete.Store(true) }, -1, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPIGEnv(t, nil)
			c, err := a.s.Create(ctxT1, "t1", a.input(t, "cert_one", "one.example.com"))
			require.NoError(t, err)
			oldKey := a.keyOf(t, c.ID)

			tc.arm(a)
			_, err = a.s.Update(ctxT1, "t1", c.ID, a.input(t, "cert_one", "two.example.com"))
			if tc.wantErr >= 0 {
				require.Error(t, err)
				assert.Equal(t, tc.wantErr, signer.KindOf(err))
			} else {
				require.NoError(t, err)
			}
			named := a.keyOf(t, c.ID)
			assert.Equal(t, tc.committed, named != oldKey, "record names the new key")

			left := a.intents(t)
			if tc.settled {
				assert.Empty(t, left)
			} else {
				require.Len(t, left, 1)
				assert.ElementsMatch(t, left[0].KeyIDs, []string{oldKey, left[0].KeyIDs[0]})
			}
			var newKey string
			for _, in := range left {
				newKey = in.KeyIDs[0]
			}
			if tc.committed {
				newKey = named
			}

			rep, err := a.c.Reconcile(context.Background(), nil, 0)
			require.NoError(t, err)
			assert.Empty(t, a.intents(t))
			assert.True(t, a.exists(t, named), "the key the record names survives")
			if named == oldKey {
				if newKey != "" {
					assert.False(t, a.exists(t, newKey), "the uncommitted new key is destroyed")
				}
			} else {
				assert.False(t, a.exists(t, oldKey), "the replaced key is destroyed")
			}
			if !tc.settled {
				assert.Equal(t, 1, rep.Destroyed)
			}
			keys, err := a.h.List(context.Background())
			require.NoError(t, err)
			assert.Len(t, keys, 1, "one HSM key for one certificate")
			// The certificate still works after the reconciler ran.
			got, err := a.s.Get(ctxT1, "t1", c.ID)
			require.NoError(t, err)
			if tc.committed {
				assert.Equal(t, "two.example.com", got.CommonName)
			} else {
				assert.Equal(t, "one.example.com", got.CommonName)
			}
		})
	}
}

// The quota is checked before anything reaches the HSM and is given back
// on delete.
func TestAPIGQuota(t *testing.T) {
	a := newAPIGEnv(t, map[string]int64{apig.QuotaCertificates: 1})
	c, err := a.s.Create(ctxT1, "t1", a.input(t, "cert_one", "one.example.com"))
	require.NoError(t, err)
	keys, err := a.h.List(context.Background())
	require.NoError(t, err)
	_, err = a.s.Create(ctxT1, "t1", a.input(t, "cert_two", "two.example.com"))
	assert.Equal(t, signer.KindQuotaExceeded, signer.KindOf(err))
	after, err := a.h.List(context.Background())
	require.NoError(t, err)
	assert.Len(t, after, len(keys))
	require.NoError(t, a.s.Delete(ctxT1, "t1", c.ID))
	_, err = a.s.Create(ctxT1, "t1", a.input(t, "cert_two", "two.example.com"))
	assert.NoError(t, err)
}

// The service clears the caller's copy of the private key, on success and
// on failure.
func TestAPIGClearsThePrivateKey(t *testing.T) {
	a := newAPIGEnv(t, nil)
	in := a.input(t, "cert_one", "one.example.com")
	key := in.PrivateKey
	_, err := a.s.Create(ctxT1, "t1", in)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, len(key)), key)

	in = a.input(t, "bad-name", "two.example.com")
	key = in.PrivateKey
	_, err = a.s.Create(ctxT1, "t1", in)
	assert.Equal(t, signer.KindInvalid, signer.KindOf(err))
	assert.Equal(t, make([]byte, len(key)), key)
}

// The family declares its quota (default 1000, configurable) and its
// certificates as owners of keys that the keys API can use but not manage;
// it needs no store index.
func TestFamily(t *testing.T) {
	c := signer.New(signer.Options{Families: []signer.Family{apig.Family()}})
	t.Cleanup(func() { c.Close() })
	assert.Equal(t, int64(1000), c.QuotaLimit(apig.QuotaCertificates))
	assert.Equal(t, []string{apig.QuotaCertificates}, c.QuotaResources())
	assert.Equal(t, []signer.KeyOwner{{RecordKind: "apig_certificate",
		Describe: "an APIG certificate; manage it through /v2/{project_id}/apigw/certificates"}}, c.KeyOwners())
	assert.Empty(t, apig.Family().Indexes)

	configured := signer.New(signer.Options{Families: []signer.Family{apig.Family()},
		Quotas: map[string]int64{apig.QuotaCertificates: 3}})
	t.Cleanup(func() { configured.Close() })
	assert.Equal(t, int64(3), configured.QuotaLimit(apig.QuotaCertificates))
}

// The list reads offset and limit as Huawei documents them: a negative
// offset is 0, a limit of 0 or less is 20 and one over 500 is 500.
func TestAPIGListPaging(t *testing.T) {
	a := newAPIGEnv(t, nil)
	const n = apig.DefaultLimit + 1
	for i := range n {
		_, err := a.s.Create(ctxT1, "t1", a.input(t, fmt.Sprintf("cert_%02d", i), fmt.Sprintf("h%d.example.com", i)))
		require.NoError(t, err)
	}
	for _, tc := range []struct {
		q         apig.Query
		want      int
		firstName string
	}{
		{apig.Query{}, apig.DefaultLimit, "cert_20"},
		{apig.Query{Limit: 0}, apig.DefaultLimit, "cert_20"},
		{apig.Query{Limit: -1}, apig.DefaultLimit, "cert_20"},
		{apig.Query{Limit: math.MinInt}, apig.DefaultLimit, "cert_20"},
		{apig.Query{Limit: apig.MaxLimit + 1}, n, "cert_20"},
		{apig.Query{Limit: math.MaxInt}, n, "cert_20"},
		{apig.Query{Offset: -1, Limit: 1}, 1, "cert_20"},
		{apig.Query{Offset: math.MinInt}, apig.DefaultLimit, "cert_20"},
		{apig.Query{Offset: 1, Limit: -7}, apig.DefaultLimit, "cert_19"},
		{apig.Query{Offset: n - 1}, 1, "cert_00"},
	} {
		got, total, err := a.s.List(ctxT1, "t1", tc.q)
		require.NoError(t, err, "%+v", tc.q)
		assert.Equal(t, n, total, "%+v", tc.q)
		require.Len(t, got, tc.want, "%+v", tc.q)
		assert.Equal(t, tc.firstName, got[0].Name, "%+v", tc.q)
	}
	got, total, err := a.s.List(ctxT1, "t1", apig.Query{AlgorithmType: apig.AlgorithmSM2})
	require.NoError(t, err)
	assert.Equal(t, 0, total)
	assert.NotNil(t, got)
	assert.Empty(t, got)
	_, _, err = a.s.List(ctxT1, "t1", apig.Query{AlgorithmType: "ecc"})
	assert.Equal(t, signer.KindInvalid, signer.KindOf(err))
	got, total, err = a.s.List(ctxT1, "t1", apig.Query{AlgorithmType: apig.AlgorithmECC, Limit: -1})
	require.NoError(t, err)
	assert.Equal(t, n, total, "testpki keys are EC")
	assert.Len(t, got, apig.DefaultLimit)
	assert.Equal(t, apig.AlgorithmECC, got[0].AlgorithmType)
	_, total, err = a.s.List(ctxT1, "t1", apig.Query{AlgorithmType: apig.AlgorithmRSA})
	require.NoError(t, err)
	assert.Equal(t, 0, total)
}

// The service clears the caller's copy of private_key_sign too, whatever
// the outcome, also when the certificate to update does not exist.
func TestAPIGClearsTheSigningKey(t *testing.T) {
	a := newAPIGEnv(t, nil)
	signKey := func() []byte {
		return []byte("-----BEGIN PRIVATE KEY-----\nc2lnbmluZyBrZXk=\n-----END PRIVATE KEY-----\n")
	}
	cleared := func(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

	in := a.input(t, "cert_one", "one.example.com")
	in.PrivateKeySign = []byte{}
	c, err := a.s.Create(ctxT1, "t1", in)
	require.NoError(t, err)

	in = a.input(t, "cert_two", "two.example.com")
	in.PrivateKeySign = signKey()
	sk := in.PrivateKeySign
	_, err = a.s.Create(ctxT1, "t1", in)
	assert.Equal(t, signer.KindInvalid, signer.KindOf(err))
	assert.True(t, cleared(sk))

	in = a.input(t, "cert_one", "one.example.com")
	in.PrivateKeySign = signKey()
	sk = in.PrivateKeySign
	_, err = a.s.Update(ctxT1, "t1", strings.Repeat("ab", 16), in)
	assert.Equal(t, signer.KindNotFound, signer.KindOf(err))
	assert.True(t, cleared(sk))

	in = a.input(t, "cert_one", "one.example.com")
	in.PrivateKeySign = signKey()
	sk = in.PrivateKeySign
	_, err = a.s.Update(ctxT1, "t1", c.ID, in)
	assert.Equal(t, signer.KindInvalid, signer.KindOf(err))
	assert.True(t, cleared(sk))
}
