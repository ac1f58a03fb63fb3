package signer

import (
	"strconv"
	"time"

	"github.com/hsmca/hsmca/store"
)

// ACTIVED private CAs feed the CA-expiry gauges, roots and subordinates
// apart. One past its end still counts, with a negative expiry: the alert
// must keep firing until someone replaces it.
func init() {
	for label, typ := range map[string]string{"pca_root": CATypeRoot, "pca_subordinate": CATypeSubordinate} {
		caExpirySources = append(caExpirySources, caExpirySource{label: label, kind: kindPCACA,
			active: func(rec *store.Record) (time.Time, bool) {
				if rec.Fields["status"] != CAActived || rec.Fields["type"] != typ {
					return time.Time{}, false
				}
				ms, err := strconv.ParseInt(rec.Fields["not_after"], 10, 64)
				if err != nil || ms <= 0 {
					return time.Time{}, false
				}
				return time.UnixMilli(ms), true
			}})
	}
}
