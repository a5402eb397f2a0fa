/* cli.h - the subcommands of the loxstream command, one file each
 * (cmd_<name>.c), dispatched from the table in main.c.  Each returns the
 * process exit status (an lx_status value) after printing any error. */
#ifndef LOXSTREAM_CLI_H
#define LOXSTREAM_CLI_H

int cmd_inspect(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_apply(int argc, char **argv);
int cmd_verify(int argc, char **argv);

/* Print "loxstream: <message>" on stderr for a failed status and return it. */
int cli_report(int status);

#endif
