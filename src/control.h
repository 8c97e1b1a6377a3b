/* control.h — `kasi [-c DIR] status | reload | stop`, run by an operator
 * or by the service manager (ExecReload). It finds the supervisor by the
 * pid_file of smtp.yaml, else by the status file, else by $MAINPID, and
 * reads the status file the supervisor keeps in <spool_dir>/.gen/status,
 * one "key value" per line:
 *     pid PID / since EPOCH / generation N / reloads N / pending 0|1
 *     last TEXT                   result of the last reload
 *     worker PID GEN SINCE STATE CONNECTIONS    (one line per worker)
 * Exit codes: 0 done, 1 failed, 3 not running (status, reload). */
#ifndef KASI_CONTROL_H
#define KASI_CONTROL_H

struct kasi_config;

/* 1 when word is a control command. */
int control_is_command(const char *word);
int control_main(const char *cmd, const struct kasi_config *cfg);

#endif
