package signer

import "github.com/hsmca/hsmca/signer/issuance"

// Helpers that admins.go used to define and that other family files still
// use. The core and issuance provide them now (compat.go's table); the
// last family to stop using one deletes it here.

func backoff(attempt int) { Backoff(attempt) }

type fieldErrs = FieldErrors

func (f *FieldErrors) add(field string, value any, msg string) { f.Add(field, value, msg) }

func (f FieldErrors) err() error { return f.Err() }

func hasControl(s string) bool { return issuance.HasControl(s) }
