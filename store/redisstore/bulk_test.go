package redisstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/redisstore"
	"github.com/hsmca/hsmca/store/storetest"
)

func TestBulkAndOffsetOrder(t *testing.T) {
	r := testenv.StartRedis(t)
	var n atomic.Int64
	storetest.RunBulk(t, func(t *testing.T) store.Store {
		return open(t, r.URL(), redisstore.Options{KeyPrefix: fmt.Sprintf("bulk%d", n.Add(1))})
	})
}
