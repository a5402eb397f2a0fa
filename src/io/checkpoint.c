/* checkpoint.c: to be written */
typedef int lx_placeholder_checkpoint;
