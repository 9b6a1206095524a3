//go:build !linux

package engine

import "os"

// startWriteback is a hint that only Linux takes.
func startWriteback(*os.File, int64, int64) {}

// adviseSequential is a hint that only Linux takes.
func adviseSequential(*os.File) {}

// adviseWillNeed is a hint that only Linux takes.
func adviseWillNeed(*os.File, int64, int64) {}
