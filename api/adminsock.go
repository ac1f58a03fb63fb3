package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/hsmca/hsmca/signer"
)

// AdminSocketHandler serves the ops CLI over the daemon's unix socket. The
// socket file is mode 0600: whoever can open it is the daemon's operator,
// the same person who could open the store file directly.
func AdminSocketHandler(eng *signer.Engine, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ops/tokens", func(w http.ResponseWriter, r *http.Request) {
		var req OpsTokenRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeOpsError(w, signer.E(signer.KindInvalid, "bad request body: %v", err))
			return
		}
		ctx := signer.WithCaller(r.Context(), signer.Caller{Principal: "ops:admin-socket"})
		secret, tok, err := eng.CreateToken(ctx, req.Tenant, req.Roles, req.ExpiresAt)
		if err != nil {
			writeOpsError(w, err)
			return
		}
		log.Info("API token created over the admin socket", "token_id", tok.ID, "tenant", tok.Tenant, "roles", tok.Roles)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(OpsTokenResponse{ID: tok.ID, Token: secret, Tenant: tok.Tenant, Roles: tok.Roles, ExpiresAt: tok.ExpiresAt})
	})
	mux.HandleFunc("GET /ops/ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	return mux
}

// OpsTokenRequest is the admin socket's token creation body.
type OpsTokenRequest struct {
	Tenant    string     `json:"tenant"`
	Roles     []string   `json:"roles"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// OpsTokenResponse carries the new secret, once.
type OpsTokenResponse struct {
	ID        string     `json:"id"`
	Token     string     `json:"token"`
	Tenant    string     `json:"tenant"`
	Roles     []string   `json:"roles"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// OpsError is the admin socket's error body.
type OpsError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func writeOpsError(w http.ResponseWriter, err error) {
	e := signer.AsError(err)
	status := http.StatusInternalServerError
	switch e.Kind {
	case signer.KindInvalid:
		status = http.StatusBadRequest
	case signer.KindConflict:
		status = http.StatusConflict
	case signer.KindUnavailable:
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(OpsError{Kind: e.Kind.String(), Message: e.Msg})
}
