package signer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// Records appended at once from many goroutines and tenants are all
// written, each tenant's chain verifies, close waits for the queue, and a
// record after close is refused.
func TestEventWriterWritesEveryRecordAndDrainsOnClose(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	defer st.Close()
	w := newEventWriter(st, slog.New(slog.DiscardHandler))
	groups := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "g", Buckets: []float64{1, 2, 4}})
	w.groups = groups
	ctx := context.Background()
	const tenants, each = 3, 100
	var wg sync.WaitGroup
	for i := range tenants * each {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant := fmt.Sprintf("t%d", i%tenants)
			assert.NoError(t, w.append(ctx, tenant, EventRecord{Tenant: tenant, Operation: "TEST", Outcome: "SUCCESS", Resource: fmt.Sprint(i)}))
		}()
	}
	wg.Wait()
	w.close()
	assert.ErrorIs(t, w.append(ctx, "t0", EventRecord{Operation: "TEST"}), errEventsClosed)
	// Every record went in one observed group, and groups were shared.
	var m dto.Metric
	require.NoError(t, groups.Write(&m))
	assert.EqualValues(t, tenants*each, m.GetHistogram().GetSampleSum())
	assert.Less(t, m.GetHistogram().GetSampleCount(), uint64(tenants*each))
	for i := range tenants {
		tenant := fmt.Sprintf("t%d", i)
		evs, err := st.ListEvents(ctx, tenant, 0, 0)
		require.NoError(t, err)
		assert.Len(t, evs, each)
		_, err = store.VerifyChain(evs, "", 0)
		assert.NoError(t, err)
	}
}

// The event record's encoder writes what json.Marshal writes.
func TestEventRecordEncodingIsJSONMarshal(t *testing.T) {
	at := time.Date(2026, 12, 4, 7, 1, 2, 30405, time.UTC)
	for _, rec := range []EventRecord{
		{ID: "0b9e3f0a-2d7c-4e55-9a57-3f1f6f1b2c3d", Time: at, Tenant: "t1", Principal: "token:abc", Operation: "KEY_SIGN", Outcome: "SUCCESS", Resource: "k1"},
		{ID: "x", Time: at.Truncate(time.Second), Tenant: "_platform", Principal: "admin:01", Operation: "OP", Outcome: "FAIL",
			RequestID: "req<&>\"\u2028\xff", ErrorCode: "NOT_FOUND"},
		{Time: at.In(time.FixedZone("x", -7200))},
	} {
		want, err := json.Marshal(rec)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(appendEventRecord(nil, &rec)))
	}
}
