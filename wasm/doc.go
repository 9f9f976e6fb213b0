// Package wasm will own the Extism host (DESIGN.md §9): compiled modules per
// digest with an on-disk compilation cache, bounded instance pools, memory
// and time limits, and the host functions seeds use to call each other.
package wasm
