package pca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"slices"
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

var pcaBackends = []string{"bolt", "redis"}

// newPCAEngine is the family over a fresh token and store, with a clock
// the test moves and room for many CAs.
func newPCAEngine(t *testing.T, backend string) (*pca.Service, store.Store, func(time.Duration)) {
	core, st, setClock := newPCACore(t, backend)
	return pca.New(core), st, setClock
}

// newPCACore is the core under newPCAEngine.
func newPCACore(t *testing.T, backend string) (*signer.Core, store.Store, func(time.Duration)) {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	var st store.Store
	switch backend {
	case "bolt":
		st, err = boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	case "redis":
		r := testenv.StartRedis(t)
		st, err = redisstore.Open(context.Background(), r.URL(), redisstore.Options{})
	}
	require.NoError(t, err)
	clk := &testClock{}
	core := signer.New(signer.Options{Families: []signer.Family{pca.Family()}, Store: st, HSM: h,
		Quotas: map[string]int64{pca.QuotaCAs: 1000}, Now: clk.now})
	t.Cleanup(func() { core.Close(); st.Close() })
	return core, st, clk.set
}

func pcaCtx() context.Context {
	return signer.WithCaller(context.Background(), signer.Caller{Tenant: "t1", Principal: "token:test"})
}

func caDN(cn string) *pca.DistinguishedName {
	return &pca.DistinguishedName{CommonName: cn, Country: "FR", State: "IDF", Locality: "Paris",
		Organization: "hsmca tests", OrganizationalUnit: "PKI"}
}

func mkRoot(t *testing.T, e *pca.Service, cn string) string {
	t.Helper()
	id, err := e.CreateCA(pcaCtx(), "t1", pca.CACreate{Type: "ROOT", DN: caDN(cn), KeyAlgorithm: "EC256",
		SignatureAlgorithm: "SHA256", Validity: &pca.Validity{Type: "YEAR", Value: 10}})
	require.NoError(t, err)
	return id
}

func mkSub(t *testing.T, e *pca.Service, cn, issuer string, v pca.Validity, pathLen int) string {
	t.Helper()
	in := pca.CACreate{Type: "SUBORDINATE", DN: caDN(cn), KeyAlgorithm: "EC256", PathLength: &pathLen}
	if issuer != "" {
		in.IssuerID, in.SignatureAlgorithm, in.Validity = issuer, "SHA256", &v
	}
	id, err := e.CreateCA(pcaCtx(), "t1", in)
	require.NoError(t, err)
	return id
}

// externalCert signs a CA's CSR with a software CA outside hsmca.
func externalCert(t *testing.T, e *pca.Service, caID string) string {
	return signExternally(t, e, caID, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, true)
}

// signExternally signs a PENDING CA's CSR with a new software root outside
// hsmca, with the key usage ku (0: no keyUsage extension) and, when
// pathLenZero, a path length of 0.
func signExternally(t *testing.T, e *pca.Service, caID string, ku x509.KeyUsage, pathLenZero bool) string {
	t.Helper()
	csrPEM, err := e.CACSR(pcaCtx(), "t1", caID)
	require.NoError(t, err)
	b, _ := pem.Decode([]byte(csrPEM))
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	extTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "External Root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * 365 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	extDER, err := x509.CreateCertificate(rand.Reader, extTmpl, extTmpl, key.Public(), key)
	require.NoError(t, err)
	ext, _ := x509.ParseCertificate(extDER)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * 180 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: pathLenZero, KeyUsage: ku}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ext, csr.PublicKey, key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

type pcaOpCase struct {
	name    string
	allowed map[string]string // from -> status after ("" = gone)
	run     func(id string) error
}

