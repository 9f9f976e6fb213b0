// Package store keeps a node's op log on disk in one bbolt file, and reads and
// writes the portable log files that carry ops between machines and tools.
//
// # Model
//
// The file holds five buckets:
//
//   - arrival: 8-byte big-endian sequence → the op's canonical bytes.
//     Sequences count from 1 in the order this node first stored each op and
//     are never reused, even after compaction deletes an op. Walking it
//     replays what this node saw, in the order it saw it (ForEachArrival).
//   - order: oplog.OrderKey (HLC ‖ author ‖ ID) → sequence. Walking it visits
//     ops in the total order every node folds in (ForEachOrdered), and gives
//     sync its ranges.
//   - ids: op ID → sequence. Deduplication in one lookup (Has, Get, Append).
//   - superseded: op ID → 8-byte big-endian HLC at which the reducers said the
//     op stopped mattering. Such ops leave the sync set at once
//     (ForEachSync, SyncCount) and are deleted by Compact once that HLC is
//     older than the retention cutoff the caller passes.
//   - meta: small settings the daemon keeps beside the log (cluster ID, node
//     key, …) under keys of its choosing, and the store's own bookkeeping under
//     keys starting with "store." (format, version, counters).
//
// # Invariants
//
// Every op in arrival has exactly one entry in order and one in ids, all three
// written or deleted in the same transaction; superseded only names ops that
// are stored. An op is stored only as the bytes its Bytes method returns, so
// reading it back with oplog.Decode yields the same ID. Append returns only
// after its transaction is committed and fsynced: an acknowledged op survives
// kill -9 and power loss. A value that fails to decode is reported as
// ErrCorrupt naming the file and sequence, never a panic.
//
// Open never modifies a file that is not a pln store: it looks at an existing
// file read-only first, and a new store is built under a temporary name and
// linked into place only once complete, so a crash never leaves a half-made
// store behind.
//
// # Who calls it
//
// The daemon owns the one read-write Store of a node. It verifies ops at the
// door and hands them to Append — ops from the network in one Append per
// received batch, so one fsync covers the batch; concurrent Appends are also
// group-committed (see append.go). It replays the log into the reducers with
// ForEachArrival or ForEachOrdered, serves anti-entropy from ForEachSync, feeds
// the reducers' supersession decisions to MarkSuperseded and runs Compact with
// a cutoff of now minus the retention window (DESIGN.md §4). Offline tools
// open the file with ReadOnly while no node runs, and move logs with Export,
// LogWriter and LogReader (logfile.go).
//
// This package never verifies signatures and never decides what an op means;
// that is the caller's job (verify at the door, authorise in the fold).
package store
