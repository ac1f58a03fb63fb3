package signer

import (
	"context"
	"crypto"
)

// KeySigner returns the HSM signer behind a key of /v1/keys/{id}, for
// measuring what the HSM does in-process next to what the API does.
func (e *Engine) KeySigner(ctx context.Context, tenant, id string) (crypto.Signer, error) {
	rec, err := e.resolveKey(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	return e.Signer(ctx, rec.Fields[KeyField])
}
