package engine

import (
	"fmt"
	"os"
	"strings"
)

// ParsePassword is a repository password read from the file path: its
// content without the line end; an empty one is an error.
func ParsePassword(b []byte, path string) ([]byte, error) {
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return nil, fmt.Errorf("password file %s is empty", path)
	}
	return []byte(s), nil
}

// ReadPasswordFile reads a repository password from a file (ParsePassword).
func ReadPasswordFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read password file: %w", err)
	}
	return ParsePassword(b, path)
}
