/* Subcommands of the qconform program; each returns a process exit code (qc_exit). */
#ifndef QC_COMMANDS_H
#define QC_COMMANDS_H

#include "core/qref_error.h"

/* Process exit codes: the overall verdict of a run. */
typedef enum qc_exit {
    QC_EXIT_PASS = 0,     /* no FAIL and no ERROR */
    QC_EXIT_FAIL = 1,     /* at least one FAIL */
    QC_EXIT_USAGE = 2,    /* invalid command line */
    QC_EXIT_INPUT = 3,    /* unreadable or invalid input */
    QC_EXIT_INTERNAL = 4  /* internal error */
} qc_exit;

/* Maps a library status to the exit code of a command that stopped on it. */
qc_exit qc_exit_from_status(qref_status status);

/* Prints "qconform: error: MESSAGE" to stderr and returns the exit code for its status. */
qc_exit qc_report_error(const qref_error *err);

/* Prints "qconform: usage error: ..." and a hint to run `qconform help COMMAND`; returns 2. */
qc_exit qc_usage_error(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One declaration per subcommand, implemented in cmd_<name>.c and listed in main.c. */
int qc_cmd_compare(int argc, char **argv);
int qc_cmd_eval(int argc, char **argv);
int qc_cmd_hash(int argc, char **argv);
int qc_cmd_inspect(int argc, char **argv);
int qc_cmd_logits(int argc, char **argv);
int qc_cmd_report(int argc, char **argv);
int qc_cmd_quantize(int argc, char **argv);
int qc_cmd_tokenize(int argc, char **argv);
int qc_cmd_verify(int argc, char **argv);

#endif
