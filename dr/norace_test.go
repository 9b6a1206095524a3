//go:build !race

package dr

const raceEnabled = false
