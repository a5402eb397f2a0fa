/* cmd_inspect.c - loxstream inspect (to be written). */
#include <stdio.h>
#include "cli.h"
#include "loxstream/error.h"

int cmd_inspect(int argc, char **argv)
{
    fprintf(stderr, "loxstream inspect: not implemented yet\n");
    return LX_EFAIL;
}
