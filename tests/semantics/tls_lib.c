/* A shared library with a thread-local variable, loaded by tls_test with dlopen: its TLS is
   dynamic (allocated per thread by __tls_get_addr on first use). */
static __thread int lib_value;

int tls_lib_get(void) { return lib_value; }
void tls_lib_set(int value) { lib_value = value; }
int* tls_lib_address(void) { return &lib_value; }
