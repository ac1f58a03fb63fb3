//go:build tools

// Package deps pins the module's direct dependencies while packages are built up.
package deps

import (
	_ "github.com/gin-gonic/gin"
	_ "github.com/google/uuid"
	_ "github.com/miekg/pkcs11"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/stretchr/testify/require"
	_ "go.etcd.io/bbolt"
	_ "gopkg.in/yaml.v3"
)
