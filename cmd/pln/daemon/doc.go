// Package daemon is the node: it wires the op store, the view, and (in later
// layers) the mesh, the WASM runtime and the content store, and serves the
// control API that the CLI talks to.
//
// A data directory holds one node:
//
//	node.key   the node's ed25519 private key (PKCS #8 PEM, mode 0600)
//	root.key   the cluster root's private key, only on the node that ran init
//	pln.db     the op log (oplog/store)
//	pln.sock   the control socket while 'pln up' runs (mode 0600)
//
// Every CLI verb is a Call of a named method with a JSON request. When a node
// runs, the call goes over the socket to it; when none does, the CLI opens
// the store itself and runs the very same handler (Connect decides). So
// 'pln init && pln grant … && pln up' works, and there is one implementation
// of each verb.
//
// The Node is the door every op passes: it is verified, stored durably, then
// folded. Ops this node authors are checked against the view first, so a user
// hears "you may not" instead of storing an op that would not count.
package daemon
