package pca_test

import (
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

// newIndexedPCAEngine is newPCAEngine over a store opened with the
// family's index declaration, as the daemon opens it.
func newIndexedPCAEngine(t *testing.T, backend string) (*pca.Service, store.Store, func(time.Duration)) {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	var st store.Store
	switch backend {
	case "bolt":
		st, err = boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{Indexes: signer.StoreIndexes(pca.Family())})
	case "redis":
		r := testenv.StartRedis(t)
		st, err = redisstore.Open(context.Background(), r.URL(), redisstore.Options{Indexes: signer.StoreIndexes(pca.Family())})
	}
	require.NoError(t, err)
	clk := &testClock{}
	core := signer.New(signer.Options{Families: []signer.Family{pca.Family()}, Store: st, HSM: h, Now: clk.now})
	t.Cleanup(func() { core.Close(); st.Close() })
	return pca.New(core), st, clk.set
}

// Certificate lists by every status and sort key, after revocations and
// expiries, give the totals and the order that the certificates' own
// states and fields give, on the index-served paths of both backends.
func TestPCAListCertificatesByStatusAndSortKey(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			e, st, setClock := newIndexedPCAEngine(t, backend)
			ctx := pcaCtx()
			root := mkRoot(t, e, "List Root")
			names := []string{"delta", "alpha", "charlie", "bravo", "alpha", "echo", "delta", "foxtrot", "alpha", "golf", "hotel", "india"}
			var ids []string
			for i, cn := range names {
				id, err := e.IssueCertificate(ctx, "t1", pca.CertIssue{IssuerID: root,
					DN: &pca.DistinguishedName{CommonName: cn}, Validity: &pca.Validity{Type: "HOUR", Value: int64(1 + (i*5)%7)}})
				require.NoError(t, err)
				ids = append(ids, id)
			}
			for _, i := range []int{1, 4, 9} {
				require.NoError(t, e.RevokeCertificate(ctx, "t1", ids[i], "KEY_COMPROMISE"))
			}
			// A record stored before the expiry field existed.
			old, err := st.Get(context.Background(), "pca_certificate", "t1", ids[7])
			require.NoError(t, err)
			delete(old.Fields, "expiry")
			require.NoError(t, st.Update(context.Background(), old, store.WriteOpts{}))
			setClock(3*time.Hour + 30*time.Minute)

			all := make([]*pca.Certificate, len(ids))
			for i, id := range ids {
				all[i], err = e.GetCertificate(ctx, "t1", id)
				require.NoError(t, err)
			}
			counts := map[string]int{}
			for _, c := range all {
				counts[c.Status]++
			}
			require.Positive(t, counts["ISSUED"])
			require.Positive(t, counts["EXPIRED"])
			require.Equal(t, 3, counts["REVOKED"])

			for _, status := range []string{"", "ISSUED", "EXPIRED", "REVOKED"} {
				for _, name := range []string{"", "ALPH", "a"} {
					for _, key := range []string{"", "create_time", "common_name", "not_after"} {
						for _, dir := range []string{"", "ASC", "DESC"} {
							var want []string
							idx := []int{}
							for i, c := range all {
								if (status == "" || c.Status == status) && (name == "" || strings.Contains(strings.ToLower(c.DN.CommonName), strings.ToLower(name))) {
									idx = append(idx, i)
								}
							}
							slices.SortFunc(idx, func(a, b int) int {
								c := 0
								switch key {
								case "common_name":
									c = cmp.Compare(all[a].DN.CommonName, all[b].DN.CommonName)
								case "not_after":
									c = cmp.Compare(all[a].NotAfter, all[b].NotAfter)
								}
								if c == 0 {
									c = cmp.Compare(a, b)
								}
								if dir != "ASC" {
									c = -c
								}
								return c
							})
							for _, i := range idx {
								want = append(want, ids[i])
							}
							for _, pg := range [][2]int{{0, 100}, {0, 3}, {2, 3}, {0, 0}} {
								desc := fmt.Sprintf("status=%s name=%s sort=%s dir=%s offset=%d limit=%d", status, name, key, dir, pg[0], pg[1])
								list, total, err := e.ListCertificates(ctx, "t1", pca.CertQuery{Status: status, Name: name,
									SortKey: key, SortDir: dir, Offset: pg[0], Limit: pg[1]})
								require.NoError(t, err, desc)
								assert.Equal(t, len(want), total, desc)
								exp := want[min(pg[0], len(want)):]
								exp = exp[:min(pg[1], len(exp))]
								got := []string{}
								for _, c := range list {
									got = append(got, c.ID)
									if status != "" {
										assert.Equal(t, status, c.Status, desc)
									}
								}
								assert.Equal(t, append([]string{}, exp...), got, desc)
							}
						}
					}
				}
			}
		})
	}
}

// Seeding with RevokeEvery stores that share of certificates revoked, with
// their revocation entries: status lists count them and the CRL lists them.
func TestPCASeedRevokedShare(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			e, st, _ := newIndexedPCAEngine(t, backend)
			bs, ok := st.(bulkStore)
			require.True(t, ok)
			ca := mkRoot(t, e, "Seed Root")
			in := pca.CertFromCSR{IssuerID: ca, CSR: leafCSR(t, "seed.example.com"),
				Validity: &pca.Validity{Type: "DAY", Value: 30}}
			err := e.SeedCertificates(pcaCtx(), "t1", in, 20, pca.SeedOptions{Workers: 2, Batch: 7, RevokeEvery: 4},
				func(ctx context.Context, recs []store.Record, q store.Quota) error {
					return bs.BulkCreate(ctx, recs, q)
				})
			require.NoError(t, err)
			revoked, total := listIDs(t, e, pca.CertQuery{Status: "REVOKED", Limit: 100})
			assert.Equal(t, 5, total)
			assert.Len(t, revoked, 5)
			_, total = listIDs(t, e, pca.CertQuery{Status: "ISSUED", Limit: 100})
			assert.Equal(t, 15, total)
			for _, id := range revoked {
				c, err := e.GetCertificate(pcaCtx(), "t1", id)
				require.NoError(t, err)
				assert.Equal(t, "CESSATION_OF_OPERATION", c.RevokeReason)
			}
			require.NoError(t, e.SetCRL(pcaCtx(), "t1", ca, true, 7))
			der, err := e.PublicCRL(context.Background(), ca)
			require.NoError(t, err)
			crl, err := x509.ParseRevocationList(der)
			require.NoError(t, err)
			assert.Len(t, crl.RevokedCertificateEntries, 5)
		})
	}
}
