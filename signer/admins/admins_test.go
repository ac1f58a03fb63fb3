package admins

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

var backends = []string{"bolt", "redis"}

// openStore opens a fresh store; on redis, extra stores are further
// clients of the same server, as replicas would be.
func openStores(t *testing.T, backend string, n int) []store.Store {
	t.Helper()
	var out []store.Store
	switch backend {
	case "bolt":
		st, err := boltstore.Open(filepath.Join(t.TempDir(), "hsmca.db"), boltstore.Options{})
		require.NoError(t, err)
		for range n {
			out = append(out, st)
		}
		t.Cleanup(func() { st.Close() })
	case "redis":
		r := testenv.StartRedis(t)
		for range n {
			st, err := redisstore.Open(context.Background(), r.URL(), redisstore.Options{})
			require.NoError(t, err)
			t.Cleanup(func() { st.Close() })
			out = append(out, st)
		}
	}
	return out
}

func newService(t *testing.T, st store.Store, now ...func() time.Time) *Service {
	o := signer.Options{Families: []signer.Family{Family()}, Store: st}
	if len(now) > 0 {
		o.Now = now[0]
	}
	core := signer.New(o)
	t.Cleanup(func() { core.Close() })
	return New(core)
}

func opsCtx() context.Context {
	return signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
}

func adminIn(c *testpki.Cert, username, role string, enabled bool) Input {
	return Input{Username: username, Name: "Ada", Surname: "Lovelace", Email: username + "@example.com",
		Role: role, Enabled: enabled, Certificate: c.B64()}
}

