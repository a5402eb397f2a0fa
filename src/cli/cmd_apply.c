/* cmd_apply.c - loxstream apply (to be written). */
#include <stdio.h>
#include "cli.h"
#include "loxstream/error.h"

int cmd_apply(int argc, char **argv)
{
    fprintf(stderr, "loxstream apply: not implemented yet\n");
    return LX_EFAIL;
}
