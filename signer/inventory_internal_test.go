package signer

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

func TestInventoryGauges(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	m := metrics.New("test")
	// One family of test CAs, with a quota used and one unused.
	test := Family{Name: "test", CAExpiry: []CAExpirySource{{Label: "test", RecordKind: "test_ca", Active: func(r *store.Record) (time.Time, bool) {
		if r.Fields["status"] != "ACTIVE" {
			return time.Time{}, false
		}
		na, err := time.Parse(time.RFC3339, r.Fields["not_after"])
		return na, err == nil
	}}}}
	test.Quotas = []QuotaDefault{{Resource: "keys", Default: 1000}, {Resource: "certs", Default: 100}}
	e := New(Options{Store: st, Metrics: m, Quotas: map[string]int64{"keys": 10},
		Families: []Family{test}})
	t.Cleanup(func() { e.Close(); st.Close() })
	ctx := context.Background()

	now := time.Now()
	for tenant, used := range map[string]int64{"acme": 9, "globex": 2} {
		// A tenant is known to the inventory once it has an event.
		require.NoError(t, e.Start(ctx, tenant, "TEST_OP").Done("", nil))
		require.NoError(t, st.ReserveQuota(ctx, tenant, "keys", used, -1))
	}
	put := func(tenant, id, status string, notAfter time.Time) {
		require.NoError(t, st.Create(ctx, &store.Record{Kind: "test_ca", Tenant: tenant, ID: id, Data: json.RawMessage(`{}`),
			Fields: map[string]string{"status": status, "not_after": notAfter.UTC().Format(time.RFC3339)}}, store.WriteOpts{}))
	}
	put("acme", "a", "ACTIVE", now.Add(90*24*time.Hour))
	put("globex", "b", "ACTIVE", now.Add(20*24*time.Hour))
	put("globex", "c", "DISABLED", now.Add(24*time.Hour)) // not active: ignored

	require.NoError(t, e.RefreshInventory(ctx))
	assert.InDelta(t, 0.9, gauge(t, m, "hsmca_quota_usage_ratio", "resource", "keys"), 1e-9)
	assert.Equal(t, 0.0, gauge(t, m, "hsmca_quota_usage_ratio", "resource", "certs"))
	assert.Equal(t, 2.0, gauge(t, m, "hsmca_ca_certificates", "kind", "test"))
	exp := gauge(t, m, "hsmca_ca_certificate_expiry_seconds", "kind", "test")
	assert.InDelta(t, (20 * 24 * time.Hour).Seconds(), exp, 120)

	// Store calls are timed by backend and operation; normal refusals are
	// not errors.
	_, err = e.store.Get(ctx, "test_ca", "acme", "missing")
	require.ErrorIs(t, err, store.ErrNotFound)
	fams, err := m.Registry.Gather()
	require.NoError(t, err)
	var timedGet bool
	for _, f := range fams {
		if f.GetName() == "hsmca_store_errors_total" {
			for _, mt := range f.GetMetric() {
				assert.Zero(t, mt.GetCounter().GetValue(), "store errors counted for normal answers: %v", labels(mt))
			}
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				assert.NotContains(t, []string{"acme", "globex"}, l.GetValue(), "tenant in a label of %s", f.GetName())
			}
			if f.GetName() == "hsmca_store_operation_duration_seconds" && labels(mt)["operation"] == "get" && labels(mt)["backend"] == "bolt" {
				timedGet = true
			}
		}
	}
	assert.True(t, timedGet, "store get timed")
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func gauge(t *testing.T, m *metrics.Metrics, name, label, value string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, mt := range f.GetMetric() {
			if labels(mt)[label] == value {
				return mt.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

func TestIDsInMessagesAreBounded(t *testing.T) {
	assert.Equal(t, "5e1c0a8e-7d0b-4c8e-9a57-0a3f1c2b9d10", ShortID("5e1c0a8e-7d0b-4c8e-9a57-0a3f1c2b9d10"))
	assert.Equal(t, `"a\nb"`, ShortID("a\nb"))
	assert.Equal(t, `"\xff"`, ShortID("\xff"))
	long := ShortID(string(make([]byte, 40000)))
	assert.Less(t, len(long), 300)
	assert.True(t, len(QuoteID("x")) == 3)
	assert.Equal(t, `key "abc" not found`, "key "+QuoteID("abc")+" not found")
}