func TestAdminLifecycle(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newService(t, openStores(t, backend, 1)[0])
			ctx := opsCtx()
			ca := testpki.NewCA(t, "Admin CA")
			c1 := ca.Issue(t, testpki.Options{CommonName: "root admin", Serial: big.NewInt(0x0abc),
				DNSNames: []string{"admin.example"}, IPs: []net.IP{net.ParseIP("192.0.2.7")}, Emails: []string{"root@example.com"}})

			root, err := e.Bootstrap(ctx, Input{Username: "root", Certificate: string(c1.PEM())}, BootstrapOptions{ProfileOptional: true})
			require.NoError(t, err)
			assert.Equal(t, signer.RoleSuperAdministrator, root.Role)
			assert.True(t, root.Enabled)
			assert.Equal(t, "abc", root.SerialNumber, "lowercase hex without leading zeros")

			c2 := ca.Issue(t, testpki.Options{CommonName: "operator"})
			a, err := e.Create(ctx, adminIn(c2, "op", signer.RoleAdministrator, false))
			require.NoError(t, err)
			assert.False(t, a.Enabled, "enabled defaults to false")

			got, err := e.Get(ctx, a.UUID)
			require.NoError(t, err)
			cert := got.Certificate
			assert.Equal(t, "operator", cert.CommonName)
			assert.Equal(t, "Admin CA", cert.IssuerCommonName)
			assert.Equal(t, c2.Cert.SerialNumber.Text(16), cert.SerialNumber)
			assert.Equal(t, encoding.Fingerprint(c2.Cert.Raw), cert.Fingerprint)
			assert.Equal(t, c2.Cert.Raw, cert.DER)
			assert.Equal(t, "ECDSA", cert.PublicKeyAlgorithm)
			assert.Equal(t, "ECDSA-SHA256", cert.SignatureAlgorithm)
			assert.Equal(t, 256, cert.KeySize)
			assert.Equal(t, []string{"1.3.6.1.5.5.7.3.2"}, cert.ExtendedKeyUsage)
			assert.Equal(t, []string{"digitalSignature"}, cert.KeyUsage)
			assert.Equal(t, "Subject Type=End Entity", cert.BasicConstraints)
			assert.Equal(t, "valid", cert.Status)
			assert.Equal(t, "CN=operator,O=hsmca tests", cert.SubjectDN)
			assert.Len(t, cert.SubjectAlternativeNames, 9)

			rootGot, err := e.Get(ctx, root.UUID)
			require.NoError(t, err)
			san := rootGot.Certificate.SubjectAlternativeNames
			assert.Equal(t, []string{"admin.example"}, san["dNSName"])
			assert.Equal(t, []string{"192.0.2.7"}, san["iPAddress"])
			assert.Equal(t, []string{"root@example.com"}, san["rfc822Name"])
			assert.Empty(t, san["otherName"])

			list, err := e.List(ctx)
			require.NoError(t, err)
			require.Len(t, list, 2)
			assert.Equal(t, []string{"root", "op"}, []string{list[0].Username, list[1].Username}, "creation order")

			// Edit: profile, role and certificate; the username stays.
			c3 := ca.Issue(t, testpki.Options{CommonName: "operator renewed"})
			name, role := "Grace", signer.RoleSuperAdministrator
			ed, err := e.Edit(ctx, a.UUID, Edit{Name: &name, Role: &role, Certificate: c3.B64()})
			require.NoError(t, err)
			assert.Equal(t, "Grace", ed.Name)
			assert.Equal(t, "Lovelace", ed.Surname, "absent fields keep their value")
			assert.Equal(t, signer.RoleSuperAdministrator, ed.Role)
			assert.Equal(t, encoding.SerialHex(c3.Cert.SerialNumber), ed.SerialNumber)
			assert.NotEqual(t, got.Certificate.UUID, ed.Certificate.UUID, "a new certificate has a new uuid")
			other := "someone"
			_, err = e.Edit(ctx, a.UUID, Edit{Username: &other})
			assert.Equal(t, signer.KindInvalid, signer.KindOf(err))

			// The old certificate no longer authenticates, the new one does once enabled.
			require.NoError(t, e.SetEnabled(ctx, a.UUID, true))
			_, err = e.Authenticate(ctx, c2.Cert)
			assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))
			caller, err := e.Authenticate(ctx, c3.Cert)
			require.NoError(t, err)
			assert.Equal(t, signer.Caller{Principal: "admin:" + encoding.SerialHex(c3.Cert.SerialNumber), Roles: []string{signer.RoleSuperAdministrator}}, caller)

			require.NoError(t, e.Delete(ctx, a.UUID))
			_, err = e.Get(ctx, a.UUID)
			assert.Equal(t, signer.KindNotFound, signer.KindOf(err))
			assert.Equal(t, signer.KindNotFound, signer.KindOf(e.Delete(ctx, a.UUID)))
			_, err = e.Authenticate(ctx, c3.Cert)
			assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))

			// The freed username and serial can be used again.
			_, err = e.Create(ctx, adminIn(c3, "op", signer.RoleAdministrator, true))
			require.NoError(t, err)

			evs, err := e.core.ListEvents(ctx, store.PlatformTenant, 0, 0)
			require.NoError(t, err)
			var ops []string
			for _, ev := range evs {
				if ev.Outcome == "SUCCESS" {
					ops = append(ops, ev.Operation)
				}
				assert.Equal(t, "ops:test", ev.Principal)
			}
			for _, want := range []string{"ADMIN_BOOTSTRAP", "ADMIN_CREATE", "ADMIN_RETRIEVE", "ADMIN_RETRIEVE_LIST",
				"ADMIN_UPDATE", "ADMIN_ENABLE", "ADMIN_DELETE"} {
				assert.Contains(t, ops, want)
			}
			assert.Contains(t, evs[len(evs)-1].Resource, "-", "the resource is the admin's uuid")
		})
	}
}

