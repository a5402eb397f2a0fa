/* st_write.c: to be written */
typedef int lx_placeholder_st_write;
