/* sys.c - what the process asks the system (see sys.h): the monotonic
 * clock and the number of online CPUs. */
#include <time.h>
#include <unistd.h>

#include "loxstream/sys.h"

double lx_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int lx_online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1 << 20 ? (int)n : 1;
}
