// Package netx will own the mesh (DESIGN.md §5, §8): one QUIC endpoint per
// node with mutual TLS bound to the view, the typed stream protocols (join,
// sync, push, call, tunnel, blob, relay), liveness and RTT, and NAT
// traversal. It may import oplog and reducers; nothing below it imports it.
//
// Until it lands, a node runs alone: ops reach other nodes only through
// 'pln log export' and 'pln log import'.
package netx
