/* lapack_flame.c: to be written */
typedef int lx_placeholder_lapack_flame;
