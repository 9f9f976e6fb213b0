// Package cas will own the content-addressed store (DESIGN.md §10): files
// named by SHA-256, streamed in chunks, verified on arrival, fetched from any
// peer that holds them, and static-site manifests served over HTTP.
package cas
