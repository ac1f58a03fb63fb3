package api

import (
	_ "embed"

	"github.com/gin-gonic/gin"
)

// openAPI is the machine-readable contract; openapi_test.go checks that it
// lists exactly the routes the router serves, with the same roles.
//
//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the embedded OpenAPI document.
func OpenAPI() []byte { return openAPI }

func (s *server) openapi(c *gin.Context) {
	c.Data(200, "application/yaml; charset=utf-8", openAPI)
}
