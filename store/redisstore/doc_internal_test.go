package redisstore

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
)

func TestDocMarshalIsTheRecordJSON(t *testing.T) {
	now := time.Date(2026, 12, 3, 1, 2, 3, 4, time.UTC)
	data, err := storekit.NormalizeJSON(json.RawMessage(`{ "pem": "a<b>&c", "n": [1, 2] }`))
	require.NoError(t, err)
	d := docNoSeq{Kind: "cert", Tenant: "t1", ID: "c1", Unique: []string{"serial:01"},
		Fields: map[string]string{"data": "x"}, Data: data, Version: 1, Created: now, Updated: now}
	b, err := d.marshal()
	require.NoError(t, err)
	assert.True(t, json.Valid(b))
	assert.Contains(t, string(b), `,"data":`+string(data)+`}`, "the data as given, last")

	var got store.Record
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, store.Record{Kind: "cert", Tenant: "t1", ID: "c1", Unique: []string{"serial:01"},
		Fields: map[string]string{"data": "x"}, Data: data, Version: 1, Created: now, Updated: now}, got)

	d.Data = nil
	_, err = d.marshal()
	assert.Error(t, err)
}