func TestAdminValidation(t *testing.T) {
	e := newService(t, openStores(t, "bolt", 1)[0])
	ctx := opsCtx()
	ca := testpki.NewCA(t, "CA")
	good := ca.Issue(t, testpki.Options{CommonName: "x"})
	expired := ca.Issue(t, testpki.Options{CommonName: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})

	fields := func(err error) []string {
		var out []string
		for _, f := range signer.AsError(err).Fields {
			out = append(out, f.Field)
		}
		return out
	}
	_, err := e.Create(ctx, Input{})
	require.Equal(t, signer.KindInvalid, signer.KindOf(err))
	assert.ElementsMatch(t, []string{"username", "name", "surname", "email", "role", "adminCertificate"}, fields(err),
		"every failure is reported at once")

	cases := []struct {
		name  string
		mod   func(*Input)
		field string
	}{
		{"bad email", func(in *Input) { in.Email = "not-an-email" }, "email"},
		{"email with display name", func(in *Input) { in.Email = "Ada <a@example.com>" }, "email"},
		{"username with space", func(in *Input) { in.Username = "a b" }, "username"},
		{"bad role", func(in *Input) { in.Role = "root" }, "role"},
		{"control character", func(in *Input) { in.Name = "A\x00" }, "name"},
		{"not base64", func(in *Input) { in.Certificate = "%%%" }, "adminCertificate"},
		{"not a certificate", func(in *Input) { in.Certificate = base64.StdEncoding.EncodeToString([]byte("hello")) }, "adminCertificate"},
		{"expired certificate", func(in *Input) { in.Certificate = expired.B64() }, "adminCertificate"},
		{"both certificate fields", func(in *Input) { in.CertificateUUID = "0b8e0ed4-5d0a-4a43-a3a4-3c4e8f3f6f55" }, "adminCertificate"},
		{"long description", func(in *Input) { in.Description = strings.Repeat("d", 2000) }, "description"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := adminIn(good, "user", signer.RoleAdministrator, false)
			tc.mod(&in)
			_, err := e.Create(ctx, in)
			require.Equal(t, signer.KindInvalid, signer.KindOf(err), "%v", err)
			assert.Equal(t, []string{tc.field}, fields(err))
		})
	}

	in := adminIn(good, "user", signer.RoleAdministrator, false)
	in.Certificate, in.CertificateUUID = "", "0b8e0ed4-5d0a-4a43-a3a4-3c4e8f3f6f55"
	_, err = e.Create(ctx, in)
	assert.Equal(t, signer.KindNotFound, signer.KindOf(err), "no certificate inventory yet: any certificateUuid is unknown")
	assert.Contains(t, err.Error(), "Certificate 0b8e0ed4")
}

func TestAdminDuplicates(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newService(t, openStores(t, backend, 1)[0])
			ctx := opsCtx()
			ca := testpki.NewCA(t, "CA")
			c1 := ca.Issue(t, testpki.Options{CommonName: "a", Serial: big.NewInt(77)})
			_, err := e.Create(ctx, adminIn(c1, "alice", signer.RoleAdministrator, true))
			require.NoError(t, err)

			_, err = e.Create(ctx, adminIn(ca.Issue(t, testpki.Options{}), "Alice", signer.RoleAdministrator, true))
			require.Equal(t, signer.KindConflict, signer.KindOf(err))
			assert.Equal(t, "Admin with username Alice already exists.", signer.AsError(err).Msg)
			assert.Equal(t, ReasonUsernameTaken, signer.ReasonOf(err))

			// Another CA's certificate with the same serial.
			other := testpki.NewCA(t, "Other CA").Issue(t, testpki.Options{Serial: big.NewInt(77)})
			_, err = e.Create(ctx, adminIn(other, "bob", signer.RoleAdministrator, true))
			require.Equal(t, signer.KindConflict, signer.KindOf(err))
			assert.Equal(t, "Admin with certificate serial number 4d already exists.", signer.AsError(err).Msg)
			assert.Equal(t, ReasonSerialTaken, signer.ReasonOf(err))

			// Concurrent creates of one username: exactly one wins.
			var wg sync.WaitGroup
			errs := make([]error, 8)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = e.Create(ctx, adminIn(ca.Issue(t, testpki.Options{}), "carol", signer.RoleAdministrator, true))
				}()
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
				} else {
					assert.Equal(t, signer.KindConflict, signer.KindOf(err), "%v", err)
				}
			}
			assert.Equal(t, 1, ok)
			list, err := e.List(ctx)
			require.NoError(t, err)
			assert.Len(t, list, 2)
		})
	}
}

