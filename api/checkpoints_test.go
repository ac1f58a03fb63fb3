package api_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
)

func TestEventCheckpointRoutes(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend)
			admin := env.NewToken("acme", "admin")
			auditor := env.NewToken("acme", "auditor")
			signerTok := env.NewToken("acme", "signer")
			other := env.NewToken("globex", "admin")

			nativeErr(t, env.Do("GET", "/v1/events/checkpoints/latest", auditor, nil), 404, "NotFound", "")
			createKey(t, env, admin, "EC256")

			// Only an admin signs one; the checkpoint covers its own record.
			nativeErr(t, env.Do("POST", "/v1/events/checkpoints", auditor, nil), 403, "Forbidden", "")
			r := env.Do("POST", "/v1/events/checkpoints", admin, nil)
			require.Equal(t, 201, r.Status, string(r.Body))
			var cp signer.Checkpoint
			r.JSON(t, &cp)
			assert.Equal(t, "acme", cp.Tenant)
			all, _ := allEvents(t, env, auditor, "limit=1000")
			last := all[len(all)-1]
			assert.Equal(t, signer.EventCheckpoint, last.Operation)
			assert.Equal(t, "SUCCESS", last.Outcome)
			assert.Equal(t, last.Seq, cp.Seq)
			assert.Equal(t, last.Hash, cp.Hash)

			r = env.Do("GET", "/v1/events/checkpoints/key", auditor, nil)
			require.Equal(t, 200, r.Status, string(r.Body))
			var key signer.CheckpointKey
			r.JSON(t, &key)
			assert.Equal(t, cp.KeyID, key.KeyID)
			assert.Equal(t, "ES256", key.Algorithm)
			assert.Contains(t, key.Certificate, "BEGIN CERTIFICATE")
			assert.Contains(t, key.PublicKey, "BEGIN PUBLIC KEY")
			_, err := signer.VerifyCheckpoint(&cp, key.KeyID)
			require.NoError(t, err)

			for _, path := range []string{"/v1/events/checkpoints/latest", fmt.Sprintf("/v1/events/checkpoints/%d", cp.Seq)} {
				r = env.Do("GET", path, auditor, nil)
				require.Equal(t, 200, r.Status, path)
				var got signer.Checkpoint
				r.JSON(t, &got)
				assert.Equal(t, cp, got, path)
			}
			r = env.Do("GET", "/v1/events/checkpoints?limit=10", auditor, nil)
			require.Equal(t, 200, r.Status)
			var list struct{ Data []signer.Checkpoint }
			r.JSON(t, &list)
			require.Len(t, list.Data, 1)

			nativeErr(t, env.Do("GET", "/v1/events/checkpoints/1", auditor, nil), 404, "NotFound", "")
			nativeErr(t, env.Do("GET", "/v1/events/checkpoints/x", auditor, nil), 400, "BadRequest", "seq")
			nativeErr(t, env.Do("GET", "/v1/events/checkpoints/latest", signerTok, nil), 403, "Forbidden", "")
			// Another tenant has its own chain and none of acme's checkpoints.
			nativeErr(t, env.Do("GET", fmt.Sprintf("/v1/events/checkpoints/%d", cp.Seq), other, nil), 404, "NotFound", "")
		})
	}
}
