/* privs.h — who the workers run as. The supervisor resolves the user: and
 * group: of smtp.yaml (priv_resolve) when it starts and on every reload;
 * each worker, and kasi --inetd, calls priv_drop right after fork and
 * before any plugin is loaded. The supervisor itself stays root (it binds
 * listeners on reload), with no capability to override file permissions
 * under the shipped systemd unit: what it writes in the spool, the
 * workers reach through their group (priv_spool, priv_share_begin). */
#ifndef KASI_PRIVS_H
#define KASI_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

struct priv_ids {
    int change;         /* 1: switch to uid/gid; 0: keep who we are */
    uid_t uid;
    gid_t gid;
    char name[64];      /* the user, for its supplementary groups */
};

/* user/group from the config (either may be NULL). Started as root, a
 * user is required ("user: root" to really stay root); not root, a user
 * other than ourselves is an error. 0, or -1 with why in err. */
int priv_resolve(const char *user, const char *group, struct priv_ids *ids,
                 char *err, size_t errlen);
/* initgroups, setgid, setuid, then verify that root cannot come back.
 * 0, or -1 with why in err. */
int priv_drop(const struct priv_ids *ids, char *err, size_t errlen);
/* The spool directory dir must be writable by the workers: it is theirs,
 * or its group is theirs with rwx for the group (a spool of
 * root's, mode 1770, where the supervisor keeps its state without
 * CAP_DAC_OVERRIDE). Otherwise it is given to them, mode 0700, which
 * needs CAP_CHOWN; *given says so. 0, or -1 (errno). */
int priv_spool(const struct priv_ids *ids, const char *dir, int *given);
/* Whether we may signal processes running as ids: the same user, or
 * CAP_KILL in our effective set (the supervisor tells its workers when to
 * accept, to retire, and kills one stuck in plugin code). */
int priv_can_signal(const struct priv_ids *ids);
/* The files the supervisor makes for its workers to read (the state
 * directory and the generations' copies in it) are made between
 * priv_share_begin and priv_share_end: with the workers' group as the
 * file-system group (setfsgid, CAP_SETGID), so they get that group
 * without CAP_CHOWN. 0, or -1 (errno). */
int priv_share_begin(const struct priv_ids *ids);
void priv_share_end(void);

#endif
