package signer

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

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
	for i := range tenants {
		tenant := fmt.Sprintf("t%d", i)
		evs, err := st.ListEvents(ctx, tenant, 0, 0)
		require.NoError(t, err)
		assert.Len(t, evs, each)
		_, err = store.VerifyChain(evs, "", 0)
		assert.NoError(t, err)
	}
}