// Every operation of the CA state machine from every status: the allowed
// ones succeed and lead where API.md says, the rest are refused with a
// wrong-state error that names the current status.
func TestPCAStateMachineEveryStatusEveryOperation(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			e, _, setClock := newPCAEngine(t, backend)
			ctx := pcaCtx()
			root := mkRoot(t, e, "Root")
			long := pca.Validity{Type: "YEAR", Value: 5}
			hour := pca.Validity{Type: "HOUR", Value: 1}

			// Subjects in each status. EXPIRED ones are made with one hour
			// of validity before the clock moves two hours on.
			make := map[string]func() string{
				"PENDING": func() string { return mkSub(t, e, "Pending", "", long, 0) },
				"ACTIVED": func() string { return mkSub(t, e, "Active", root, long, 0) },
				"DISABLED": func() string {
					id := mkSub(t, e, "Disabled", root, long, 0)
					require.NoError(t, e.DisableCA(ctx, "t1", id))
					return id
				},
				"EXPIRED": func() string { return mkSub(t, e, "Expired", root, hour, 0) },
				"REVOKED": func() string {
					id := mkSub(t, e, "Revoked", root, long, 0)
					require.NoError(t, e.RevokeCA(ctx, "t1", id, "SUPERSEDED"))
					return id
				},
				"DELETED": func() string {
					id := mkSub(t, e, "Deleted", root, long, 0)
					require.NoError(t, e.DisableCA(ctx, "t1", id))
					require.NoError(t, e.DeleteCA(ctx, "t1", id, 7))
					return id
				},
			}
			ops := []pcaOpCase{
				{"activate", map[string]string{"PENDING": "ACTIVED"}, func(id string) error {
					pl := 0
					return e.ActivateCA(ctx, "t1", id, pca.CAActivate{IssuerID: root, SignatureAlgorithm: "SHA256",
						Validity: &pca.Validity{Type: "YEAR", Value: 1}, PathLength: &pl})
				}},
				{"import", map[string]string{"PENDING": "ACTIVED"}, nil}, // set below: needs the CSR
				{"csr", map[string]string{"PENDING": "PENDING"}, func(id string) error {
					_, err := e.CACSR(ctx, "t1", id)
					return err
				}},
				{"disable", map[string]string{"ACTIVED": "DISABLED", "EXPIRED": "DISABLED"}, func(id string) error {
					return e.DisableCA(ctx, "t1", id)
				}},
				{"enable", map[string]string{"DISABLED": "ACTIVED"}, func(id string) error {
					return e.EnableCA(ctx, "t1", id)
				}},
				{"delete", map[string]string{"PENDING": "", "REVOKED": "", "DISABLED": "DELETED", "EXPIRED": "DELETED"}, func(id string) error {
					return e.DeleteCA(ctx, "t1", id, 7)
				}},
				{"restore", map[string]string{"DELETED": "DISABLED"}, func(id string) error {
					return e.RestoreCA(ctx, "t1", id)
				}},
				{"revoke", map[string]string{"ACTIVED": "REVOKED"}, func(id string) error {
					return e.RevokeCA(ctx, "t1", id, "")
				}},
				{"issue", map[string]string{"ACTIVED": "ACTIVED"}, func(id string) error {
					_, err := e.IssueCertificate(ctx, "t1", pca.CertIssue{IssuerID: id,
						DN: &pca.DistinguishedName{CommonName: "leaf"}, Validity: &pca.Validity{Type: "DAY", Value: 1}})
					return err
				}},
				{"export", map[string]string{"ACTIVED": "ACTIVED", "DISABLED": "DISABLED", "EXPIRED": "EXPIRED", "REVOKED": "REVOKED"}, func(id string) error {
					_, _, err := e.ExportCA(ctx, "t1", id)
					return err
				}},
				{"crl", map[string]string{"PENDING": "PENDING", "ACTIVED": "ACTIVED", "DISABLED": "DISABLED", "EXPIRED": "EXPIRED"}, func(id string) error {
					return e.SetCRL(ctx, "t1", id, true, 7)
				}},
			}
			type subject struct{ op, from, id, cert string }
			var subjects []subject
			for _, op := range ops {
				for _, from := range pca.CAStatuses {
					s := subject{op: op.name, from: from, id: make[from]()}
					if op.name == "import" {
						if from == "PENDING" {
							s.cert = externalCert(t, e, s.id)
						} else {
							s.cert = externalCert(t, e, mkSub(t, e, "Donor", "", long, 0))
						}
					}
					subjects = append(subjects, s)
				}
			}
			setClock(2 * time.Hour)

			for i, s := range subjects {
				op := ops[slices.IndexFunc(ops, func(o pcaOpCase) bool { return o.name == s.op })]
				ca, err := e.GetCA(ctx, "t1", s.id)
				require.NoError(t, err)
				require.Equal(t, s.from, ca.Status, "subject %d set up", i)
				run := op.run
				if s.op == "import" {
					cert := s.cert
					run = func(id string) error { return e.ImportCACertificate(ctx, "t1", id, cert, "") }
				}
				err = run(s.id)
				to, allowed := op.allowed[s.from]
				if !allowed {
					require.Error(t, err, "%s from %s must be refused", s.op, s.from)
					se := signer.AsError(err)
					assert.Equal(t, signer.KindWrongState, se.Kind, "%s from %s: %v", s.op, s.from, err)
					assert.Equal(t, pca.ReasonCAState, se.Reason, "%s from %s: %v", s.op, s.from, err)
					assert.Contains(t, se.Msg, s.from, "the error names the current status")
					ca, err := e.GetCA(ctx, "t1", s.id)
					require.NoError(t, err)
					assert.Equal(t, s.from, ca.Status, "a refused %s changes nothing", s.op)
					continue
				}
				require.NoError(t, err, "%s from %s must succeed", s.op, s.from)
				ca, err = e.GetCA(ctx, "t1", s.id)
				if to == "" {
					assert.Equal(t, signer.KindNotFound, signer.KindOf(err), "%s from %s removes the CA", s.op, s.from)
					continue
				}
				require.NoError(t, err)
				assert.Equal(t, to, ca.Status, "%s from %s", s.op, s.from)
			}
		})
	}
}