func TestLastSuperAdministratorIsProtected(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newService(t, openStores(t, backend, 1)[0])
			ctx := opsCtx()
			ca := testpki.NewCA(t, "CA")
			root, err := e.Bootstrap(ctx, adminIn(ca.Issue(t, testpki.Options{}), "root", "", false), BootstrapOptions{})
			require.NoError(t, err)
			op, err := e.Create(ctx, adminIn(ca.Issue(t, testpki.Options{}), "op", signer.RoleAdministrator, true))
			require.NoError(t, err)

			wrongState := func(err error) {
				t.Helper()
				require.Equal(t, signer.KindWrongState, signer.KindOf(err), "%v", err)
				assert.Contains(t, err.Error(), "last enabled superAdministrator")
				assert.Equal(t, ReasonLastSuperAdministrator, signer.ReasonOf(err))
			}
			wrongState(e.SetEnabled(ctx, root.UUID, false))
			wrongState(e.Delete(ctx, root.UUID))
			wrongState(e.SetEnabledMany(ctx, []string{op.UUID, root.UUID}, false))
			wrongState(e.DeleteMany(ctx, []string{op.UUID, root.UUID, "nope"}))
			demote := signer.RoleAdministrator
			_, err = e.Edit(ctx, root.UUID, Edit{Role: &demote})
			wrongState(err)

			// All-or-none: the refused bulk calls changed nothing.
			got, err := e.Get(ctx, op.UUID)
			require.NoError(t, err)
			assert.True(t, got.Enabled)
			got, err = e.Get(ctx, root.UUID)
			require.NoError(t, err)
			assert.Equal(t, signer.RoleSuperAdministrator, got.Role)

			// A disabled superAdministrator does not count.
			super := signer.RoleSuperAdministrator
			_, err = e.Edit(ctx, op.UUID, Edit{Role: &super})
			require.NoError(t, err)
			require.NoError(t, e.SetEnabled(ctx, op.UUID, false))
			wrongState(e.Delete(ctx, root.UUID))
			require.NoError(t, e.SetEnabled(ctx, op.UUID, true))
			require.NoError(t, e.Delete(ctx, root.UUID), "another enabled superAdministrator remains")
			wrongState(e.SetEnabled(ctx, op.UUID, false))

			// Bulk calls skip unknown ids.
			require.NoError(t, e.SetEnabledMany(ctx, []string{"x", root.UUID, "6f1d0a39-98b5-4a1e-9b4c-111111111111"}, true))
			require.NoError(t, e.DeleteMany(ctx, nil))
		})
	}
}

// Two replicas disabling the only two superAdministrators at the same
// time: exactly one may win, on each store.
func TestLastSuperAdministratorUnderConcurrency(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			stores := openStores(t, backend, 2)
			e1, e2 := newService(t, stores[0]), newService(t, stores[1])
			ctx := opsCtx()
			ca := testpki.NewCA(t, "CA")
			for round := range 5 {
				a, err := e1.Create(ctx, adminIn(ca.Issue(t, testpki.Options{}), "a"+string(rune('0'+round)), signer.RoleSuperAdministrator, true))
				require.NoError(t, err)
				b, err := e2.Create(ctx, adminIn(ca.Issue(t, testpki.Options{}), "b"+string(rune('0'+round)), signer.RoleSuperAdministrator, true))
				require.NoError(t, err)
				// Leave only a and b enabled.
				list, err := e1.List(ctx)
				require.NoError(t, err)
				var others []string
				for _, x := range list {
					if x.UUID != a.UUID && x.UUID != b.UUID {
						others = append(others, x.UUID)
					}
				}
				require.NoError(t, e1.DeleteMany(ctx, others))

				var wg sync.WaitGroup
				var errA, errB error
				wg.Add(2)
				go func() { defer wg.Done(); errA = e1.SetEnabled(ctx, a.UUID, false) }()
				go func() {
					defer wg.Done()
					if round%2 == 0 {
						errB = e2.SetEnabled(ctx, b.UUID, false)
					} else {
						errB = e2.Delete(ctx, b.UUID)
					}
				}()
				wg.Wait()
				assert.True(t, (errA == nil) != (errB == nil), "exactly one succeeds: %v / %v", errA, errB)
				r, _, err := e1.loadRoster(ctx)
				require.NoError(t, err)
				assert.Equal(t, 1, r.enabledSupers())
				// Restore a second superAdministrator for the next round.
				if errA == nil {
					require.NoError(t, e1.SetEnabled(ctx, a.UUID, true))
				}
			}
		})
	}
}

