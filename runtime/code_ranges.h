// Where code is that a signal handler must not treat as the program's own: the modules whose
// code may hold a lock the handler (an unwinder, a switch to another fiber) could need. Read
// without a lock, so usable in a signal handler, once note_code_ranges() has run.
#pragma once

namespace green {

enum class CodeKind {
    kProgram,  // the program's own code, other libraries, JIT code, the vDSO
    kLibc,     // libc and the dynamic loader: their locks are not the program's (not hooked)
    kRuntime,  // libgreen and the libraries it uses, libgcc_s, libstdc++, libm
};

// Finds the executable segments of libc, the loader and the runtime's libraries. Outside any
// signal handler; only the first call does anything.
void note_code_ranges();

CodeKind code_kind(const void* pc);
// The module of `pc` when it is not the program's own code, else nullptr.
const char* unsafe_module_of(const void* pc);

}  // namespace green
