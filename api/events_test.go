package api_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
)

type eventJSON struct {
	Seq       uint64    `json:"seq"`
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Tenant    string    `json:"tenant"`
	Principal string    `json:"principal"`
	Operation string    `json:"operation"`
	Outcome   string    `json:"outcome"`
	Resource  string    `json:"resource"`
	RequestID string    `json:"requestId"`
	ErrorCode string    `json:"errorCode"`
	PrevHash  string    `json:"prevHash"`
	Hash      string    `json:"hash"`
}

type eventPage struct {
	Data       []eventJSON `json:"data"`
	NextCursor *string     `json:"nextCursor"`
}

// allEvents follows nextCursor from the first page of query to the end.
func allEvents(t *testing.T, env *apitest.Env, tok, query string) ([]eventJSON, int) {
	t.Helper()
	var out []eventJSON
	cursor, pages := "", 0
	for {
		pages++
		require.Less(t, pages, 500)
		q := query
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		r := env.Do("GET", "/v1/events?"+q, tok, nil)
		require.Equal(t, 200, r.Status, string(r.Body))
		var p eventPage
		r.JSON(t, &p)
		out = append(out, p.Data...)
		if p.NextCursor == nil {
			return out, pages
		}
		cursor = *p.NextCursor
	}
}

func TestEventsRecordsFiltersAndPages(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend)
			admin := env.NewToken("acme", "admin")
			auditor := env.NewToken("acme", "auditor")
			other := env.NewToken("globex", "admin")
			start := time.Now().UTC().Add(-time.Second)

			k := createKey(t, env, admin, "EC256")
			r := env.Do("POST", "/v1/keys/"+k.ID+"/sign", admin, map[string]any{"message": b64([]byte("x"))}, "X-Request-Id", "sign-1")
			require.Equal(t, 200, r.Status)
			missing := uuid.NewString()
			r = env.Do("GET", "/v1/keys/"+missing, admin, nil, "X-Request-Id", "get-missing")
			require.Equal(t, 404, r.Status)
			env.Do("POST", "/v1/keys", other, map[string]any{"algorithm": "EC256"})

			all, pages := allEvents(t, env, auditor, "limit=1000")
			require.Equal(t, 1, pages)
			require.NotEmpty(t, all)
			var prev string
			for i, ev := range all {
				assert.Equal(t, uint64(i+1), ev.Seq, "oldest first, every record")
				assert.Equal(t, prev, ev.PrevHash, "each record carries the previous one's hash")
				assert.Len(t, ev.Hash, 64)
				assert.NotEmpty(t, ev.ID)
				assert.False(t, ev.Time.IsZero())
				assert.Equal(t, "acme", ev.Tenant, "only the caller's tenant")
				assert.NotEmpty(t, ev.Principal)
				prev = ev.Hash
			}

			// The signature and the failed lookup, with who, what, request id
			// and the error code of the failure.
			signs, _ := allEvents(t, env, auditor, "operation=KEY_SIGN")
			require.Len(t, signs, 1)
			assert.Equal(t, "SUCCESS", signs[0].Outcome)
			assert.Equal(t, k.ID, signs[0].Resource)
			assert.Equal(t, "sign-1", signs[0].RequestID)
			assert.Regexp(t, `^token:`, signs[0].Principal)
			assert.Empty(t, signs[0].ErrorCode)

			fails, _ := allEvents(t, env, auditor, "outcome=FAIL")
			require.Len(t, fails, 1)
			assert.Equal(t, "KEY_RETRIEVE", fails[0].Operation)
			assert.Equal(t, missing, fails[0].Resource)
			assert.Equal(t, "get-missing", fails[0].RequestID)
			assert.Equal(t, "not_found", fails[0].ErrorCode)

			keyOps, _ := allEvents(t, env, auditor, "operation=key_*&outcome=success")
			ops := map[string]bool{}
			for _, ev := range keyOps {
				ops[ev.Operation] = true
				assert.Equal(t, "SUCCESS", ev.Outcome)
			}
			assert.Equal(t, map[string]bool{"KEY_CREATE": true, "KEY_SIGN": true}, ops)

			since, _ := allEvents(t, env, auditor, "since="+url.QueryEscape(start.Format(time.RFC3339Nano)))
			assert.GreaterOrEqual(t, len(since), len(all))
			future, _ := allEvents(t, env, auditor, "since="+url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)))
			assert.Empty(t, future)

			// Pages of one walk the same records; reading the log does not
			// add to it, so a reader reaches the end.
			paged, pages := allEvents(t, env, auditor, "limit=1")
			assert.Equal(t, all, paged)
			assert.Equal(t, len(all), pages)
			paged, _ = allEvents(t, env, auditor, "limit=2&operation=KEY_*")
			assert.Len(t, paged, 3, "a creation, a signature and a failed read")
			r = env.Do("GET", "/metrics", "", nil)
			assert.Contains(t, string(r.Body), `hsmca_events_total{event="EVENT_RETRIEVE_LIST",stage="SUCCESS"}`)

			for _, c := range []struct{ query, param string }{
				{"since=yesterday", "since"},
				{"outcome=MAYBE", "outcome"},
				{"limit=1001", "limit"},
				{"limit=x", "limit"},
				{"cursor=abc", "cursor"},
			} {
				e := nativeErr(t, env.Do("GET", "/v1/events?"+c.query, auditor, nil), 400, "BadRequest", c.param)
				assert.Equal(t, "query", e.Details[0].Location)
			}
			signerTok := env.NewToken("acme", "signer")
			nativeErr(t, env.Do("GET", "/v1/events", signerTok, nil), 403, "Forbidden", "")
			assert.Equal(t, 200, env.Do("GET", "/v1/events", admin, nil).Status)
		})
	}
}