func TestBootstrap(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			stores := openStores(t, backend, 2)
			e1, e2 := newService(t, stores[0]), newService(t, stores[1])
			ctx := opsCtx()
			ca := testpki.NewCA(t, "CA")

			in := adminIn(ca.Issue(t, testpki.Options{}), "root", signer.RoleAdministrator, false)
			_, err := e1.Bootstrap(ctx, in, BootstrapOptions{})
			require.Equal(t, signer.KindInvalid, signer.KindOf(err), "the first administrator must be a superAdministrator")

			// Concurrent first bootstraps on two replicas: one wins.
			var wg sync.WaitGroup
			errs := make([]error, 6)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					e := e1
					if i%2 == 1 {
						e = e2
					}
					_, errs[i] = e.Bootstrap(ctx, adminIn(ca.Issue(t, testpki.Options{}), "root"+string(rune('a'+i)), "", false), BootstrapOptions{})
				}()
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
				} else {
					assert.Equal(t, signer.KindWrongState, signer.KindOf(err), "%v", err)
				}
			}
			assert.Equal(t, 1, ok)
			list, err := e1.List(ctx)
			require.NoError(t, err)
			require.Len(t, list, 1, "losers left no record behind")
			assert.True(t, list[0].Enabled)

			_, err = e1.Bootstrap(ctx, adminIn(ca.Issue(t, testpki.Options{}), "late", "", false), BootstrapOptions{})
			assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
			assert.Equal(t, ReasonBootstrapDone, signer.ReasonOf(err))
			rec, err := e1.Bootstrap(ctx, adminIn(ca.Issue(t, testpki.Options{}), "late", "", false), BootstrapOptions{Recover: true})
			require.NoError(t, err)
			assert.Equal(t, signer.RoleSuperAdministrator, rec.Role)
			assert.True(t, rec.Enabled)
		})
	}
}

// A crash can leave an admin record without roster entry (creation) or a
// tombstoned record (deletion). Neither may lock out its username or
// certificate for good.
func TestInterruptedWritesAreReclaimed(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			st := openStores(t, backend, 1)[0]
			e := newService(t, st)
			ctx := opsCtx()
			ca := testpki.NewCA(t, "CA")
			cert := ca.Issue(t, testpki.Options{})

			orphan := &adminRecord{UUID: "3f0c4a52-8f7e-4b8e-9f51-0d5c2e0b7a11", Username: "root", CertUUID: "c",
				CertDER: cert.Cert.Raw, Serial: encoding.SerialHex(cert.Cert.SerialNumber), Fingerprint: encoding.Fingerprint(cert.Cert.Raw)}
			data, _ := json.Marshal(orphan)
			require.NoError(t, st.Create(ctx, &store.Record{Kind: RecordAdmin, Tenant: store.PlatformTenant, ID: orphan.UUID,
				Unique: orphan.unique(), Data: data}, store.WriteOpts{}))

			list, err := e.List(ctx)
			require.NoError(t, err)
			require.Len(t, list, 1)
			assert.False(t, list[0].Enabled, "a record without roster entry is a disabled administrator")
			assert.Equal(t, signer.RoleAdministrator, list[0].Role)
			_, err = e.Authenticate(ctx, cert.Cert)
			assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))

			// The first bootstrap retried with the same certificate succeeds.
			root, err := e.Bootstrap(ctx, adminIn(cert, "root", "", false), BootstrapOptions{})
			require.NoError(t, err)
			_, err = st.Get(ctx, RecordAdmin, store.PlatformTenant, orphan.UUID)
			assert.ErrorIs(t, err, store.ErrNotFound)

			// A deletion interrupted after its tombstone.
			c2 := ca.Issue(t, testpki.Options{})
			op, err := e.Create(ctx, adminIn(c2, "op", signer.RoleAdministrator, true))
			require.NoError(t, err)
			require.NoError(t, e.mutateRoster(ctx, "deleted", func(r *adminRoster) error {
				r.Admins[op.UUID] = rosterEntry{Role: signer.RoleAdministrator, Deleted: true}
				return nil
			}))
			_, err = e.Get(ctx, op.UUID)
			assert.Equal(t, signer.KindNotFound, signer.KindOf(err), "a tombstoned admin is gone")
			_, err = e.Authenticate(ctx, c2.Cert)
			assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))
			_, err = e.Create(ctx, adminIn(c2, "op", signer.RoleAdministrator, true))
			require.NoError(t, err, "its username and serial are reclaimed")
			_, err = e.Get(ctx, root.UUID)
			require.NoError(t, err)
		})
	}
}

