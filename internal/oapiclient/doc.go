// Package oapiclient is a Go client of hsmca generated from api/openapi.yaml
// by oapi-codegen, exactly as a user of the API would generate one. Only
// tests import it: they drive calls of every family through it against a
// running daemon, which shows the document is complete enough to generate
// a working client from, and TestGeneratedClientIsCurrent fails when the
// document changed and client.gen.go was not generated again.
package oapiclient

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config oapi-codegen.yaml ../../api/openapi.yaml
