/* sys.h - what the process asks the system (src/base/sys.c). */
#ifndef LOXSTREAM_SYS_H
#define LOXSTREAM_SYS_H

/* Monotonic seconds. */
double lx_now(void);
/* Online CPUs (at least 1): the default thread count. */
int lx_online_cpus(void);

#endif
