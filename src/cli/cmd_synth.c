/* cmd_synth.c - loxstream synth (to be written). */
#include <stdio.h>
#include "cli.h"
#include "loxstream/error.h"

int cmd_synth(int argc, char **argv)
{
    fprintf(stderr, "loxstream synth: not implemented yet\n");
    return LX_EFAIL;
}
