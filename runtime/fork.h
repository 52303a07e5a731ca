// Fork handling of the whole process in one place. Before a fork the runtime's locks are
// taken (with every signal blocked, so a handler cannot want one of them), so that no other
// thread holds one in the child; after it they are released, and in the child the carrier
// is reset (only the forking fiber lives there, as only the forking thread survives a fork).
// fork() runs these through pthread_atfork; _Fork() and a fork made by a raw system call run
// fork_child() themselves (hooks), with no prepare: their child then resets the locks.
#pragma once

namespace green {

// Registers the handlers with pthread_atfork; once per process, idempotent.
void install_fork_handlers();

// A lock of another module (the hooks' tables) that fork must not split: lock() and unlock()
// take and release it; it is also reset (unlocked) in a child made without a prepare.
// At most a handful; registered once at start.
void add_fork_lock(void (*lock)(), void (*unlock)());
// Runs in every child, after the runtime's own reset (the pid cache, per-thread timers).
void add_fork_child_hook(void (*hook)());

void fork_prepare();
void fork_parent();
// `prepared`: fork_prepare() ran in the parent (fork()); false for _Fork() and raw forks.
void fork_child(bool prepared);

}  // namespace green