func TestAuthenticateAdmin(t *testing.T) {
	var later atomic.Int64 // how far the clock runs ahead
	e := newService(t, openStores(t, "bolt", 1)[0], func() time.Time { return time.Now().Add(time.Duration(later.Load())) })
	ctx := opsCtx()
	ca := testpki.NewCA(t, "CA")
	cert := ca.Issue(t, testpki.Options{Serial: big.NewInt(0x00ff01), NotAfter: time.Now().Add(48 * time.Hour)})
	root, err := e.Bootstrap(ctx, adminIn(cert, "root", "", false), BootstrapOptions{})
	require.NoError(t, err)
	assert.Equal(t, "expiring", root.Certificate.Status)

	c, err := e.Authenticate(ctx, cert.Cert)
	require.NoError(t, err)
	assert.Equal(t, "admin:ff01", c.Principal)
	assert.Empty(t, c.Tenant)

	// Same serial, same subject, another key: not the registered certificate.
	twin := ca.Issue(t, testpki.Options{Serial: big.NewInt(0xff01)})
	_, err = e.Authenticate(ctx, twin.Cert)
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))

	unknown := ca.Issue(t, testpki.Options{})
	_, err = e.Authenticate(ctx, unknown.Cert)
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))

	later.Store(int64(72 * time.Hour))
	_, err = e.Authenticate(ctx, cert.Cert)
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err), "an expired certificate is refused")
	got, err := e.Get(ctx, root.UUID)
	require.NoError(t, err)
	assert.Equal(t, "expired", got.Certificate.Status)
}

func TestParseAdminCertificate(t *testing.T) {
	ca := testpki.NewCA(t, "CA")
	c := ca.Issue(t, testpki.Options{})
	raw := c.Cert.Raw
	pemText := string(c.PEM())
	folded := strings.ReplaceAll(strings.TrimSpace(pemText), "\n", " ")
	for name, in := range map[string]string{
		"std base64":    base64.StdEncoding.EncodeToString(raw),
		"raw base64":    base64.RawStdEncoding.EncodeToString(raw),
		"url base64":    base64.URLEncoding.EncodeToString(raw),
		"wrapped":       strings.Join(chunk(base64.StdEncoding.EncodeToString(raw), 64), "\n"),
		"pem":           pemText,
		"pem bundle":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})) + pemText + string(ca.PEM()),
		"folded header": folded,
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseCertificate(in)
			require.NoError(t, err)
			assert.Equal(t, raw, got.Raw)
		})
	}
	for name, in := range map[string]string{
		"empty":     "",
		"garbage":   "!!!",
		"not DER":   base64.StdEncoding.EncodeToString([]byte("certificate")),
		"empty pem": "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
		"key only":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseCertificate(in)
			assert.Error(t, err)
		})
	}
}

func chunk(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// FuzzParseCertificate feeds the parser of the X-APP-CERTIFICATE
// header and of adminCertificate: it must never panic, and what it
// accepts is a certificate with a positive serial.
func FuzzParseCertificate(f *testing.F) {
	f.Add("")
	f.Add("-----BEGIN CERTIFICATE-----")
	f.Add("-----BEGIN CERTIFICATE----- AAAA -----END CERTIFICATE-----")
	f.Add("MIIB")
	f.Add("%2D%2D%2D%2D%2DBEGIN")
	f.Add(string(testpki.NewCA(f, "seed").PEM()))
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCertificate(s)
		if err == nil {
			if c == nil || c.SerialNumber.Sign() <= 0 {
				t.Fatalf("accepted %q without a positive serial", s)
			}
			_ = describeCertificate(c, "u", time.Now())
		}
	})
}
