//go:build tools

// Package tools records the tools this module pins.
package tools

import (
	_ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
)
