package api

import _ "embed"

//go:embed openapi.json
var openapiDoc []byte

// OpenAPI returns the OpenAPI 3.1 document of the API (do not modify it).
func OpenAPI() []byte { return openapiDoc }
