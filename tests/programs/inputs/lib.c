/* A library for dlopen.c to load. */
int lh_inputs_lib_value(void) { return 42; }
