package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
)

// AdminSocketHandler serves the ops CLI over the daemon's unix socket. The
// socket file is mode 0600: whoever can open it is the daemon's operator,
// the same person who could open the store file directly. With an ACME
// service it also makes ACME external account binding keys.
func AdminSocketHandler(eng CoreAPI, adm AdminsAPI, log *slog.Logger, acme ...ACMEAPI) http.Handler {
	mux := http.NewServeMux()
	if len(acme) > 0 && acme[0] != nil {
		mux.HandleFunc("POST /ops/acme/eab-keys", opsCreate(64<<10, http.StatusCreated, func(ctx context.Context, req OpsEABRequest) (any, error) {
			k, err := acme[0].CreateEABKey(ctx, req.Tenant, req.Directory)
			if err != nil {
				return nil, err
			}
			log.Info("ACME EAB key created over the admin socket", "key_id", k.KeyID, "tenant", req.Tenant, "directory", k.Directory)
			return OpsEABResponse{KeyID: k.KeyID, HMACKey: k.HMACKey, Tenant: req.Tenant, Directory: k.Directory}, nil
		}))
	}
	mux.HandleFunc("POST /ops/tokens", opsCreate(64<<10, http.StatusOK, func(ctx context.Context, req OpsTokenRequest) (any, error) {
		secret, tok, err := eng.CreateToken(ctx, req.Tenant, req.Roles, req.ExpiresAt)
		if err != nil {
			return nil, err
		}
		log.Info("API token created over the admin socket", "token_id", tok.ID, "tenant", tok.Tenant, "roles", tok.Roles)
		return OpsTokenResponse{ID: tok.ID, Token: secret, Tenant: tok.Tenant, Roles: tok.Roles, ExpiresAt: tok.ExpiresAt}, nil
	}))
	mux.HandleFunc("POST /ops/access-keys", opsCreate(64<<10, http.StatusOK, func(ctx context.Context, req OpsTokenRequest) (any, error) {
		secret, k, err := eng.CreateAccessKey(ctx, req.Tenant, req.Roles, req.ExpiresAt)
		if err != nil {
			return nil, err
		}
		log.Info("access key created over the admin socket", "access_key", k.ID, "tenant", k.Tenant, "roles", k.Roles)
		return OpsAccessKeyResponse{AccessKey: k.ID, SecretKey: secret, Tenant: k.Tenant, Roles: k.Roles, ExpiresAt: k.ExpiresAt}, nil
	}))
	mux.HandleFunc("POST /ops/oauth-clients", opsCreate(64<<10, http.StatusOK, func(ctx context.Context, req OpsClientRequest) (any, error) {
		secret, cl, err := eng.CreateOAuthClient(ctx, req.Tenant, req.Roles, req.Name)
		if err != nil {
			return nil, err
		}
		log.Info("OAuth client created over the admin socket", "client_id", cl.ID, "tenant", cl.Tenant, "roles", cl.Roles)
		return OpsClientResponse{ClientID: cl.ID, ClientSecret: secret, Tenant: cl.Tenant, Roles: cl.Roles}, nil
	}))
	mux.HandleFunc("POST /ops/admins", opsCreate(256<<10, http.StatusCreated, func(ctx context.Context, req OpsAdminRequest) (any, error) {
		a, err := adm.Bootstrap(ctx, req.input(), admins.BootstrapOptions{Recover: req.Recover, ProfileOptional: true})
		if err != nil {
			return nil, err
		}
		log.Info("superAdministrator created over the admin socket", "admin", a.UUID, "username", a.Username, "serial", a.SerialNumber, "recover", req.Recover)
		return OpsAdminResponseFrom(a), nil
	}))
	mux.HandleFunc("GET /ops/ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	return mux
}

// opsCreate serves one creation over the admin socket: the body (at most
// limit bytes, no unknown field) decoded into Req, do run as the socket's
// principal, its answer sent with status.
func opsCreate[Req any](limit int64, status int, do func(ctx context.Context, req Req) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeOpsError(w, signer.E(signer.KindInvalid, "bad request body: %v", err))
			return
		}
		ctx := signer.WithCaller(r.Context(), signer.Caller{Principal: "ops:admin-socket"})
		out, err := do(ctx, req)
		if err != nil {
			writeOpsError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(out)
	}
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

// OpsAccessKeyResponse carries a new access key and its secret key, once.
type OpsAccessKeyResponse struct {
	AccessKey string     `json:"access_key"`
	SecretKey string     `json:"secret_key"`
	Tenant    string     `json:"tenant"`
	Roles     []string   `json:"roles"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// OpsClientRequest creates OAuth client credentials over the admin socket.
type OpsClientRequest struct {
	Tenant string   `json:"tenant"`
	Roles  []string `json:"roles"`
	Name   string   `json:"name,omitempty"`
}

// OpsClientResponse carries the new client's secret, once.
type OpsClientResponse struct {
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret"`
	Tenant       string   `json:"tenant"`
	Roles        []string `json:"roles"`
}

// OpsAdminRequest bootstraps a superAdministrator over the admin socket.
type OpsAdminRequest struct {
	// Certificate is the administrator's client certificate, PEM or base64 DER.
	Certificate string `json:"certificate"`
	Username    string `json:"username"`
	Name        string `json:"name,omitempty"`
	Surname     string `json:"surname,omitempty"`
	Email       string `json:"email,omitempty"`
	Description string `json:"description,omitempty"`
	// Recover adds a superAdministrator even when administrators exist.
	Recover bool `json:"recover,omitempty"`
}

func (r *OpsAdminRequest) input() admins.Input {
	return admins.Input{Username: r.Username, Name: r.Name, Surname: r.Surname, Email: r.Email,
		Description: r.Description, Role: signer.RoleSuperAdministrator, Enabled: true, Certificate: r.Certificate}
}

// Input is the engine's form of the request (the CLI's direct-store path).
func (r *OpsAdminRequest) Input() admins.Input { return r.input() }

// OpsAdminResponse describes the administrator created.
type OpsAdminResponse struct {
	UUID         string    `json:"uuid"`
	Username     string    `json:"username"`
	Role         string    `json:"role"`
	SerialNumber string    `json:"serialNumber"`
	Fingerprint  string    `json:"fingerprint"`
	NotAfter     time.Time `json:"notAfter"`
}

// OpsAdminResponseFrom shapes an administrator for the ops CLI.
func OpsAdminResponseFrom(a *admins.Admin) OpsAdminResponse {
	return OpsAdminResponse{UUID: a.UUID, Username: a.Username, Role: a.Role, SerialNumber: a.SerialNumber,
		Fingerprint: a.Certificate.Fingerprint, NotAfter: a.Certificate.NotAfter}
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
	case signer.KindNotFound:
		status = http.StatusNotFound
	case signer.KindConflict, signer.KindWrongState:
		status = http.StatusConflict
	case signer.KindUnavailable:
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(OpsError{Kind: e.Kind.String(), Message: e.Msg})
}

// OpsEABRequest asks for an ACME external account binding key.
type OpsEABRequest struct {
	Tenant    string `json:"tenant"`
	Directory string `json:"directory"`
}

// OpsEABResponse is a new EAB key; HMACKey is shown only this once.
type OpsEABResponse struct {
	KeyID     string `json:"key_id"`
	HMACKey   string `json:"hmac_key"`
	Tenant    string `json:"tenant"`
	Directory string `json:"directory"`
}
