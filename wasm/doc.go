// Package wasm is the node's WASM runtime (DESIGN.md §9): it runs seeds,
// Extism plug-ins on wazero, inside fixed limits, and gives them the host
// functions they use to call other seeds.
//
// # Model
//
// A Host compiles each artifact once. Its machine code is shared by every
// seed of that digest while one is loaded, and written to a compilation
// cache on disk (Config.CacheDir) so that a restart loads it without
// compiling. Load checks the code against the seed's digest first, so a
// host only ever runs what the seed op names.
//
// A Module is one seed on this node: a pool of at most Limits.Concurrency
// instances, one warmed by Load. A call takes an idle instance (or makes
// one) and has it to itself until it returns. When every slot is busy a
// call fails at once with ErrOverloaded, never queues: the node then tries
// the next replica, and the saturation shows in its next load report.
//
// # Invariants
//
//   - Memory is always capped: Limits.MemoryBytes (default 64 MiB) is the
//     most an instance's memory can grow to, whatever the module declares;
//     the Extism kernel's memory, where inputs and outputs live, has the
//     same cap. A module whose minimum memory is over the cap fails to Load.
//   - Time is always capped: a call ends at the earlier of its seed's
//     Limits.Timeout and its caller's CallContext.Deadline. wazero checks
//     the deadline inside loops, so a guest that spins is stopped too
//     (ErrTimeout).
//   - Sizes are checked by the host: the input before the call
//     (ErrInputTooLarge), the output after it (ErrOutputTooLarge, never a
//     cut or empty answer).
//   - An instance that crashed (ErrTrap), ran out of time or answered too
//     much is closed, never reused. A guest that reported an error through
//     the Extism ABI and returned keeps its instance: it ran to the end.
//   - Call chains are bounded: a call whose chain already holds
//     Config.MaxDepth entries fails with ErrCycle, as does the guest that
//     made it, so a loop of seeds calling each other ends at once.
//   - Guests get WASI without files, network, arguments or environment,
//     with a real clock and random source; Extism HTTP is denied.
//
// The daemon's replica manager (cmd/pln/daemon) is the only caller: it
// loads the seeds placement gives this node, routes calls to them, and is
// the Router through which guests reach other seeds.
//
// # Host functions
//
// Guests import these from the module "extism:host/user". Every argument
// and result named a block is an Extism memory block: the u64 offset that
// the kernel's alloc returned (in Go, pdk.Memory.Offset()); 0 is the empty
// block. Blocks a guest passes stay the guest's; every block is released
// when the call ends.
//
//	pln_call(uri: block, input: block) -> result: block
//
// Calls a function of another seed, wherever a replica of it runs:
// uri is pln://seed/<name>/<fn>. The result's first byte says how it went:
// 0 and the callee's output, or 1 and an error message in UTF-8. The callee
// sees the same caller and properties, this call appended to the chain
// ("<seed>/<fn>"), and the time this call has left as its deadline.
// pln://service/<name> is reserved and answers 1 "services are not
// supported yet".
//
//	pln_caller() -> info: block
//
// Describes who the call is for, as JSON:
//
//	{"key":"<64 hex digits, or empty>","props":{"region":"eu"},
//	 "chain":["front/index"],"deadline_ms":29874}
//
// key is the calling node's public key; props are its properties from its
// grant; chain lists the calls that led here, outermost first (this one is
// not in it); deadline_ms is how long this call has left.
//
//	pln_log(level: u64, msg: block)
//
// Writes msg (UTF-8, cut at 4 KiB) to the node's log at level 0 debug,
// 1 info, 2 warn or 3 error, with the keys seed, fn and caller.
//
// A guest may export pln_warm (see WarmExport): the host calls it on every
// new instance before the instance's first call.
package wasm
