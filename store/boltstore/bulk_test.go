package boltstore_test

import (
	"testing"

	"github.com/hsmca/hsmca/store/storetest"
)

func TestBulkAndOffsetOrder(t *testing.T) {
	storetest.RunBulk(t, open)
}
