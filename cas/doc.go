// Package cas is the node's content-addressed store (DESIGN.md §10) and the
// blob protocol that moves its objects between nodes. Seeds' WASM artifacts,
// and later site manifests and the files they name, live here under their
// SHA-256 digest.
//
// The store (store.go) keeps one file per object at
// <dir>/cas/<first 2 hex digits>/<64 hex digits>. An object only ever
// appears under its name whole and verified: Put and PutExpect stream what
// they are given to a temp file under <dir>/cas/tmp while hashing it, fsync
// it and rename it into place, so a crash leaves at worst a temp file that
// the next Open sweeps away. Nothing is held in memory whole except by
// ReadAll, which is for small artifacts and bounded by its caller.
//
// A download in progress is a Partial (partial.go): an append-only file at
// <dir>/cas/partial/<64 hex> that survives restarts, so that a fetch that
// breaks resumes from the bytes it already has. Commit checks the digest of
// the whole file before it renames it into place; bytes that do not hash to
// the name are deleted, never stored. One process holds a digest's partial
// at a time.
//
// The blob protocol (blob.go, fetch.go) runs on netx.StreamBlob streams:
// the client asks for a digest from an offset, the server answers with a
// fixed header and the bytes to the end. Serve answers; Fetch asks the
// peers it is given in turn, resuming where the last attempt stopped and
// skipping peers that lack the object, fail or lie. Which peers hold what is
// the node's business (claims and load reports); this package only moves
// bytes and checks them.
//
// cas imports the standard library, oplog (for Digest and Key) and netx
// (for the stream type); the daemon wires it to the mesh with
// mesh.Handle(netx.StreamBlob, cas.Serve(store)).
package cas