// The table itself: every pair of operation and status has an answer, and
// nothing leads out of the documented statuses.
func TestPCATransitionTableIsClosed(t *testing.T) {
	ops := []pca.CAOp{pca.CAOpActivate, pca.CAOpImport, pca.CAOpCSR, pca.CAOpDisable,
		pca.CAOpEnable, pca.CAOpDelete, pca.CAOpRestore, pca.CAOpRevoke, pca.CAOpIssue,
		pca.CAOpExport, pca.CAOpCRL, pca.CAOpSignCRL, pca.CAOpPurge}
	issuing := 0
	for _, op := range ops {
		for _, from := range pca.CAStatuses {
			to, err := pca.CATransition(op, from)
			if err != nil {
				assert.Contains(t, err.Error(), from)
				continue
			}
			if op == pca.CAOpIssue {
				issuing++
				assert.Equal(t, "ACTIVED", from, "only ACTIVED issues")
			}
			assert.True(t, to == "" || slices.Contains(pca.CAStatuses, to), "%s from %s leads to %q", op, from, to)
			assert.False(t, to == "EXPIRED" && from != "EXPIRED", "EXPIRED is reached by time only")
		}
	}
	assert.Equal(t, 1, issuing)
	for _, op := range []pca.CertOp{pca.CertOpRevoke, pca.CertOpExport, pca.CertOpDelete} {
		for _, from := range []string{"ISSUED", "EXPIRED", "REVOKED"} {
			_, err := pca.CertTransition(op, from)
			if op == pca.CertOpRevoke && from == "REVOKED" {
				assert.Error(t, err)
				assert.Contains(t, err.Error(), "REVOKED")
			} else {
				assert.NoError(t, err, "%s from %s", op, from)
			}
		}
	}
}

// A scheduled deletion keeps the CA (and its key) until its day, restore
// brings it back DISABLED, and when the day comes the sweep destroys the
// key and gives back the quota unit.
func TestPCAScheduledDeletionRestoreAndPurge(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			core, st, setClock := newPCACore(t, backend)
			e := pca.New(core)
			ctx := pcaCtx()
			root := mkRoot(t, e, "Root")
			sub := mkSub(t, e, "Sub", root, pca.Validity{Type: "YEAR", Value: 1}, 0)
			keyOf := func(id string) string {
				rec, err := st.Get(ctx, "pca_ca", "t1", id)
				require.NoError(t, err)
				return rec.Fields[signer.KeyField]
			}
			h, err := core.HSM()
			require.NoError(t, err)
			subKey := keyOf(sub)
			used := func() int64 {
				n, err := st.QuotaUsage(ctx, "t1", pca.QuotaCAs)
				require.NoError(t, err)
				return n
			}
			require.Equal(t, int64(2), used())

			leaf, err := e.IssueCertificate(ctx, "t1", pca.CertIssue{IssuerID: sub,
				DN: &pca.DistinguishedName{CommonName: "orphan"}, Validity: &pca.Validity{Type: "DAY", Value: 30}})
			require.NoError(t, err)
			require.NoError(t, e.DisableCA(ctx, "t1", sub))
			for _, days := range []int{6, 31, -1} {
				err := e.DeleteCA(ctx, "t1", sub, days)
				assert.Equal(t, pca.ReasonBadParameter, signer.ReasonOf(err), "pending_days %d", days)
			}
			require.NoError(t, e.DeleteCA(ctx, "t1", sub, 10))
			ca, err := e.GetCA(ctx, "t1", sub)
			require.NoError(t, err)
			assert.Equal(t, "DELETED", ca.Status)
			assert.InDelta(t, time.Now().Add(10*24*time.Hour).UnixMilli(), ca.DeleteTime, 60_000)
			_, err = e.IssueCertificate(ctx, "t1", pca.CertIssue{IssuerID: sub,
				DN: &pca.DistinguishedName{CommonName: "x"}, Validity: &pca.Validity{Type: "DAY", Value: 1}})
			assert.Equal(t, signer.KindWrongState, signer.KindOf(err), "a deleted CA never issues")

			// Restore before the day: DISABLED, key intact.
			setClock(9 * 24 * time.Hour)
			require.NoError(t, e.RestoreCA(ctx, "t1", sub))
			ca, err = e.GetCA(ctx, "t1", sub)
			require.NoError(t, err)
			assert.Equal(t, "DISABLED", ca.Status)
			assert.Zero(t, ca.DeleteTime)
			ok, err := h.Exists(ctx, subKey)
			require.NoError(t, err)
			assert.True(t, ok)

			// Delete again and let the day pass: the janitor purges it.
			require.NoError(t, e.DeleteCA(ctx, "t1", sub, 7))
			setClock(9*24*time.Hour + 7*24*time.Hour + time.Minute)
			n, err := e.SweepDeletedCAs(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			ok, err = h.Exists(ctx, subKey)
			require.NoError(t, err)
			assert.False(t, ok, "the HSM key of a purged CA is destroyed")
			_, err = e.GetCA(ctx, "t1", sub)
			assert.Equal(t, pca.ReasonNotFound, signer.ReasonOf(err))
			err = e.RestoreCA(ctx, "t1", sub)
			assert.Equal(t, pca.ReasonNotFound, signer.ReasonOf(err), "too late to restore")
			assert.Equal(t, int64(1), used(), "the quota unit is back")
			require.NoError(t, e.RevokeCertificate(ctx, "t1", leaf, "CESSATION_OF_OPERATION"),
				"a certificate of a purged CA can still be revoked")
			c, err := e.GetCertificate(ctx, "t1", leaf)
			require.NoError(t, err)
			assert.Equal(t, "REVOKED", c.Status)
			left, err := st.ListIntents(ctx)
			require.NoError(t, err)
			assert.Empty(t, left)

			// A PENDING CA goes at once, key and all.
			pending := mkSub(t, e, "Pending", "", pca.Validity{}, 0)
			pk := keyOf(pending)
			require.NoError(t, e.DeleteCA(ctx, "t1", pending, 0))
			ok, err = h.Exists(ctx, pk)
			require.NoError(t, err)
			assert.False(t, ok)
			assert.Equal(t, int64(1), used())
		})
	}
}

