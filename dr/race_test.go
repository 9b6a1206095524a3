//go:build race

package dr

// raceEnabled: the race detector slows the code several times.
const raceEnabled = true
