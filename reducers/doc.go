// Package reducers is the domain of pln: the op bodies, the View they fold
// into, who may do what (authorisation), liveness, placement, routing and the
// audit trail.
//
// Everything here is a pure function of its arguments. The caller passes the
// ops, the cluster ID and the time ("now"); nothing reads the clock, the disk,
// the network or a random source. That is what lets `pln replay` recompute,
// from nothing but a log file, every decision a node made.
//
// # The fold
//
// A View is a function of a *set* of ops: any order, with any duplicates,
// gives the same View and the same Digest. It is built in two layers.
//
//  1. Membership (genesis, grant, deny) is folded in the total order
//     (hlc, author, ID), because whether a grant counts depends on what its
//     author was at that moment. A deny is retroactive within its subject's
//     current admission: the subject's earlier ops count only if the deny
//     lists them in its keep set, so a backdated op cannot sneak in, and
//     grants that fall take their subjects with them (the cascade). Because
//     a deny can invalidate an op folded before it, membership is folded
//     again until the set of valid denies is stable. Membership ops are few,
//     so this is cheap. The result is a timeline of grants and denies per key.
//
//  2. Everything else (seed, serve, claim, load) is last-writer-wins per key
//     and judged against those timelines: "was the author a member of the
//     right tier at the op's HLC, and not cut by a later deny?". That makes
//     it independent of order, so the bulk of the log needs no sort. Claims,
//     loads and serves are keyed by their author, so the newest op wins the
//     key first and is judged second; a node cannot hide a newer op of its
//     own behind an older one, and superseded ones can be compacted without
//     changing the View.
//
// An op whose HLC is more than the genesis MaxOffset ahead of "now" is held
// out of the fold (Pending) until time catches up.
//
// An op that does not count stays in the store, has no effect, and its reason
// is reported by Audit.
//
// # Decisions
//
// Place, Route and Live are pure functions of a View and "now". Scores are
// integers (never floats, whose rounding may differ between an amd64 cloud
// host and an arm64 Raspberry Pi) and ties break by a rendezvous hash, never
// by map order.
package reducers
