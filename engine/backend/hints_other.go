//go:build !(linux && (amd64 || arm64))

package backend

import "os"

// startWriteback is a hint that only Linux (amd64, arm64) takes here.
func startWriteback(*os.File, int64, int64) {}

// adviseWillNeed is a hint that only Linux (amd64, arm64) takes here.
func adviseWillNeed(*os.File, int64, int64) {}
