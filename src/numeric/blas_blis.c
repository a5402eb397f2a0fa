/* blas_blis.c: to be written */
typedef int lx_placeholder_blas_blis;
