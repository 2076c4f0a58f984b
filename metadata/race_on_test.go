//go:build race

package metadata_test

// raceEnabled scales the single-threaded property tests down under the
// race detector, which slows them tenfold and finds nothing in them.
const raceEnabled = true