// A certificate past its notAfter reads EXPIRED, can still be revoked and
// exported, and a CA past its own is EXPIRED and issues nothing.
func TestPCAExpiryIsDerivedFromTime(t *testing.T) {
	e, _, setClock := newPCAEngine(t, "bolt")
	ctx := pcaCtx()
	root := mkRoot(t, e, "Root")
	sub := mkSub(t, e, "Short", root, pca.Validity{Type: "DAY", Value: 2}, 0)
	id, err := e.IssueCertificate(ctx, "t1", pca.CertIssue{IssuerID: sub,
		DN: &pca.DistinguishedName{CommonName: "leaf"}, Validity: &pca.Validity{Type: "HOUR", Value: 5}})
	require.NoError(t, err)
	_, err = e.IssueCertificate(ctx, "t1", pca.CertIssue{IssuerID: sub,
		DN: &pca.DistinguishedName{CommonName: "leaf"}, Validity: &pca.Validity{Type: "DAY", Value: 3}})
	assert.Equal(t, pca.ReasonBadValidity, signer.ReasonOf(err), "a leaf never outlives its issuer")

	setClock(6 * time.Hour)
	c, err := e.GetCertificate(ctx, "t1", id)
	require.NoError(t, err)
	assert.Equal(t, "EXPIRED", c.Status)
	list, total, err := e.ListCertificates(ctx, "t1", pca.CertQuery{Status: "EXPIRED", Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, 1, total)
	require.Len(t, list, 1)
	_, total, err = e.ListCertificates(ctx, "t1", pca.CertQuery{Status: "ISSUED", Limit: 10})
	require.NoError(t, err)
	assert.Zero(t, total)
	require.NoError(t, e.RevokeCertificate(ctx, "t1", id, "CESSATION_OF_OPERATION"))

	setClock(3 * 24 * time.Hour)
	ca, err := e.GetCA(ctx, "t1", sub)
	require.NoError(t, err)
	assert.Equal(t, "EXPIRED", ca.Status)
	_, err = e.IssueCertificate(ctx, "t1", pca.CertIssue{IssuerID: sub,
		DN: &pca.DistinguishedName{CommonName: "leaf"}, Validity: &pca.Validity{Type: "HOUR", Value: 1}})
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
	assert.Contains(t, err.Error(), "EXPIRED")
	cas, total, err := e.ListCAs(ctx, "t1", pca.CAQuery{Status: "EXPIRED", Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, 1, total)
	assert.Equal(t, sub, cas[0].ID)
}
