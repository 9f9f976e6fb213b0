// Package oplog defines the signed operation ("op") that carries every fact
// the cluster shares, its canonical CBOR encoding, its identity and signature,
// and the hybrid logical clock that stamps it.
//
// An op is the array [v, kind, author, hlc, body, sig] in CBOR core
// deterministic form. Its ID is the SHA-256 of the canonical encoding of the
// first five fields; its signature is ed25519 over "pln/op/v1" ‖ cluster ID ‖
// those same bytes, so an op from one cluster cannot be replayed into another.
// Decode accepts only bytes that re-encode to themselves: one op has exactly
// one valid encoding, which is what makes IDs and fingerprints stable.
//
// The package does no I/O and never reads the clock itself: Clock takes its
// time source as an argument. It may be imported by anything, including the
// pure reducers and offline tools that have nothing but a log file.
package oplog
